import type { Algorithm, CounterState, Limits } from './algorithm.js';
import type { Decision } from '../types.js';

/**
 * Token bucket as GCRA: bursts of up to `limit`, refilled at `limit` per
 * `window`. The theoretical arrival time (TAT) is kept exactly as whole ms
 * (a) plus a remainder in 1/limit ms (b), so the memory store and Lua agree
 * to the unit without floating-point drift.
 *
 * **Pro:** smooth; a client that paces itself is never blocked; bursts allowed.
 * **Con:** harder to explain ("one request every window/limit, up to limit at once").
 */
export const tokenBucket: Algorithm = {
  name: 'token-bucket',
  decide(state: CounterState, { limit, windowMs }: Limits, cost: number, now: number): Decision {
    let tat = state.a;
    let frac = state.b;
    if (tat < now || (tat === now && frac === 0)) {
      tat = now;
      frac = 0;
    }
    const capacity = windowMs * limit;
    frac += cost * windowMs;
    tat += Math.floor(frac / limit);
    frac %= limit;
    const backlog = (tat - now) * limit + frac;
    if (backlog > capacity) {
      const prior = backlog - cost * windowMs;
      const retryAt = tat - windowMs + Math.ceil(frac / limit);
      return {
        allowed: false,
        remaining: Math.max(0, Math.floor((capacity - prior) / windowMs)),
        resetAt: retryAt,
        retryAfterMs: retryAt - now,
      };
    }
    const remaining = Math.floor((capacity - backlog) / windowMs);
    const fullAt = tat + (frac > 0 ? 1 : 0);
    if (cost === 0) return { allowed: remaining > 0, remaining, resetAt: fullAt, retryAfterMs: 0 };
    state.a = tat;
    state.b = frac;
    return { allowed: true, remaining, resetAt: fullAt, retryAfterMs: 0 };
  },
  expiresAt(state: CounterState): number {
    return state.a + (state.b > 0 ? 1 : 0);
  },
};
