import { checkLimit } from './arguments.js';
import type { BlockCache } from './block-cache.js';
import { RateLimitArgumentError } from './errors.js';
import { combine, type Policy } from './policy.js';
import type { Slot } from './redis-exchange.js';
import { toStorageKey } from './storage-key.js';
import type { MemoryStore } from './stores/memory-store.js';
import type { RedisDecision } from './stores/redis-store.js';
import type {
  AlgorithmName,
  Decision,
  DecisionParams,
  DecisionSource,
  PolicyResult,
  RateLimitResult,
} from './types.js';

/**
 * Why a token bucket takes no per-call limit: its state (GCRA's theoretical
 * arrival time and remainder) is measured in emission intervals of its own
 * limit, so a refund, a read or a write-back made under another limit would
 * misread it (an attack found lock-outs of years and 30 admitted for 1).
 */
export const TOKEN_BUCKET_LIMITS =
  "a token bucket's refill rate is its limit, so it takes no per-request limit; use 'fixed-window' or 'sliding-window' for limits per plan or tenant";

/** One call for a caller key: its policies' counters, cost and limits. */
export type Call = {
  readonly key: string;
  readonly slots: readonly Slot[];
  readonly cost: number;
  /** One per policy. */
  readonly limits: readonly number[];
};

/**
 * The quotas one limiter enforces, and what is the same for all of them:
 * their keys for a caller key, their limits for a call, and how their
 * answers become one result. A limiter without `policies` has one quota,
 * named after it, and its results carry no `policies`.
 */
export class PolicySet {
  /** Each quota's configured limit, in order. */
  readonly defaultLimits: readonly number[];

  constructor(
    readonly rules: readonly Policy[],
    /** `policies` was given: results carry `policies`. */
    readonly multi: boolean,
    private readonly name: string,
    private readonly prefix: string,
    private readonly algorithm: AlgorithmName,
  ) {
    this.defaultLimits = Object.freeze(rules.map(rule => rule.limit));
  }

  /**
   * One limit per policy for a call: the configured ones, or those given (one
   * number for a limiter without policies).
   * @throws RateLimitArgumentError for a wrong count or a limit that is not
   *   a positive whole number
   */
  limitsFor(limit: number | readonly number[] | undefined): readonly number[] {
    if (limit === undefined) return this.defaultLimits;
    const limits = typeof limit === 'number' ? [limit] : limit;
    if (limits.length !== this.rules.length) {
      throw new RateLimitArgumentError(
        `'${this.name}' has ${this.rules.length} policies, got ${limits.length} limits`,
      );
    }
    for (let i = 0; i < limits.length; i++) {
      if (limits[i]! === this.rules[i]!.limit) continue;
      checkLimit(limits[i]!);
      if (this.algorithm === 'token-bucket') throw new RateLimitArgumentError(TOKEN_BUCKET_LIMITS);
    }
    return limits;
  }

  /**
   * Each policy's counter of `key`: `prefix{name|key}` and, with policies,
   * `|policy` after it, so one key's policies share a Cluster hash tag.
   */
  slotsFor(key: string): Slot[] {
    const base = this.name + '|' + toStorageKey(key);
    return this.rules.map(policy => ({
      policy,
      storageKey: base + policy.suffix,
      redisKey: this.prefix + '{' + base + '}' + policy.suffix,
    }));
  }

  /** A call for `key`; `limits` one per policy (see limitsFor). */
  call(key: string, cost: number, limits: readonly number[]): Call {
    return { key, slots: this.slotsFor(key), cost, limits };
  }

  /** The Redis key of a policy's storage key. */
  redisKeyOf(storageKey: string, policy: Policy): string {
    const base = storageKey.slice(0, storageKey.length - policy.suffix.length);
    return this.prefix + '{' + base + '}' + policy.suffix;
  }

  params(policy: Policy, limit: number, cost: number, now: number): DecisionParams {
    return { algorithm: this.algorithm, limit, windowMs: policy.windowMs, cost, now };
  }

  /** One result from each policy's figures. */
  result(key: string, source: DecisionSource, figures: PolicyResult[]): RateLimitResult {
    if (this.multi) return combine(key, source, figures);
    const { allowed, limit, remaining, resetAt, retryAfterMs } = figures[0]!;
    return { allowed, limit, remaining, resetAt, retryAfterMs, source, key };
  }

  /**
   * Decides in the memory store, every policy in one step; `outage`: against
   * each policy's outage budget (the fallback), else its limit. Units of
   * calls still out to Redis for a key must fit too (MemoryStore.reserve).
   * @throws RateLimitCapacityError when the store is full (`whenFull: 'reject'`)
   */
  decideInMemory(
    memory: MemoryStore,
    { key, slots, cost, limits }: Call,
    now: number,
    outage: boolean,
  ): RateLimitResult {
    if (!this.multi) {
      const { policy, storageKey } = slots[0]!;
      const limit = outage ? policy.fallbackFor(limits[0]!) : limits[0]!;
      const params = this.params(policy, limit, cost, now);
      const decision = memory.consume(storageKey, params);
      return {
        allowed: decision.allowed,
        limit,
        remaining: decision.remaining,
        resetAt: decision.resetAt,
        retryAfterMs: decision.retryAfterMs,
        source: 'memory',
        key,
      };
    }
    const params = slots.map(({ policy }, i) =>
      this.params(policy, outage ? policy.fallbackFor(limits[i]!) : limits[i]!, cost, now),
    );
    const decisions = memory.consumeAll(
      slots.map(slot => slot.storageKey),
      params,
    );
    return combine(
      key,
      'memory',
      decisions.map((decision, i) => slots[i]!.policy.describe(decision, params[i]!.limit)),
    );
  }

  /** What a request let through without a decision (fail-open) reports. */
  bypass({ key, limits }: Call, now: number): RateLimitResult {
    const figures = this.rules.map((policy, i) =>
      policy.describe(this.full(policy, limits[i]!, now), limits[i]!),
    );
    return this.result(key, 'bypass', figures);
  }

  /**
   * Redis's answers as a result. Redis reports times on its own clock; they
   * are shifted onto ours so resetAt and the headers stay right when the
   * app's clock is skewed.
   */
  fromRedis(
    { key, slots, limits }: Call,
    decisions: readonly RedisDecision[],
    now: number,
  ): RateLimitResult {
    const skew = now - decisions[0]!.redisNow;
    if (!this.multi) {
      // The hot path: no per-policy figures to build for one rule.
      const decision = decisions[0]!;
      return {
        allowed: decision.allowed,
        limit: limits[0]!,
        remaining: Math.max(0, decision.remaining),
        resetAt: decision.resetAt + skew,
        retryAfterMs: decision.allowed ? 0 : decision.retryAfterMs,
        source: 'redis',
        key,
      };
    }
    const figures = decisions.map((decision, i) =>
      slots[i]!.policy.describe(decision, limits[i]!, skew),
    );
    return this.result(key, 'redis', figures);
  }

  /**
   * A denial Redis gave within the last second (the block cache), if one of
   * the key's policies has one for a request of this cost and limit. The
   * other policies' figures are as this instance last saw them: the request
   * is denied either way, so they only inform.
   */
  blocked(
    blocks: BlockCache,
    memory: MemoryStore,
    { key, slots, cost, limits }: Call,
    now: number,
  ): RateLimitResult | undefined {
    if (!this.multi) {
      const blocked = blocks.check(slots[0]!.storageKey, key, cost, now);
      return blocked && blocked.limit === limits[0]! ? blocked : undefined;
    }
    let denied = false;
    const figures = slots.map((slot, i) => {
      const blocked = blocks.check(slot.storageKey, key, cost, now);
      if (blocked === undefined || blocked.limit !== limits[i]!) return undefined;
      denied = true;
      return slot.policy.describe(blocked, limits[i]!);
    });
    if (!denied) return undefined;
    return combine(
      key,
      'redis',
      figures.map((figure, i) => {
        if (figure) return figure;
        const { policy, storageKey } = slots[i]!;
        const seen = memory.get(storageKey, this.params(policy, limits[i]!, 0, now));
        return policy.describe(seen ?? this.full(policy, limits[i]!, now), limits[i]!);
      }),
    );
  }

  /** What a key with nothing counted answers. */
  full(policy: Policy, limit: number, now: number): Decision {
    return { allowed: true, remaining: limit, resetAt: now + policy.windowMs, retryAfterMs: 0 };
  }
}
