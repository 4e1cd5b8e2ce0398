import type { Algorithm, CounterState, Limits } from './algorithm.js';
import type { Decision } from '../types.js';

/**
 * Sliding window: the weighted two-window counter. Windows are aligned to
 * multiples of `window`; the previous window's count is weighted by how much
 * of it still overlaps the sliding window, rounded up.
 * State: a = current count, b = current window start, c = previous count.
 *
 * **Pro:** no double burst at window edges; two numbers per key.
 * **Con:** an estimate (assumes the previous window's hits were spread
 * evenly), rounded towards denying.
 */
export const slidingWindow: Algorithm = {
  name: 'sliding-window',
  decide(state: CounterState, { limit, windowMs }: Limits, cost: number, now: number): Decision {
    const start = now - (now % windowMs);
    let current = 0;
    let previous = 0;
    // A window from the future (the clock went back) is still the current
    // one: treating it as empty would hand out a fresh quota.
    if (state.b >= start) {
      current = state.a;
      previous = state.c;
    } else if (state.b === start - windowMs) {
      previous = state.a;
    }
    const elapsed = now - start;
    const weighted = Math.ceil((previous * (windowMs - elapsed)) / windowMs);
    const used = current + weighted;
    const resetAt = start + windowMs;
    // A read (cost 0) answers for a request of one unit, without counting it.
    const units = Math.max(cost, 1);
    if (used + units > limit) {
      const retryAfterMs = retryAfter(current, previous, limit, windowMs, units, start, now);
      // A denied request's reset is when it could pass, not the window edge:
      // X-RateLimit-Reset, RateLimit's t and Retry-After then announce one time.
      return {
        allowed: false,
        remaining: Math.max(0, limit - used),
        resetAt: now + retryAfterMs,
        retryAfterMs,
      };
    }
    if (cost === 0) return { allowed: true, remaining: limit - used, resetAt, retryAfterMs: 0 };
    state.a = current + cost;
    state.b = start;
    state.c = previous;
    return { allowed: true, remaining: limit - used - cost, resetAt, retryAfterMs: 0 };
  },
  refund(state: CounterState, { windowMs }: Limits, units: number, now: number): number {
    // Only the current window's count: the previous one has ended (its weight
    // decays on its own), and a refund never reaches into an ended window.
    if (state.b !== now - (now % windowMs)) return 0;
    const back = Math.min(state.a, units);
    state.a -= back;
    return back;
  },
  expiresAt(state: CounterState, { windowMs }: Limits): number {
    return state.b + 2 * windowMs;
  },
};

// The earliest moment the weighted count leaves room for `cost`: later in this
// window if the previous window's weight can decay enough, else in the next
// window, where this window's count becomes the decaying one.
function retryAfter(
  current: number,
  previous: number,
  limit: number,
  windowMs: number,
  cost: number,
  start: number,
  now: number,
): number {
  const room = limit - current - cost;
  if (room >= 0 && previous > 0) {
    const at = start + windowMs - Math.floor((room * windowMs) / previous);
    if (at > now) return at - now;
  }
  const nextRoom = limit - cost;
  const at =
    current > 0
      ? start + 2 * windowMs - Math.floor((nextRoom * windowMs) / current)
      : start + windowMs;
  return Math.max(1, Math.max(at, start + windowMs) - now);
}
