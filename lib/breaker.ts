import { CircuitState, ConsecutiveBreaker, type CircuitBreakerPolicy } from 'cockatiel';

/** Why a breaker says not to call Redis now. */
export type SkipReason = 'breaker-open' | 'not-connected';

/**
 * The parts of cockatiel 3's CircuitBreakerPolicy (dist/CircuitBreakerPolicy.js)
 * that its `execute()` uses while closed. TypeScript-private there, so they
 * are checked once (closedPathOf) before use, and `execute()` is used
 * whenever one is missing.
 */
type ClosedPath = {
  innerState: { value: CircuitState };
  innerLastFailure: unknown;
  options: { breaker: ConsecutiveBreaker };
  executor: { successEmitter: { size: number }; failureEmitter: { size: number } };
  open(reason: { error: unknown }, signal: AbortSignal): void;
};

// What cockatiel passes to open() when execute() is called without a signal.
const neverAborted = new AbortController().signal;

/**
 * A cockatiel circuit breaker plus the one thing cockatiel does not offer: a
 * way to skip it without throwing. While open, cockatiel answers each call
 * with a BrokenCircuitError (a stack trace per request); while half-open it
 * makes every caller wait for the probe. Both would put a cost or a wait on
 * the fallback path, so callers ask `shouldSkip()` first.
 *
 * It also knows whether its client has ever been ready: until then, calls
 * are skipped with reason `'not-connected'` and never count as failures, so
 * a deploy's first requests cannot open the breaker for `halfOpenAfter`.
 */
export class StoreBreaker {
  private reopenAt = 0;
  private readonly subscriptions: Array<{ dispose(): void }> = [];

  /** Set for policies built here (handleAll, ConsecutiveBreaker): see execute(). */
  private readonly closedPath: ClosedPath | undefined;

  constructor(
    readonly policy: CircuitBreakerPolicy,
    /** Known for breakers built here; a passed-in policy keeps its own backoff. */
    private readonly halfOpenAfterMs: number | undefined,
    private readonly isConnected: () => boolean = () => true,
    /** The policy was built by us: every error counts, the breaker is consecutive. */
    ownPolicy = false,
  ) {
    this.closedPath = ownPolicy ? closedPathOf(policy) : undefined;
    // Date.now, like cockatiel itself, so fake timers drive both alike.
    this.listen(
      policy.onBreak(() => {
        this.reopenAt = halfOpenAfterMs === undefined ? 0 : Date.now() + halfOpenAfterMs;
      }),
    );
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

  /** True when calling Redis now would only throw, wait on a probe, or find no connection. */
  shouldSkip(): boolean {
    return this.skipReason() !== undefined;
  }

  /** Why Redis should not be called now, or `undefined` when it should. */
  skipReason(): SkipReason | undefined {
    if (!this.isConnected()) return 'not-connected';
    const state = this.policy.state;
    if (state === CircuitState.Closed) return undefined;
    if (state === CircuitState.Open) {
      const waiting = this.halfOpenAfterMs !== undefined && Date.now() < this.reopenAt;
      return waiting ? 'breaker-open' : undefined;
    }
    return 'breaker-open';
  }

  /**
   * `policy.execute(fn)`. While closed, on a policy built here, it does what
   * cockatiel's closed branch does, without its two async wrappers and the
   * result objects: call `fn`, then record success (reset the consecutive
   * count) or failure (count it, remember it as `lastFailure`, and open if
   * the threshold is reached) on the policy's own breaker, before the caller
   * sees the outcome. Every other state (open, half-open with its single
   * probe, isolated) and every passed-in policy goes through cockatiel.
   */
  execute<T>(fn: () => Promise<T>): Promise<T> {
    const closed = this.closedPath;
    if (
      closed === undefined ||
      closed.innerState.value !== CircuitState.Closed ||
      closed.executor.successEmitter.size !== 0 ||
      closed.executor.failureEmitter.size !== 0
    ) {
      return this.policy.execute(fn);
    }
    let call: Promise<T>;
    try {
      call = fn();
    } catch (error) {
      call = Promise.reject(error);
    }
    return call.then(this.succeeded, this.failed) as Promise<T>;
  }

  // One pair of handlers per breaker, not per call.
  private readonly succeeded = (value: unknown): unknown => {
    (this.closedPath as ClosedPath).options.breaker.success();
    return value;
  };

  private readonly failed = (error: unknown): never => {
    const closed = this.closedPath as ClosedPath;
    const failure = { error };
    closed.innerLastFailure = failure;
    if (closed.options.breaker.failure()) closed.open(failure, neverAborted);
    throw error;
  };

  /** Keeps a policy subscription so dispose() can remove it. */
  listen(subscription: { dispose(): void }): void {
    this.subscriptions.push(subscription);
  }

  /** Removes every listener this breaker put on its policy (a passed-in policy outlives us). */
  dispose(): void {
    for (const subscription of this.subscriptions.splice(0)) subscription.dispose();
  }
}

// The closed-state internals of a policy, if they look as execute() expects.
function closedPathOf(policy: CircuitBreakerPolicy): ClosedPath | undefined {
  const inner = policy as unknown as Partial<ClosedPath>;
  const ok =
    typeof inner.innerState?.value === 'number' &&
    typeof inner.open === 'function' &&
    inner.options?.breaker instanceof ConsecutiveBreaker &&
    typeof inner.executor?.successEmitter?.size === 'number' &&
    typeof inner.executor.failureEmitter?.size === 'number';
  return ok ? (inner as ClosedPath) : undefined;
}
