const brand = Symbol.for('resilient-rate-limit.error');

/** Base class of every error this package throws on purpose. */
export class RateLimitError extends Error {
  readonly [brand] = true;
  constructor(
    message: string,
    readonly code: string,
  ) {
    super(message);
    this.name = 'RateLimitError';
  }
}

/** Bad options: thrown when a limiter is built, never at request time. */
export class RateLimitConfigError extends RateLimitError {
  constructor(
    message: string,
    /** The option that was wrong, e.g. `'limit'`. */
    readonly option: string,
  ) {
    super(`resilient-rate-limit: ${message}`, 'ERR_RRL_CONFIG');
    this.name = 'RateLimitConfigError';
  }
}

/** A bad argument to consume/get/reset, or a bad value from `key`/`cost`. */
export class RateLimitArgumentError extends RateLimitError {
  constructor(message: string) {
    super(`resilient-rate-limit: ${message}`, 'ERR_RRL_ARGUMENT');
    this.name = 'RateLimitArgumentError';
  }
}

/**
 * The fallback store is full and configured with `whenFull: 'reject'`, so it
 * cannot decide. The middleware answers 503 on fail-closed routes.
 */
export class RateLimitCapacityError extends RateLimitError {
  constructor(readonly retryAfterMs: number) {
    super('resilient-rate-limit: memory store is full (whenFull: reject)', 'ERR_RRL_CAPACITY');
    this.name = 'RateLimitCapacityError';
  }
}

/** A Redis decision did not answer within `timeout`. */
export class RateLimitTimeoutError extends RateLimitError {
  constructor(timeoutMs: number) {
    super(`resilient-rate-limit: Redis did not answer within ${timeoutMs} ms`, 'ERR_RRL_TIMEOUT');
    this.name = 'RateLimitTimeoutError';
  }
}

/** Redis could not be reached to apply a write such as `reset()`. */
export class RateLimitStoreError extends RateLimitError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(`resilient-rate-limit: ${message}`, 'ERR_RRL_STORE');
    this.name = 'RateLimitStoreError';
    if (options && 'cause' in options) this.cause = options.cause;
  }
}

/**
 * A function the user supplied (event listener, logger or metrics method)
 * threw. Reported through the limiter's `storeError` event; the decision it
 * ran next to was not affected.
 */
export class RateLimitHookError extends RateLimitError {
  constructor(
    /** Which hook threw, e.g. `'breakerHalfOpen listener'` or `'metrics.decision'`. */
    readonly hook: string,
    cause: unknown,
  ) {
    super(
      `resilient-rate-limit: ${hook} threw: ${cause instanceof Error ? cause.message : String(cause)}`,
      'ERR_RRL_HOOK',
    );
    this.name = 'RateLimitHookError';
    this.cause = cause;
  }
}

const hasBrand = (e: unknown): e is RateLimitError =>
  typeof e === 'object' && e !== null && (e as Record<symbol, unknown>)[brand] === true;

export const isRateLimitError = hasBrand;
export const isRateLimitConfigError = (e: unknown): e is RateLimitConfigError =>
  hasBrand(e) && e.code === 'ERR_RRL_CONFIG';
export const isRateLimitCapacityError = (e: unknown): e is RateLimitCapacityError =>
  hasBrand(e) && e.code === 'ERR_RRL_CAPACITY';
