import { OutageFixture, THRESHOLD, TIMEOUT_MS, expectBounded } from '../helpers/outage-fixture.js';

describe('RateLimiter behind a slow or broken network (TCP proxy)', () => {
  let fixture: OutageFixture;

  beforeEach(async () => {
    fixture = await OutageFixture.start();
  });

  afterEach(async () => {
    await fixture.stop();
  });

  it('treats latency above the timeout as failure and recovers when it drops', async () => {
    fixture.proxy.delayMs = TIMEOUT_MS * 3;
    const slow = await fixture.hitMany(THRESHOLD + 4);
    expectBounded(slow);
    expect(slow.slice(0, THRESHOLD).every(s => s.ms >= TIMEOUT_MS - 5)).toBe(true);
    expect(slow.slice(THRESHOLD).every(s => s.ms < TIMEOUT_MS / 2)).toBe(true);
    expect(fixture.events.critical.fallback + fixture.events.open.fallback).toBe(THRESHOLD + 4);

    fixture.proxy.delayMs = 0;
    await fixture.recover();
  });

  it('decides in Redis when latency stays under the timeout', async () => {
    fixture.proxy.delayMs = TIMEOUT_MS / 4;
    const samples = await fixture.hitMany(6);
    expect(samples.every(s => s.source === 'redis')).toBe(true);
  });

  it('falls back when connections are cut mid-command, then reconnects', async () => {
    fixture.proxy.blackhole = true;
    const pending = fixture.hitMany(2);
    await new Promise(resolve => setTimeout(resolve, 30));
    fixture.proxy.cutAll();
    fixture.proxy.blackhole = false;
    const cut = await pending;
    expectBounded(cut);
    expect(cut.map(s => s.source)).toEqual(['memory', 'bypass']);
    await fixture.recover();
    expect(fixture.critical.limiter.breakerState).toBe('closed');
  });

  it('falls back while the proxy refuses connections', async () => {
    fixture.proxy.refuse = true;
    fixture.proxy.cutAll();
    const refused = await fixture.hitMany(THRESHOLD + 2);
    expectBounded(refused);
    expect(refused.every(s => s.source !== 'redis')).toBe(true);
    fixture.proxy.refuse = false;
    await fixture.recover();
  });
});
