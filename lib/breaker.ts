import {
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  handleAll,
  type CircuitBreakerPolicy,
} from 'cockatiel';
import { RateLimitConfigError } from './errors.js';
import type { BreakerOptions } from './options.js';
import type { Logger } from './types.js';

/**
 * A cockatiel circuit breaker plus the one thing cockatiel does not offer: a
 * way to skip it without throwing. While open, cockatiel answers each call
 * with a BrokenCircuitError (a stack trace per request); while half-open it
 * makes every caller wait for the probe. Both would put a cost or a wait on
 * the fallback path, so callers ask `shouldSkip()` first.
 */
export class StoreBreaker {
  private reopenAt = 0;

  constructor(
    readonly policy: CircuitBreakerPolicy,
    /** Known for breakers built here; a passed-in policy keeps its own backoff. */
    private readonly halfOpenAfterMs: number | undefined,
    readonly options: Required<BreakerOptions> | undefined,
  ) {
    // Date.now, like cockatiel itself, so fake timers drive both alike.
    policy.onBreak(() => {
      this.reopenAt = halfOpenAfterMs === undefined ? 0 : Date.now() + halfOpenAfterMs;
    });
  }

  get state(): 'closed' | 'open' | 'half-open' | 'isolated' {
    switch (this.policy.state) {
      case CircuitState.Open:
        return 'open';
      case CircuitState.HalfOpen:
        return 'half-open';
      case CircuitState.Isolated:
        return 'isolated';
      default:
        return 'closed';
    }
  }

  /** True when calling Redis now would only throw or wait on a probe. */
  shouldSkip(): boolean {
    const state = this.policy.state;
    if (state === CircuitState.Closed) return false;
    if (state === CircuitState.Open)
      return this.halfOpenAfterMs !== undefined && Date.now() < this.reopenAt;
    return true;
  }

  execute<T>(fn: () => Promise<T>): Promise<T> {
    return this.policy.execute(fn);
  }
}

const shared = new WeakMap<object, StoreBreaker>();

/**
 * The breaker for `client`: one per client, shared by every limiter on it, so
 * one dead Redis opens one breaker. A passed policy is used as is.
 */
export function acquireBreaker(
  client: object,
  breaker: Required<BreakerOptions> | CircuitBreakerPolicy,
  logger: Logger,
): StoreBreaker {
  if (!isOptions(breaker)) return new StoreBreaker(breaker, undefined, undefined);
  const existing = shared.get(client);
  if (existing) {
    const theirs = existing.options;
    if (
      theirs &&
      (theirs.threshold !== breaker.threshold || theirs.halfOpenAfter !== breaker.halfOpenAfter)
    ) {
      throw new RateLimitConfigError(
        `breaker options ${JSON.stringify(breaker)} differ from ${JSON.stringify(theirs)} already used with this Redis client; one client has one breaker (pass a cockatiel CircuitBreakerPolicy to use another)`,
        'breaker',
      );
    }
    return existing;
  }
  const policy = circuitBreaker(handleAll, {
    halfOpenAfter: breaker.halfOpenAfter,
    breaker: new ConsecutiveBreaker(breaker.threshold),
  });
  let probing = false;
  policy.onBreak(() => {
    const why = probing
      ? 'the half-open probe failed'
      : `${breaker.threshold} consecutive failures`;
    probing = false;
    logger.warn(
      `resilient-rate-limit: Redis circuit breaker opened after ${why}; deciding locally for ${breaker.halfOpenAfter} ms`,
    );
  });
  policy.onHalfOpen(() => {
    probing = true;
    logger.info('resilient-rate-limit: Redis circuit breaker half-open: probing Redis');
  });
  policy.onReset(() => {
    probing = false;
    logger.info('resilient-rate-limit: Redis circuit breaker closed: deciding in Redis again');
  });
  const created = new StoreBreaker(policy, breaker.halfOpenAfter, breaker);
  shared.set(client, created);
  return created;
}

function isOptions(
  breaker: Required<BreakerOptions> | CircuitBreakerPolicy,
): breaker is Required<BreakerOptions> {
  return typeof (breaker as CircuitBreakerPolicy).execute !== 'function';
}
