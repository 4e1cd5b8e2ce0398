import { OutageContinuity, type ContinuityRule } from './outage-continuity.js';
import { outageBudget } from './outage-budget.js';
import type { PolicyConfig } from './options.js';
import type { ResetLog } from './reset-log.js';
import type { MemoryStore } from './stores/memory-store.js';
import type { Decision, PolicyResult, RateLimitResult } from './types.js';

/**
 * One quota of a limiter: its limit per window, its keys and its outage
 * state. A limiter without `policies` has one, named after the limiter, whose
 * keys are the limiter's own; with `policies` each has its own counter under
 * the key's one hash tag (`prefix{name|key}|policy`), so Redis decides them
 * all in one script call, on one Cluster slot.
 */
export class Policy {
  readonly name: string;
  readonly limit: number;
  readonly windowMs: number;
  /** Appended to the limiter's storage keys: '' for a limiter's only rule. */
  readonly suffix: string;
  /** Keeps this policy's counts continuous across outages and data loss. */
  readonly continuity: OutageContinuity;
  private readonly configuredFallback: number | 'share' | undefined;

  constructor(
    config: PolicyConfig,
    /** The limiter's `fallbackLimit` option, as parsed. */
    limiterFallback: number | 'share',
    multiPolicy: boolean,
    rule: Omit<ContinuityRule, 'windowMs' | 'fallbackLimit' | 'name'> & { name: string },
    private readonly liveInstances: () => number,
    memory: MemoryStore,
    resets: ResetLog,
  ) {
    this.name = config.name;
    this.limit = config.limit;
    this.windowMs = config.windowMs;
    this.suffix = config.suffix;
    // With policies, a number belongs to each policy; only 'share' is the limiter's.
    this.configuredFallback =
      config.fallbackLimit ??
      (multiPolicy ? (limiterFallback === 'share' ? 'share' : undefined) : limiterFallback);
    const budget = (): number => this.fallbackLimit;
    this.continuity = new OutageContinuity(
      {
        ...rule,
        name: multiPolicy ? `${rule.name}/${config.name}` : rule.name,
        windowMs: config.windowMs,
        get fallbackLimit() {
          return budget();
        },
      },
      memory,
      resets,
    );
  }

  /**
   * Cost units per key per window this instance admits from memory during an
   * outage: the configured fallbackLimit, or with `'share'`
   * `ceil(limit / liveInstances)`.
   */
  get fallbackLimit(): number {
    return outageBudget(this.limit, this.configuredFallback, this.liveInstances());
  }

  /**
   * The memory store's limit for a call judged against `limit` (a per-request
   * limit): the outage budget, never more than that call's own limit.
   */
  fallbackFor(limit: number): number {
    if (limit === this.limit) return this.fallbackLimit;
    if (this.configuredFallback === 'share') {
      return outageBudget(limit, 'share', this.liveInstances());
    }
    return Math.min(limit, this.fallbackLimit);
  }

  /**
   * The result figures of this policy for one decision; `skewMs` shifts its
   * times onto the local clock (Redis answers on its own).
   */
  describe(decision: Decision, limit: number, skewMs = 0): PolicyResult {
    return {
      name: this.name,
      limit,
      remaining: Math.max(0, decision.remaining),
      resetAt: decision.resetAt + skewMs,
      retryAfterMs: decision.allowed ? 0 : decision.retryAfterMs,
      allowed: decision.allowed,
    };
  }
}

/**
 * The result of a decision over several policies. It describes the binding
 * policy: of those that denied, the one whose wait is longest (the request
 * cannot pass before it); if all admitted, the one with least remaining
 * (the first such, in the order given). `policies` lists each one.
 */
export function combine(
  key: string,
  source: RateLimitResult['source'],
  policies: PolicyResult[],
): RateLimitResult {
  let binding = policies[0]!;
  for (const policy of policies) {
    if (binding.allowed && !policy.allowed) binding = policy;
    else if (!binding.allowed && !policy.allowed) {
      if (policy.retryAfterMs > binding.retryAfterMs) binding = policy;
    } else if (binding.allowed && policy.remaining < binding.remaining) {
      binding = policy;
    }
  }
  const allowed = policies.every(policy => policy.allowed);
  return {
    allowed,
    limit: binding.limit,
    remaining: binding.remaining,
    resetAt: binding.resetAt,
    retryAfterMs: allowed ? 0 : binding.retryAfterMs,
    source,
    key,
    policies,
  };
}
