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
    const prior = (tat - now) * limit + frac;
    // A read (cost 0) answers for a request of one unit, without counting it.
    let nextFrac = frac + Math.max(cost, 1) * windowMs;
    const nextTat = tat + Math.floor(nextFrac / limit);
    nextFrac %= limit;
    const backlog = (nextTat - now) * limit + nextFrac;
    if (backlog > capacity) {
      const retryAt = nextTat - windowMs + Math.ceil(nextFrac / limit);
      return {
        allowed: false,
        remaining: Math.max(0, Math.floor((capacity - prior) / windowMs)),
        resetAt: retryAt,
        retryAfterMs: retryAt - now,
      };
    }
    if (cost === 0) {
      const remaining = Math.floor((capacity - prior) / windowMs);
      return { allowed: true, remaining, resetAt: tat + (frac > 0 ? 1 : 0), retryAfterMs: 0 };
    }
    state.a = nextTat;
    state.b = nextFrac;
    return {
      allowed: true,
      remaining: Math.floor((capacity - backlog) / windowMs),
      resetAt: nextTat + (nextFrac > 0 ? 1 : 0),
      retryAfterMs: 0,
    };
  },
  refund(state: CounterState, { limit, windowMs }: Limits, units: number, now: number): number {
    // The debt ahead of now, in 1/limit ms, shrinks by `units` emission intervals.
    const before = Math.max(0, (state.a - now) * limit + state.b);
    const debt = Math.max(0, before - units * windowMs);
    state.a = now + Math.floor(debt / limit);
    state.b = debt % limit;
    // A unit partly refilled already counts as given back whole.
    return Math.ceil((before - debt) / windowMs);
  },
  expiresAt(state: CounterState): number {
    return state.a + (state.b > 0 ? 1 : 0);
  },
};
