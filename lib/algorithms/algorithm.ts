import type { AlgorithmName, Decision } from '../types.js';

/**
 * Per-key counter state, three numbers whose meaning each algorithm defines.
 * A flat object keeps memory entries small and lets the Lua scripts store the
 * same three fields, so both stores compute from identical state.
 */
export interface CounterState {
  a: number;
  b: number;
  c: number;
}

export type Limits = { limit: number; windowMs: number };

export interface Algorithm {
  readonly name: AlgorithmName;
  /**
   * Decides for `cost` units at `now`. Mutates `state` only when allowed, so
   * a denied request consumes nothing. `cost` 0 is a read (see `get()`).
   */
  decide(state: CounterState, limits: Limits, cost: number, now: number): Decision;
  /**
   * Gives back `units` counted in the live window or bucket at `now`: never
   * below zero, never into a window that has ended. Mutates `state`;
   * returns the whole units given back.
   */
  refund(state: CounterState, limits: Limits, units: number, now: number): number;
  /** Epoch ms after which `state` is equivalent to a fresh key and can be dropped. */
  expiresAt(state: CounterState, limits: Limits): number;
}
