import { OutageContinuity } from '../../lib/outage-continuity.js';
import { ResetLog } from '../../lib/reset-log.js';
import { MemoryStore } from '../../lib/stores/memory-store.js';
import type { RedisDecision } from '../../lib/stores/redis-store.js';
import { ManualClock } from '../helpers/manual-clock.js';

const WINDOW_MS = 60_000;
const KEY = 'rule|k';

/** A Redis answer for a fixed window that started at `redisStart`, given at Redis time `redisNow`. */
function answer(count: number, redisStart: number, redisNow: number): RedisDecision {
  return {
    allowed: true,
    remaining: 5 - count,
    resetAt: redisStart + WINDOW_MS,
    retryAfterMs: 0,
    redisNow,
    state: { a: count, b: redisStart, c: 0 },
    live: true,
    needsView: false,
  } as RedisDecision;
}

describe('OutageContinuity, fixed window', () => {
  let memory: MemoryStore;
  afterEach(() => memory.close());

  it('keeps the local start of one Redis window, whatever each answer says of the skew', () => {
    // Found in review: each answer's skew estimate differs by its transit
    // time, and adopting it moved the window's local start. Local units are
    // filed under that start, so acknowledging the call that carried them
    // found "another window" and kept them pending: sent twice.
    // A wall clock that can step, and a monotonic one that cannot.
    const wall = new ManualClock();
    let monotonic = 1;
    const clock = { now: () => wall.now(), monotonic: () => monotonic };
    memory = new MemoryStore();
    const continuity = new OutageContinuity(
      {
        name: 'rule',
        algorithm: 'fixed-window',
        fallbackLimit: 5,
        windowMs: WINDOW_MS,
        failClosed: true,
        clock,
        logger: { warn: () => undefined, error: () => undefined, info: () => undefined },
        onReconciled: () => undefined,
        onDropped: () => undefined,
        onStoreError: () => undefined,
      },
      memory,
      new ResetLog(10_000),
    );
    const redisStart = clock.now() - 1000;
    // Two calls for the key, neither carrying local units.
    const first = continuity.prepare(KEY, clock.now());
    const second = continuity.prepare(KEY, clock.now());
    continuity.settle(first, answer(1, redisStart, clock.now() + 2));
    const view = memory.peek(KEY, clock.now())!;
    // Memory admits a unit (a call that timed out), filed under the view's start.
    continuity.record(KEY, 1, view.b + WINDOW_MS, clock.now());
    const carrier = continuity.prepare(KEY, clock.now());
    expect(carrier.outgoing?.sent.current.hits).toBe(1);
    // The second call's answer comes with another transit time.
    continuity.settle(second, answer(1, redisStart, clock.now() + 7));
    expect(memory.peek(KEY, clock.now())!.b).toBe(view.b);
    // The carrier's answer acknowledges the unit: nothing stays pending.
    continuity.settle(carrier, answer(3, redisStart, clock.now() + 2));
    expect(continuity.pending).toBe(0);
    // A step of the local clock (90 s ahead of Redis now) is no transit
    // time: the start follows it, or the view would read as expired (found
    // by chaos seed 11: FLUSHDB after a clock jump, 7 of 5 admitted).
    wall.tick(90_000);
    const after = continuity.prepare(KEY, clock.now());
    continuity.settle(after, answer(3, redisStart, clock.now() - 90_000));
    expect(memory.peek(KEY, clock.now())!.b).toBe(view.b + 90_000);
    // So does a step under a second (found by an attack: a 900 ms step kept
    // the old start, the window ended early locally, 10 of 5 admitted).
    wall.tick(900);
    monotonic += 100;
    wall.tick(100);
    const later = continuity.prepare(KEY, clock.now());
    continuity.settle(later, answer(3, redisStart, clock.now() - 91_000));
    expect(memory.peek(KEY, clock.now())!.b).toBe(view.b + 90_900);
  });
});
