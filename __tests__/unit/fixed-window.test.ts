import fc from 'fast-check';
import type { CounterState, Limits } from '../../lib/algorithms/algorithm.js';
import { fixedWindow } from '../../lib/algorithms/fixed-window.js';

const T0 = 1_700_000_000_000;
const limits: Limits = { limit: 3, windowMs: 60_000 };
const fresh = (): CounterState => ({ a: 0, b: 0, c: 0 });

describe('fixedWindow', () => {
  it('is named fixed-window', () => {
    expect(fixedWindow.name).toBe('fixed-window');
  });

  it('opens the window at the first hit and lasts one window', () => {
    const state = fresh();
    const first = fixedWindow.decide(state, limits, 1, T0 + 123);
    expect(first).toEqual({
      allowed: true,
      remaining: 2,
      resetAt: T0 + 123 + 60_000,
      retryAfterMs: 0,
    });
    expect(state).toEqual({ a: 1, b: T0 + 123, c: 0 });
    const later = fixedWindow.decide(state, limits, 1, T0 + 30_000);
    expect(later.resetAt).toBe(T0 + 123 + 60_000);
    expect(fixedWindow.expiresAt(state, limits)).toBe(T0 + 123 + 60_000);
  });

  it('admits exactly limit hits per window, then denies', () => {
    const state = fresh();
    const answers = [0, 1, 2, 3, 4].map(i => fixedWindow.decide(state, limits, 1, T0 + i));
    expect(answers.map(d => d.allowed)).toEqual([true, true, true, false, false]);
    expect(answers.map(d => d.remaining)).toEqual([2, 1, 0, 0, 0]);
  });

  it('consumes nothing for a denied request', () => {
    const state = fresh();
    fixedWindow.decide(state, limits, 2, T0);
    const before = { ...state };
    const denied = fixedWindow.decide(state, limits, 2, T0 + 1);
    expect(denied.allowed).toBe(false);
    expect(state).toEqual(before);
    // The one unit left is still there for a cheaper request.
    expect(fixedWindow.decide(state, limits, 1, T0 + 2)).toMatchObject({
      allowed: true,
      remaining: 0,
    });
  });

  it('reports the time to the window end as retryAfterMs', () => {
    const state = fresh();
    for (let i = 0; i < 3; i++) fixedWindow.decide(state, limits, 1, T0);
    const denied = fixedWindow.decide(state, limits, 1, T0 + 45_000);
    expect(denied).toEqual({
      allowed: false,
      remaining: 0,
      resetAt: T0 + 60_000,
      retryAfterMs: 15_000,
    });
  });

  it('opens a new window once the old one has passed', () => {
    const state = fresh();
    for (let i = 0; i < 3; i++) fixedWindow.decide(state, limits, 1, T0);
    expect(fixedWindow.decide(state, limits, 1, T0 + 59_999).allowed).toBe(false);
    const next = fixedWindow.decide(state, limits, 1, T0 + 60_000);
    expect(next).toEqual({ allowed: true, remaining: 2, resetAt: T0 + 120_000, retryAfterMs: 0 });
    const muchLater = fixedWindow.decide(state, limits, 1, T0 + 10 * 60_000 + 7);
    expect(muchLater.resetAt).toBe(T0 + 11 * 60_000 + 7);
    expect(muchLater.remaining).toBe(2);
  });

  it('counts a cost above 1 as that many units', () => {
    const state = fresh();
    const big = { limit: 10, windowMs: 1_000 };
    expect(fixedWindow.decide(state, big, 4, T0)).toMatchObject({ allowed: true, remaining: 6 });
    expect(fixedWindow.decide(state, big, 6, T0)).toMatchObject({ allowed: true, remaining: 0 });
    expect(fixedWindow.decide(state, big, 1, T0)).toMatchObject({ allowed: false, remaining: 0 });
  });

  it('denies a cost that does not fit even when some units are left', () => {
    const state = fresh();
    const big = { limit: 10, windowMs: 1_000 };
    fixedWindow.decide(state, big, 7, T0);
    expect(fixedWindow.decide(state, big, 4, T0 + 10)).toEqual({
      allowed: false,
      remaining: 3,
      resetAt: T0 + 1_000,
      retryAfterMs: 990,
    });
  });

  it('reads without consuming when cost is 0', () => {
    const state = fresh();
    fixedWindow.decide(state, limits, 1, T0);
    const before = { ...state };
    expect(fixedWindow.decide(state, limits, 0, T0 + 5)).toEqual({
      allowed: true,
      remaining: 2,
      resetAt: T0 + 60_000,
      retryAfterMs: 0,
    });
    expect(state).toEqual(before);
  });

  it('keeps remaining at 0 when the state holds more than the limit (a lower fallbackLimit)', () => {
    // The memory store mirrors Redis counts; during an outage it decides with
    // fallbackLimit, which may be lower than the count Redis reached.
    const state: CounterState = { a: 8, b: T0, c: 0 };
    const denied = fixedWindow.decide(state, { limit: 5, windowMs: 60_000 }, 1, T0 + 1);
    expect(denied.allowed).toBe(false);
    expect(denied.remaining).toBe(0);
    const read = fixedWindow.decide(state, { limit: 5, windowMs: 60_000 }, 0, T0 + 1);
    expect(read.remaining).toBe(0);
  });

  it('never lets remaining go below 0 or past the limit, and never admits more than limit per window', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 3_000 }), fc.integer({ min: 1, max: 20 })), {
          maxLength: 60,
        }),
        (limit, windowMs, hits) => {
          const state = fresh();
          let now = T0;
          let windowStart = -Infinity;
          let admitted = 0;
          for (const [gap, rawCost] of hits) {
            now += gap;
            const cost = Math.min(rawCost, limit);
            const d = fixedWindow.decide(state, { limit, windowMs }, cost, now);
            expect(d.remaining).toBeGreaterThanOrEqual(0);
            expect(d.remaining).toBeLessThanOrEqual(limit);
            expect(d.resetAt).toBeGreaterThan(now);
            if (now >= windowStart + windowMs && d.allowed) {
              windowStart = now;
              admitted = 0;
            }
            if (d.allowed) {
              admitted += cost;
              expect(d.retryAfterMs).toBe(0);
            } else {
              expect(d.retryAfterMs).toBe(d.resetAt - now);
            }
            expect(admitted).toBeLessThanOrEqual(limit);
          }
        },
      ),
    );
  });
});
