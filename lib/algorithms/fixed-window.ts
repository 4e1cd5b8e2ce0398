import type { Algorithm, CounterState, Limits } from './algorithm.js';
import type { Decision } from '../types.js';

/**
 * Fixed window: a key's window opens at its first hit and lasts `window`,
 * like Redis INCR + PEXPIRE. State: a = count, b = window start.
 *
 * **Pro:** cheapest; easy to explain ("5 per hour from your first attempt").
 * **Con:** a client can spend `limit` at the end of one window and `limit`
 * again at the start of the next: up to 2x `limit` in a short burst.
 *
 * `count` may exceed `limit` after hits are reconciled from an outage, hence
 * the clamps on `remaining`.
 */
export const fixedWindow: Algorithm = {
  name: 'fixed-window',
  decide(state: CounterState, { limit, windowMs }: Limits, cost: number, now: number): Decision {
    let count = state.a;
    let start = state.b;
    // A window lives its whole length, even when refunds brought it to 0.
    if (start === 0 || now >= start + windowMs) {
      count = 0;
      start = now;
    }
    const resetAt = start + windowMs;
    // A read (cost 0) answers for a request of one unit, without counting it.
    if (count + Math.max(cost, 1) > limit) {
      return {
        allowed: false,
        remaining: Math.max(0, limit - count),
        resetAt,
        retryAfterMs: resetAt - now,
      };
    }
    if (cost === 0) return { allowed: true, remaining: limit - count, resetAt, retryAfterMs: 0 };
    state.a = count + cost;
    state.b = start;
    return { allowed: true, remaining: limit - count - cost, resetAt, retryAfterMs: 0 };
  },
  refund(state: CounterState, { windowMs }: Limits, units: number, now: number): number {
    if (now >= state.b + windowMs) return 0;
    const back = Math.min(state.a, units);
    state.a -= back;
    return back;
  },
  expiresAt(state: CounterState, { windowMs }: Limits): number {
    return state.b + windowMs;
  },
};
