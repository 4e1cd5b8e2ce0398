import {
  HALF_OPEN_AFTER_MS,
  OutageFixture,
  THRESHOLD,
  expectBounded,
  sources,
} from '../helpers/outage-fixture.js';

describe('RateLimiter when Redis is killed (SIGKILL) and restarted', () => {
  let fixture: OutageFixture;

  beforeAll(async () => {
    fixture = await OutageFixture.start();
  });

  afterAll(async () => {
    await fixture.stop();
  });

  it('falls back per route, opens the breaker, stops calling Redis and recovers', async () => {
    expect(sources(await fixture.hitMany(2))).toEqual(['200:redis', '200:redis']);
    const evalsha = jest.spyOn(fixture.client, 'evalsha');

    await fixture.redis.kill();
    const outage = await fixture.hitMany(20);
    expectBounded(outage);
    expect(outage.filter((_, i) => i % 2 === 0).every(s => s.source === 'memory')).toBe(true);
    expect(outage.filter((_, i) => i % 2 === 1).every(s => s.source === 'bypass')).toBe(true);

    // Both limiters share the client's breaker: THRESHOLD failures in all open it.
    expect(evalsha).toHaveBeenCalledTimes(THRESHOLD);
    expect(fixture.events.critical.breakerOpen).toBe(1);
    expect(fixture.events.open.breakerOpen).toBe(1);
    expect(fixture.events.critical.storeError + fixture.events.open.storeError).toBe(THRESHOLD);
    expect(fixture.critical.limiter.breakerState).toBe('open');

    evalsha.mockClear();
    expectBounded(await fixture.hitMany(20));
    expect(evalsha).not.toHaveBeenCalled();

    await fixture.redis.restart();
    const started = Date.now();
    const requests = await fixture.recover();
    expect(Date.now() - started).toBeLessThan(HALF_OPEN_AFTER_MS * 3 + 2000);
    expect(requests).toBeGreaterThan(0);
    expect(fixture.events.critical.breakerHalfOpen).toBeGreaterThanOrEqual(1);
    expect(fixture.events.critical.breakerClose).toBe(1);
    expect(fixture.events.open.breakerClose).toBe(1);
    expect(fixture.critical.limiter.breakerState).toBe('closed');
    evalsha.mockRestore();
  });

  it('logs the outage once, not once per request', () => {
    const warnings = fixture.logger.warn.mock.calls.map(call => String(call[0]));
    expect(warnings.filter(w => w.includes('breaker opened'))).toHaveLength(1);
    expect(warnings.filter(w => w.includes('cannot decide in Redis')).length).toBeLessThanOrEqual(
      2,
    );
  });
});
