import { EventEmitter } from 'node:events';
import { BrokenCircuitError, isBrokenCircuitError } from 'cockatiel';
import type { StoreBreaker } from './breaker.js';
import { acquireBreakers, checkBreakers, releaseBreakers } from './breaker-registry.js';
import { checkCost, checkKey } from './arguments.js';
import {
  RateLimitArgumentError,
  RateLimitStoreError,
  isRateLimitCapacityError,
  RateLimitTimeoutError,
  type RateLimitHookError,
} from './errors.js';
import { HookRunner } from './hook-runner.js';
import {
  LIMITER_OPTIONS,
  parseLimiterOptions,
  rejectUnknownOptions,
  warnIfDerivedNameTaken,
  warnIfWindowLooksLikeSeconds,
  type LimiterConfig,
  type RateLimiterOptions,
  type RedisClient,
} from './options.js';
import { registerLimiter } from './limiter-registry.js';
import {
  acquireUrlClient,
  peekUrlClient,
  releaseUrlClient,
  warnIfOfflineQueue,
} from './redis-client.js';
import { noteLimiterCreated } from './serving-watch.js';
import { reportPermissionError } from './redis-acl.js';
import {
  describeRedisFailure,
  markHealthy,
  noteCommandError,
  watchConnectionErrors,
} from './redis-failure.js';
import { redactError } from './secrets.js';
import { defaultMemoryStore, type MemoryStore } from './stores/memory-store.js';
import { RedisStore, type RedisDecision } from './stores/redis-store.js';
import { BlockCache } from './block-cache.js';
import type { ReconciledEvent } from './outage-continuity.js';
import type { DroppedEvent } from './pending-hits.js';
import { Policy } from './policy.js';
import { PolicySet, type Call } from './policy-set.js';
import { RedisExchange, WRITE_BACK_TIMEOUT_MS } from './redis-exchange.js';
import { withTimeout } from './timeout.js';
import { ResetLog } from './reset-log.js';
import {
  acquireInstanceRegistry,
  releaseInstanceRegistry,
  type InstanceRegistry,
} from './instance-registry.js';
import { isolateMetrics, type RateLimitMetrics } from './metrics.js';
import type { AlgorithmName, RateLimitResult } from './types.js';

/** Why a decision was made locally instead of in Redis. */
export type FallbackReason = 'breaker-open' | 'not-connected' | 'timeout' | 'error';

export type FallbackEvent = { source: 'memory' | 'bypass'; key: string; reason: FallbackReason };

export interface RateLimiterEvents {
  breakerOpen: [];
  breakerHalfOpen: [];
  breakerClose: [];
  fallback: [FallbackEvent];
  storeError: [unknown];
  /** Hits admitted by memory during an outage, merged into Redis after it. */
  reconciled: [ReconciledEvent];
  /** Outage hits dropped before Redis acknowledged them: the pending bound was reached. */
  pendingDropped: [DroppedEvent];
}

/**
 * The framework-free core: decides whether `key` may spend `cost` units now.
 * Usable from Express (through `rateLimit()`), a queue worker or a bot.
 *
 * Store failures never reach the caller: a failed, timed-out or skipped Redis
 * call is decided by the memory store (`failClosed: true`) or let through
 * (`failClosed: false`), and `result.source` says which.
 */
export class RateLimiter extends EventEmitter<RateLimiterEvents> {
  readonly name: string;
  /** The limit (of the first policy, with `policies`). */
  readonly limit: number;
  /** The window in ms (of the first policy, with `policies`). */
  readonly windowMs: number;
  readonly algorithm: AlgorithmName;
  readonly failClosed: boolean;
  readonly memory: MemoryStore;
  /**
   * Every quota the limiter enforces, in the order given; one, named after
   * the limiter, without `policies`.
   */
  readonly policies: ReadonlyArray<{ name: string; limit: number; windowMs: number }>;
  private readonly config: LimiterConfig;
  private readonly set: PolicySet;
  private readonly redis: RedisExchange | undefined;
  private readonly disposers: Array<{ dispose(): void }> = [];
  private readonly blocks: BlockCache;
  private readonly resets: ResetLog;
  private readonly metrics: RateLimitMetrics | undefined;
  private readonly hooks: HookRunner;
  private readonly registry: { client: RedisClient; registry: InstanceRegistry } | undefined;
  private inOutage = false;
  private closed = false;

  /**
   * @throws RateLimitConfigError for any invalid option, before anything is
   *   created: no client, timer, listener or registry entry is left behind.
   */
  constructor(options: RateLimiterOptions) {
    super();
    if (typeof options === 'object' && options !== null)
      rejectUnknownOptions(options, LIMITER_OPTIONS);
    const config = parseLimiterOptions(options);
    // Validate first, then acquire: a breaker conflict must throw before the
    // URL client is taken.
    checkBreakers(
      typeof config.redis === 'string' ? peekUrlClient(config.redis) : config.redis,
      config.breaker,
    );
    this.config = config;
    this.name = config.name;
    this.limit = config.limit;
    this.windowMs = config.windowMs;
    this.algorithm = config.algorithm;
    this.failClosed = config.failClosed;
    const multi = config.multiPolicy;
    this.memory = config.memory ?? defaultMemoryStore();
    this.hooks = new HookRunner(error => this.reportHookError(error), config.logger);
    this.metrics = config.metrics && isolateMetrics(config.metrics, this.hooks);
    this.resets = new ResetLog(Math.max(2 * config.timeoutMs, WRITE_BACK_TIMEOUT_MS) + 1000);
    const rules = config.policies.map(policy => {
      // Per-policy metrics are labelled name/policy.
      const label = multi ? `${this.name}/${policy.name}` : this.name;
      return new Policy(
        policy,
        config.fallbackLimit,
        multi,
        {
          name: this.name,
          algorithm: this.algorithm,
          failClosed: this.failClosed,
          clock: config.clock,
          logger: config.logger,
          onReconciled: event => {
            this.emit('reconciled', event);
            this.metrics?.reconciled(label, event.hits);
          },
          onDropped: event => {
            config.logger.warn(
              `resilient-rate-limit: '${label}' dropped ${event.hits} outage hits of ${event.keys} keys before Redis acknowledged them: more keys hold outage hits than memory.maxKeys`,
            );
            this.emit('pendingDropped', event);
            this.metrics?.pendingDropped?.(label, event.hits);
          },
          onStoreError: error => this.emitStoreError(error),
        },
        () => this.liveInstances ?? 1,
        this.memory,
        this.resets,
      );
    });
    this.set = new PolicySet(rules, multi, this.name, config.prefix, this.algorithm);
    this.policies = Object.freeze(
      rules.map(({ name, limit, windowMs }) => Object.freeze({ name, limit, windowMs })),
    );
    this.blocks = new BlockCache(this.memory.maxKeys);
    if (!config.named) warnIfDerivedNameTaken(this.name, config.logger);
    if (options.policies === undefined) {
      warnIfWindowLooksLikeSeconds(this.name, options.window, config.logger);
    } else {
      for (const policy of options.policies) {
        warnIfWindowLooksLikeSeconds(`${this.name}/${policy.name}`, policy.window, config.logger);
      }
    }
    if (config.fallbackLimit !== 'share' && config.fallbackLimit > config.limit && !multi) {
      config.logger.warn(
        `resilient-rate-limit: '${this.name}' has fallbackLimit ${config.fallbackLimit} above limit ${config.limit}: during an outage each instance admits more than the rule allows in Redis`,
      );
    }
    this.disposers.push({ dispose: noteLimiterCreated(config.logger) });

    if (config.redis !== undefined) {
      let client: RedisClient;
      if (typeof config.redis === 'string') {
        client = acquireUrlClient(config.redis);
      } else {
        client = config.redis;
        warnIfOfflineQueue(client, config.logger);
      }
      watchConnectionErrors(client, config.logger);
      const breakers = acquireBreakers(client, config.breaker, config.logger);
      this.redis = new RedisExchange(
        new RedisStore(client, config.redisTime === 'clock'),
        this.memory,
        breakers,
        rules,
        this.algorithm,
        config.clock,
        (storageKey, policy) => this.set.redisKeyOf(storageKey, policy),
        context => this.hooks.caught(context),
        config.timeoutMs,
      );
      this.disposers.push({ dispose: () => releaseBreakers(client, config.breaker, breakers) });
      if (config.fallbackLimit === 'share') {
        const registry = acquireInstanceRegistry(client, config.prefix, {
          horizonMs: config.instanceHorizonMs,
          clock: config.redisTime === 'clock' ? config.clock : undefined,
          logger: config.logger,
        });
        this.registry = { client, registry };
      }
      this.disposers.push(
        breakers.subscribe({
          open: () => this.emit('breakerOpen'),
          halfOpen: () => this.emit('breakerHalfOpen'),
          close: () => {
            this.inOutage = false;
            markHealthy(client);
            this.emit('breakerClose');
            this.reconcile().catch(this.hooks.caught('reconciliation after recovery'));
          },
          // Hits admitted before the first connection go to Redis now.
          connected: () => {
            this.inOutage = false;
            markHealthy(client);
            this.reconcile().catch(this.hooks.caught('reconciliation after connecting'));
          },
        }),
      );
    }
    // Near the end, so a constructor that threw registered nothing.
    this.disposers.push({
      dispose: registerLimiter({
        name: this.name,
        prefix: config.prefix,
        algorithm: this.algorithm,
        limit: this.limit,
        windowMs: this.windowMs,
        policies: multi
          ? rules.map(rule => `${rule.name}: ${rule.limit} per ${rule.windowMs} ms`).join(', ')
          : undefined,
        usesRedis: config.redis !== undefined,
        logger: config.logger,
      }),
    });
    // Last: the metrics sink is user code and gets a fully built limiter.
    if (this.metrics) this.disposers.push({ dispose: this.metrics.attach(this) });
  }

  /**
   * Events are delivered in a microtask, each listener through the hook
   * runner, so a listener never runs on our stack (or cockatiel's) and a
   * throw, or an async listener's rejection, never changes a decision: it is reported once through `storeError` as a
   * RateLimitHookError (or logged, when nobody listens to `storeError`).
   * `'error'` keeps Node's own semantics.
   */
  override emit<K>(
    event: keyof RateLimiterEvents | K,
    ...args: K extends keyof RateLimiterEvents ? RateLimiterEvents[K] : never
  ): boolean {
    if (event === 'error') return super.emit(event, ...args);
    if (this.listenerCount(event) === 0) return false;
    queueMicrotask(() => {
      for (const listener of this.rawListeners(event)) {
        this.hooks.call(`${event} listener`, () =>
          (listener as unknown as (...a: unknown[]) => unknown).apply(this, args),
        );
      }
    });
    return true;
  }

  private reportHookError(error: RateLimitHookError): void {
    // A throwing storeError listener is logged, never re-emitted: no loops.
    if (error.hook !== 'storeError listener' && this.listenerCount('storeError') > 0) {
      this.emit('storeError', error);
    } else {
      this.hooks.logOnce(error.hook, error.cause);
    }
  }

  /**
   * Cost units per key per window this instance admits from memory during an
   * outage: `fallbackLimit`, or with `'share'` `ceil(limit / liveInstances)`
   * (of the first policy, with `policies`).
   */
  get fallbackLimit(): number {
    return this.set.rules[0]!.fallbackLimit;
  }

  /**
   * Live instances (this one included) seen in Redis at the last registry
   * refresh; `undefined` unless `fallbackLimit` is `'share'` on Redis.
   */
  get liveInstances(): number | undefined {
    return this.registry?.registry.liveInstances;
  }

  /**
   * With `policies`: each policy's limit and outage budget, for metrics
   * (labelled `name/policy`); `undefined` for a limiter with one rule.
   */
  get quotas(): ReadonlyArray<{ rule: string; limit: number; fallbackLimit: number }> | undefined {
    if (!this.set.multi) return undefined;
    return this.set.rules.map(policy => ({
      rule: `${this.name}/${policy.name}`,
      limit: policy.limit,
      fallbackLimit: policy.fallbackLimit,
    }));
  }

  /** The Redis breaker's state; `undefined` in memory-only mode. */
  get breakerState(): StoreBreaker['state'] | undefined {
    return this.redis?.breakers.state;
  }

  /**
   * Counts `cost` units for `key` if they fit (in every policy, with
   * `policies`). A denied call counts nothing. `options.limit` judges the
   * key's one counter against another limit for this call (plans, tenants);
   * the result and headers show that limit.
   * @throws RateLimitArgumentError (as a rejection) for an empty key, or a
   *   cost or limit that is not a whole number with 1 <= cost <= limit, or a
   *   `limit` given to a limiter with `policies` (which limit would it be?).
   */
  consume(key: string, cost = 1, options?: { limit?: number }): Promise<RateLimitResult> {
    try {
      const limit = options?.limit;
      if (limit !== undefined && this.set.multi) {
        throw new RateLimitArgumentError(
          `'${this.name}' has policies: a per-call limit belongs to one policy; give each policy a function limit in the middleware instead`,
        );
      }
      const result = this.decide(key, cost, limit);
      return result instanceof Promise ? result : Promise.resolve(result);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * `consume()` without the promise when no Redis call is needed (memory-only,
   * breaker open): the middleware's hot path. Throws instead of rejecting
   * when it answers synchronously. `limit`: this call's limit, or one per
   * policy.
   * @internal
   */
  decide(
    key: string,
    cost: number,
    limit?: number | readonly number[],
  ): RateLimitResult | Promise<RateLimitResult> {
    const result = this.decideUnobserved(key, cost, this.set.limitsFor(limit));
    const metrics = this.metrics;
    if (metrics === undefined) return result;
    if (!(result instanceof Promise)) {
      metrics.decision(this.name, result.source, result.allowed);
      return result;
    }
    return result.then(settled => {
      metrics.decision(this.name, settled.source, settled.allowed);
      return settled;
    });
  }

  private decideUnobserved(
    key: string,
    cost: number,
    limits: readonly number[],
  ): RateLimitResult | Promise<RateLimitResult> {
    checkKey(key);
    for (const limit of limits) checkCost(cost, limit);
    const call = this.set.call(key, cost, limits);
    const redis = this.redis;
    if (redis === undefined) return this.decideLocally(call, this.config.clock.now(), false);
    redis.busy = true;
    const breaker = redis.breakers.forKey(call.slots[0]!.redisKey);
    const skip = breaker.skipReason();
    if (skip) return this.fallBack(call, skip);
    // After the breaker check: during an outage the fallback decides (and
    // says so), even for keys Redis had denied.
    if (this.blocks.size > 0) {
      const now = this.config.clock.now();
      const blocked = this.set.blocked(this.blocks, this.memory, call, now);
      if (blocked) return blocked;
    }
    return this.decideInRedis(redis, breaker, call);
  }

  private async decideInRedis(
    redis: RedisExchange,
    breaker: StoreBreaker,
    call: Call,
  ): Promise<RateLimitResult> {
    const { slots, cost, limits } = call;
    const started = this.metrics ? performance.now() : 0;
    const mark = this.resets.mark();
    let decisions: RedisDecision[];
    try {
      const params = slots.map((slot, i) => this.set.params(slot.policy, limits[i]!, cost, 0));
      decisions = await redis.exchange(breaker, slots, params, this.config.timeoutMs);
    } catch (error) {
      this.metrics?.redisLatency(this.name, (performance.now() - started) / 1000);
      return this.fallBack(call, this.reasonFor(error), error);
    }
    this.metrics?.redisLatency(this.name, (performance.now() - started) / 1000);
    if (this.inOutage) {
      this.inOutage = false;
      markHealthy(redis.store.client);
    }
    const result = this.set.fromRedis(call, decisions, this.config.clock.now());
    // An admission under another (per-request) limit moved the counter: a
    // denial cached for the old count would announce too long a wait.
    if (result.allowed && this.blocks.size > 0) {
      for (const slot of slots) this.blocks.forget(slot.storageKey);
    }
    if (!result.allowed) {
      const now = this.config.clock.now();
      for (let i = 0; i < slots.length; i++) {
        if (this.resets.since(slots[i]!.storageKey, mark)) continue;
        this.blocks.remember(slots[i]!.storageKey, result.policies?.[i] ?? result, cost, now);
      }
    }
    return result;
  }

  /**
   * Merges the hits that memory admitted during an outage into Redis, for the
   * keys not decided since. Runs by itself when the breaker closes; exposed
   * so callers (and tests) can await it. What fails stays pending.
   */
  reconcile(): Promise<void> {
    return this.redis?.reconcile() ?? Promise.resolve();
  }

  /** Hits admitted during an outage and not yet acknowledged by Redis. */
  get pendingReconciliation(): number {
    return this.redis?.pending ?? 0;
  }

  /** The current state of `key` without consuming; `undefined` if it has none. */
  async get(key: string): Promise<RateLimitResult | undefined> {
    checkKey(key);
    const slots = this.set.slotsFor(key);
    const redis = this.redis;
    const breaker = redis?.breakers.forKey(slots[0]!.redisKey);
    if (redis && breaker && !breaker.shouldSkip()) {
      try {
        const params = slots.map(slot => this.set.params(slot.policy, slot.policy.limit, 0, 0));
        const decisions = await redis.exchange(breaker, slots, params, this.config.timeoutMs);
        if (!decisions.some(decision => decision.live)) return undefined;
        const call = { key, slots, cost: 0, limits: this.set.defaultLimits };
        return this.set.fromRedis(call, decisions, this.config.clock.now());
      } catch (error) {
        if (!isBrokenCircuitError(error)) this.emitStoreError(error);
      }
    }
    const now = this.config.clock.now();
    let held = false;
    const figures = slots.map(({ policy, storageKey }) => {
      const limit = redis ? policy.fallbackLimit : policy.limit;
      const decision = this.memory.get(storageKey, this.set.params(policy, limit, 0, now));
      if (decision) held = true;
      return policy.describe(decision ?? this.set.full(policy, limit, now), limit);
    });
    if (!held) return undefined;
    return this.set.result(key, 'memory', figures);
  }

  /**
   * Gives back `cost` units of `key` counted in its live window or bucket (in
   * every policy): never below zero, never into a window that has ended
   * (login attempts that succeeded, work that was not done). In Redis it is
   * one atomic call, merged with this instance's outage state like a
   * decision; during an outage memory gives the units back and the refund
   * reaches Redis with the key's other outage state, once. Other instances
   * see it within 1 s.
   * @throws RateLimitArgumentError for an empty key or a cost that is not a
   *   positive whole number.
   */
  async refund(key: string, cost = 1): Promise<void> {
    checkKey(key);
    checkCost(cost, Number.MAX_SAFE_INTEGER);
    const slots = this.set.slotsFor(key);
    const now = this.config.clock.now();
    for (const slot of slots) {
      // Answers to calls already out describe the key before the refund.
      this.resets.note(slot.storageKey, now);
      this.blocks.forget(slot.storageKey);
    }
    const redis = this.redis;
    if (redis === undefined) {
      for (const { policy, storageKey } of slots) {
        this.memory.refund(storageKey, this.set.params(policy, policy.limit, cost, now));
      }
      return;
    }
    const breaker = redis.breakers.forKey(slots[0]!.redisKey);
    if (!breaker.shouldSkip()) {
      try {
        const params = slots.map(slot => this.set.params(slot.policy, slot.policy.limit, -cost, 0));
        const decisions = await redis.exchange(breaker, slots, params, this.config.timeoutMs);
        // An answer that holds no state is not mirrored: refund the view too.
        if (this.failClosed) {
          slots.forEach(({ policy, storageKey }, i) => {
            if (decisions[i]!.live) return;
            this.memory.refund(
              storageKey,
              this.set.params(policy, policy.fallbackLimit, cost, now),
            );
          });
        }
        return;
      } catch (error) {
        if (!isBrokenCircuitError(error)) this.emitStoreError(error);
      }
    }
    // Fail-open rules keep no outage state: nothing to give back locally.
    if (!this.failClosed) return;
    // Only what memory gave back is owed to Redis: a refund of units this
    // instance never saw counted is dropped (over-counting is the safe side).
    let owed = false;
    for (const { policy, storageKey } of slots) {
      const params = this.set.params(policy, policy.fallbackLimit, cost, now);
      const back = this.memory.refund(storageKey, params);
      if (back.units === 0) continue;
      policy.continuity.record(storageKey, -back.units, back.resetAt, now);
      owed = true;
    }
    if (owed) redis.scheduleWriteBack();
  }

  /**
   * Forgets `key` (in every policy) in memory and in Redis. Rejects with
   * RateLimitStoreError if Redis could not be reached: the memory counter is
   * reset, Redis's is not.
   */
  async reset(key: string): Promise<void> {
    checkKey(key);
    const slots = this.set.slotsFor(key);
    const now = this.config.clock.now();
    for (const { policy, storageKey } of slots) {
      this.resets.note(storageKey, now);
      this.memory.reset(storageKey);
      policy.continuity.forget(storageKey);
      this.blocks.forget(storageKey);
    }
    const redis = this.redis;
    if (redis === undefined) return;
    const breaker = redis.breakers.forKey(slots[0]!.redisKey);
    const skip = breaker.skipReason();
    if (skip) {
      const why =
        skip === 'not-connected'
          ? 'the client is not connected (yet: a client connects in the background)'
          : 'the circuit breaker is open';
      throw new RateLimitStoreError(`could not reset '${key}' in Redis: ${why}`);
    }
    const params = this.set.params(this.set.rules[0]!, this.limit, 0, now);
    try {
      await redis.reset(breaker, slots, params, this.config.timeoutMs);
    } catch (error) {
      this.noteStoreError(error);
      throw new RateLimitStoreError(`could not reset '${key}' in Redis`, { cause: error });
    }
  }

  /** Stops listening to the breaker and frees what this limiter created. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const unwritten = (await this.redis?.close()) ?? 0;
    if (unwritten > 0) {
      this.config.logger.warn(
        `resilient-rate-limit: '${this.name}' closed with ${unwritten} hits admitted during an outage that Redis has not acknowledged; other instances do not count them`,
      );
    }
    for (const disposer of this.disposers.splice(0)) disposer.dispose();
    if (this.registry) {
      const left = releaseInstanceRegistry(this.registry.client, this.registry.registry);
      // Before a URL client is disconnected, which would drop the removal
      // unsent (auto-pipelining sends on the next tick); within the budget.
      if (left) await withTimeout(left, this.config.timeoutMs).catch(() => undefined);
    }
    // After the breakers: they hold listeners on this client.
    if (typeof this.config.redis === 'string') releaseUrlClient(this.config.redis);
    if (this.config.ownsMemory) this.memory.close();
  }

  // The memory store decides; a full store lets a fail-open rule's request pass.
  private decideLocally(call: Call, now: number, outage: boolean): RateLimitResult {
    try {
      return this.set.decideInMemory(this.memory, call, now, outage);
    } catch (error) {
      if (isRateLimitCapacityError(error) && !this.failClosed) return this.set.bypass(call, now);
      throw error;
    }
  }

  private fallBack(call: Call, reason: FallbackReason, error?: unknown): RateLimitResult {
    const { key, slots, cost } = call;
    if (error !== undefined && reason !== 'breaker-open') this.emitStoreError(error);
    const source: 'memory' | 'bypass' = this.failClosed ? 'memory' : 'bypass';
    if (!this.inOutage) {
      this.inOutage = true;
      this.config.logger.warn(
        `resilient-rate-limit: '${this.name}' cannot decide in Redis (${describeRedisFailure(reason, error, this.redis?.store.client)}); ${source === 'memory' ? 'limiting from memory' : 'letting requests through'} until it recovers`,
      );
    }
    // Per request during an outage: build the event only for a listener.
    if (this.listenerCount('fallback') > 0) this.emit('fallback', { source, key, reason });
    if (!this.failClosed) return this.set.bypass(call, this.config.clock.now());
    const now = this.config.clock.now();
    const result = this.decideLocally(call, now, true);
    if (result.allowed) {
      for (let i = 0; i < slots.length; i++) {
        const { policy, storageKey } = slots[i]!;
        const resetAt = result.policies?.[i]?.resetAt ?? result.resetAt;
        policy.continuity.record(storageKey, cost, resetAt, now);
        this.metrics?.outageAdmitted?.(
          this.set.multi ? `${this.name}/${policy.name}` : this.name,
          cost,
        );
      }
      this.redis?.scheduleWriteBack();
    }
    return result;
  }

  // Credentials off the error first: listeners, causes and logs get it next.
  private noteStoreError(error: unknown): void {
    redactError(error);
    if (this.redis) {
      const probeKey = this.config.prefix + '{' + this.name + '}';
      const { client } = this.redis.store;
      reportPermissionError(client, error, probeKey, this.config.prefix, this.config.logger);
      noteCommandError(client, error, this.config.logger);
    }
  }

  private emitStoreError(error: unknown): void {
    this.noteStoreError(error);
    this.emit('storeError', error);
  }

  private reasonFor(error: unknown): FallbackReason {
    if (error instanceof BrokenCircuitError || isBrokenCircuitError(error)) return 'breaker-open';
    if (error instanceof RateLimitTimeoutError) return 'timeout';
    return 'error';
  }
}
