import { CircuitState, type CircuitBreakerPolicy } from 'cockatiel';

/** Why a breaker says not to call Redis now. */
export type SkipReason = 'breaker-open' | 'not-connected';

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

  constructor(
    readonly policy: CircuitBreakerPolicy,
    /** Known for breakers built here; a passed-in policy keeps its own backoff. */
    private readonly halfOpenAfterMs: number | undefined,
    private readonly isConnected: () => boolean = () => true,
  ) {
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

  execute<T>(fn: () => Promise<T>): Promise<T> {
    return this.policy.execute(fn);
  }

  /** Keeps a policy subscription so dispose() can remove it. */
  listen(subscription: { dispose(): void }): void {
    this.subscriptions.push(subscription);
  }

  /** Removes every listener this breaker put on its policy (a passed-in policy outlives us). */
  dispose(): void {
    for (const subscription of this.subscriptions.splice(0)) subscription.dispose();
  }
}
