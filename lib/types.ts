import type { Clock } from './clock.js';

/** How a limiter counts. See README "Algorithms" for the trade-offs. */
export type AlgorithmName = 'fixed-window' | 'sliding-window' | 'token-bucket';

/** Who made a decision. */
export type DecisionSource = 'redis' | 'memory' | 'bypass';

/** The answer to one `consume()` or `get()`. */
export type RateLimitResult = {
  allowed: boolean;
  /** The limit that decided: `fallbackLimit` when memory decided during an outage. */
  limit: number;
  /** Units left in the current window or bucket; never below 0. */
  remaining: number;
  /** Epoch ms when the current window or bucket frees capacity. */
  resetAt: number;
  /** 0 when allowed; otherwise ms until a request of the same cost can pass. */
  retryAfterMs: number;
  source: DecisionSource;
  /** The caller's key, as given (not the hashed storage key). */
  key: string;
  /**
   * With `policies`: each policy's figures, in the order given. The fields
   * above then describe the binding policy (the one that denied with the
   * longest wait, else the one with least remaining).
   */
  policies?: PolicyResult[];
};

/** One policy's figures in `RateLimitResult.policies`. */
export type PolicyResult = {
  name: string;
  limit: number;
  remaining: number;
  /** Epoch ms when this policy's window or bucket frees capacity. */
  resetAt: number;
  /** 0 when this policy admits; otherwise ms until it would. */
  retryAfterMs: number;
  /** This policy admits the request (it is admitted only if all do). */
  allowed: boolean;
};

/** What a store answers for one key; the limiter adds limit, source and key. */
export type Decision = {
  allowed: boolean;
  remaining: number;
  resetAt: number;
  retryAfterMs: number;
};

/** Everything a store needs to decide for one key, besides the key. */
export type DecisionParams = {
  algorithm: AlgorithmName;
  limit: number;
  windowMs: number;
  cost: number;
  /** Epoch ms the decision is made at. */
  now: number;
};

/**
 * The contract a counter store implements. The memory store answers
 * synchronously; the Redis store returns promises.
 */
export interface RateLimitStore {
  /** Counts `cost` units for `key` if they fit; a denied call counts nothing. */
  consume(key: string, params: DecisionParams): Decision | Promise<Decision>;
  /** The current state without consuming; `undefined` when the key has none. */
  get(key: string, params: DecisionParams): Decision | undefined | Promise<Decision | undefined>;
  reset(key: string): void | Promise<void>;
  close?(): void | Promise<void>;
}

/** The subset of pino/console the package logs through. */
export interface Logger {
  warn(message: string, ...rest: unknown[]): void;
  error(message: string, ...rest: unknown[]): void;
  info(message: string, ...rest: unknown[]): void;
}

export type { Clock };
