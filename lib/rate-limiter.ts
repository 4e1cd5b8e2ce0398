import { EventEmitter } from 'node:events';
import { BrokenCircuitError, isBrokenCircuitError } from 'cockatiel';
import type { StoreBreaker } from './breaker.js';
import {
  acquireBreakers,
  checkBreakers,
  releaseBreakers,
  type BreakerRegistry,
} from './breaker-registry.js';
import { checkCost, checkKey, checkLimit } from './arguments.js';
import {
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
import { toStorageKey } from './storage-key.js';
import { defaultMemoryStore, type MemoryStore } from './stores/memory-store.js';
import { RedisStore, type RedisDecision } from './stores/redis-store.js';
import { BlockCache } from './block-cache.js';
import { OutageContinuity, type ReconciledEvent } from './outage-continuity.js';
import type { DroppedEvent } from './pending-hits.js';
import { ResetLog } from './reset-log.js';
import { outageBudget } from './outage-budget.js';
import {
  acquireInstanceRegistry,
  releaseInstanceRegistry,
  type InstanceRegistry,
} from './instance-registry.js';
import { isolateMetrics, type RateLimitMetrics } from './metrics.js';
import { withTimeout } from './timeout.js';
import type { AlgorithmName, DecisionParams, DecisionSource, RateLimitResult } from './types.js';

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

/** How long one write-back call of outage hits may take (ms). */
const WRITE_BACK_TIMEOUT_MS = 1000;
/** How soon outage hits recorded while the breaker stayed closed are written back (ms). */
const WRITE_BACK_DELAY_MS = 1000;

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
  readonly limit: number;
  readonly windowMs: number;
  readonly algorithm: AlgorithmName;
  readonly failClosed: boolean;
  readonly memory: MemoryStore;
  private readonly config: LimiterConfig;
  private readonly redisStore: RedisStore | undefined;
  private readonly breakers: BreakerRegistry | undefined;
  private readonly disposers: Array<{ dispose(): void }> = [];
  private readonly continuity: OutageContinuity;
  private readonly blocks: BlockCache;
  private readonly resets: ResetLog;
  private writeBackTimer: ReturnType<typeof setTimeout> | undefined;
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
    this.memory = config.memory ?? defaultMemoryStore();
    this.hooks = new HookRunner(error => this.reportHookError(error), config.logger);
    this.metrics = config.metrics && isolateMetrics(config.metrics, this.hooks);
    this.resets = new ResetLog(Math.max(2 * config.timeoutMs, WRITE_BACK_TIMEOUT_MS) + 1000);
    // A getter: with 'share' the budget follows the live instance count.
    const budget = (): number => this.fallbackLimit;
    this.continuity = new OutageContinuity(
      {
        name: this.name,
        algorithm: this.algorithm,
        get fallbackLimit() {
          return budget();
        },
        windowMs: this.windowMs,
        failClosed: this.failClosed,
        clock: config.clock,
        logger: config.logger,
        onReconciled: event => {
          this.emit('reconciled', event);
          this.metrics?.reconciled(this.name, event.hits);
        },
        onDropped: event => {
          config.logger.warn(
            `resilient-rate-limit: '${this.name}' dropped ${event.hits} outage hits of ${event.keys} keys before Redis acknowledged them: more keys hold outage hits than memory.maxKeys`,
          );
          this.emit('pendingDropped', event);
          this.metrics?.pendingDropped?.(this.name, event.hits);
        },
        onStoreError: error => this.emitStoreError(error),
      },
      this.memory,
      this.resets,
    );
    this.blocks = new BlockCache(this.memory.maxKeys);
    if (!config.named) warnIfDerivedNameTaken(this.name, config.logger);
    warnIfWindowLooksLikeSeconds(this.name, options.window, config.logger);
    if (config.fallbackLimit !== 'share' && config.fallbackLimit > config.limit) {
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
      this.breakers = breakers;
      this.redisStore = new RedisStore(client, config.redisTime === 'clock');
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
        usesRedis: config.redis !== undefined,
        logger: config.logger,
      }),
    });
    // Last: the metrics sink is user code and gets a fully built limiter.
    if (this.metrics) this.disposers.push({ dispose: this.metrics.attach(this) });
  }

  /**
   * Events are delivered in a microtask, each listener in its own try/catch,
   * so a listener never runs on our stack (or cockatiel's) and a throw never
   * changes a decision: it is reported once through `storeError` as a
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
        try {
          (listener as unknown as (...a: unknown[]) => unknown).apply(this, args);
        } catch (error) {
          this.hooks.call(`${event} listener`, () => {
            throw error;
          });
        }
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
   * outage: `fallbackLimit`, or with `'share'` `ceil(limit / liveInstances)`.
   */
  get fallbackLimit(): number {
    return outageBudget(this.limit, this.config.fallbackLimit, this.liveInstances ?? 1);
  }

  /**
   * Live instances (this one included) seen in Redis at the last registry
   * refresh; `undefined` unless `fallbackLimit` is `'share'` on Redis.
   */
  get liveInstances(): number | undefined {
    return this.registry?.registry.liveInstances;
  }

  /** The Redis breaker's state; `undefined` in memory-only mode. */
  get breakerState(): StoreBreaker['state'] | undefined {
    return this.breakers?.state;
  }

  /**
   * Counts `cost` units for `key` if they fit. A denied call counts nothing.
   * `options.limit` judges the key's one counter against another limit for
   * this call (plans, tenants); the result and headers show that limit.
   * @throws RateLimitArgumentError (as a rejection) for an empty key, or a
   *   cost or limit that is not a whole number with 1 <= cost <= limit.
   */
  consume(key: string, cost = 1, options?: { limit?: number }): Promise<RateLimitResult> {
    try {
      const result = this.decide(key, cost, options?.limit);
      return result instanceof Promise ? result : Promise.resolve(result);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * `consume()` without the promise when no Redis call is needed (memory-only,
   * breaker open): the middleware's hot path. Throws instead of rejecting
   * when it answers synchronously.
   * @internal
   */
  decide(key: string, cost: number, limit?: number): RateLimitResult | Promise<RateLimitResult> {
    const result = this.decideUnobserved(key, cost, limit ?? this.limit);
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
    limit: number,
  ): RateLimitResult | Promise<RateLimitResult> {
    checkKey(key);
    if (limit !== this.limit) checkLimit(limit);
    checkCost(cost, limit);
    const storageKey = this.name + '|' + toStorageKey(key);
    if (this.redisStore === undefined || this.breakers === undefined) {
      return this.decideInMemory(key, storageKey, cost, limit, this.config.clock.now());
    }
    const redisKey = this.redisKey(storageKey);
    const breaker = this.breakers.forKey(redisKey);
    const skip = breaker.skipReason();
    if (skip) return this.fallBack(key, storageKey, cost, limit, skip);
    // After the breaker check: during an outage the fallback decides (and
    // says so), even for keys Redis had denied.
    if (this.blocks.size > 0) {
      const blocked = this.blocks.check(storageKey, key, cost, this.config.clock.now());
      if (blocked && blocked.limit === limit) return blocked;
    }
    return this.decideInRedis(this.redisStore, breaker, key, storageKey, redisKey, cost, limit);
  }

  private async decideInRedis(
    store: RedisStore,
    breaker: StoreBreaker,
    key: string,
    storageKey: string,
    redisKey: string,
    cost: number,
    limit: number,
  ): Promise<RateLimitResult> {
    const started = this.metrics ? performance.now() : 0;
    const mark = this.resets.mark();
    let decision: RedisDecision;
    try {
      decision = await this.exchange(
        store,
        breaker,
        storageKey,
        redisKey,
        this.params(limit, cost, 0),
        this.config.timeoutMs,
      );
    } catch (error) {
      this.metrics?.redisLatency(this.name, (performance.now() - started) / 1000);
      return this.fallBack(key, storageKey, cost, limit, this.reasonFor(error), error);
    }
    this.metrics?.redisLatency(this.name, (performance.now() - started) / 1000);
    if (this.inOutage) {
      this.inOutage = false;
      markHealthy(store.client);
    }
    const result = this.fromRedis(key, decision, limit);
    if (!result.allowed && !this.resets.since(storageKey, mark)) {
      this.blocks.remember(storageKey, result, cost, this.config.clock.now());
    }
    return result;
  }

  /**
   * One Redis call for a key within `budgetMs`, carrying what this instance
   * holds for the key (see OutageContinuity), after any call already carrying
   * its outage hits has settled.
   */
  private async exchange(
    store: RedisStore,
    breaker: StoreBreaker,
    storageKey: string,
    redisKey: string,
    /** A fresh object per call: its `now` is set here, once any wait is over. */
    params: DecisionParams,
    budgetMs: number,
  ): Promise<RedisDecision> {
    const deadline = performance.now() + budgetMs;
    for (let wait = this.continuity.inFlight(storageKey); wait;) {
      await withTimeout(wait, Math.max(1, deadline - performance.now()));
      wait = this.continuity.inFlight(storageKey);
    }
    for (let wholeView = false; ; wholeView = true) {
      params.now = this.config.clock.now();
      const ticket = this.continuity.prepare(storageKey, params.now, wholeView);
      const sent = breaker.execute(() =>
        withTimeout(
          store.consume(redisKey, params, ticket.outgoing?.args),
          Math.max(1, Math.round(deadline - performance.now())),
        ),
      );
      this.continuity.hold(ticket, sent);
      const decision = await sent;
      // Redis stores less than this instance's view: send the whole view.
      if (decision.needsView && !wholeView) continue;
      // Never settle a non-answer: outage units stay pending.
      if (decision.needsView)
        throw new RateLimitStoreError('the decision script asked twice for the view');
      this.continuity.settle(ticket, decision);
      return decision;
    }
  }

  /**
   * Merges the hits that memory admitted during an outage into Redis, for the
   * keys not decided since. Runs by itself when the breaker closes; exposed
   * so callers (and tests) can await it. What fails stays pending.
   */
  reconcile(): Promise<void> {
    const store = this.redisStore;
    const breakers = this.breakers;
    if (!store || !breakers) return Promise.resolve();
    return this.continuity.reconcile(storageKey => {
      const redisKey = this.redisKey(storageKey);
      const breaker = breakers.forKey(redisKey);
      if (breaker.shouldSkip()) {
        return Promise.reject(new RateLimitStoreError('the circuit breaker is open'));
      }
      const params = this.params(this.limit, 0, 0);
      return this.exchange(store, breaker, storageKey, redisKey, params, WRITE_BACK_TIMEOUT_MS);
    });
  }

  // Outage hits recorded while the breaker stayed closed (a lone timeout)
  // have no breakerClose to write them back: a timer does.
  private scheduleWriteBack(): void {
    if (this.writeBackTimer !== undefined || this.closed) return;
    this.writeBackTimer = setTimeout(() => {
      this.writeBackTimer = undefined;
      if (this.breakers?.state !== 'closed') return;
      this.reconcile()
        .then(() => {
          if (this.continuity.pending > 0) this.scheduleWriteBack();
        })
        .catch(this.hooks.caught('scheduled write-back'));
    }, WRITE_BACK_DELAY_MS);
    this.writeBackTimer.unref?.();
  }

  /** Hits admitted during an outage and not yet acknowledged by Redis. */
  get pendingReconciliation(): number {
    return this.continuity.pending;
  }

  /** The current state of `key` without consuming; `undefined` if it has none. */
  async get(key: string): Promise<RateLimitResult | undefined> {
    checkKey(key);
    const storageKey = this.name + '|' + toStorageKey(key);
    const redisKey = this.redisKey(storageKey);
    const breaker = this.breakers?.forKey(redisKey);
    if (this.redisStore && breaker && !breaker.shouldSkip()) {
      try {
        const decision = await this.exchange(
          this.redisStore,
          breaker,
          storageKey,
          redisKey,
          this.params(this.limit, 0, 0),
          this.config.timeoutMs,
        );
        return decision.live ? this.fromRedis(key, decision, this.limit) : undefined;
      } catch (error) {
        if (!isBrokenCircuitError(error)) this.emitStoreError(error);
      }
    }
    const limit = this.redisStore ? this.fallbackLimit : this.limit;
    const decision = this.memory.get(storageKey, this.params(limit, 0, this.config.clock.now()));
    return decision && { ...decision, limit, source: 'memory', key };
  }

  /**
   * Gives back `cost` units of `key` counted in its live window or bucket:
   * never below zero, never into a window that has ended (login attempts
   * that succeeded, work that was not done). In Redis it is one atomic call,
   * merged with this instance's outage state like a decision; during an
   * outage memory gives the units back and the refund reaches Redis with the
   * key's other outage state, once. Other instances see it within 1 s.
   * @throws RateLimitArgumentError for an empty key or a cost that is not a
   *   positive whole number.
   */
  async refund(key: string, cost = 1): Promise<void> {
    checkKey(key);
    checkCost(cost, Number.MAX_SAFE_INTEGER);
    const storageKey = this.name + '|' + toStorageKey(key);
    const now = this.config.clock.now();
    // Answers to calls already out describe the key before the refund.
    this.resets.note(storageKey, now);
    this.blocks.forget(storageKey);
    const store = this.redisStore;
    if (store === undefined || this.breakers === undefined) {
      this.memory.refund(storageKey, this.params(this.limit, cost, now));
      return;
    }
    const redisKey = this.redisKey(storageKey);
    const breaker = this.breakers.forKey(redisKey);
    if (!breaker.shouldSkip()) {
      try {
        const params = this.params(this.limit, -cost, 0);
        const decision = await this.exchange(
          store,
          breaker,
          storageKey,
          redisKey,
          params,
          this.config.timeoutMs,
        );
        // An answer that holds no state is not mirrored: refund the view too.
        if (!decision.live && this.failClosed) {
          this.memory.refund(storageKey, this.params(this.fallbackLimit, cost, now));
        }
        return;
      } catch (error) {
        if (!isBrokenCircuitError(error)) this.emit('storeError', error);
      }
    }
    // Fail-open rules keep no outage state: nothing to give back locally.
    if (!this.failClosed) return;
    // Only what memory gave back is owed to Redis: a refund of units this
    // instance never saw counted is dropped (over-counting is the safe side).
    const back = this.memory.refund(storageKey, this.params(this.fallbackLimit, cost, now));
    if (back.units === 0) return;
    this.continuity.record(storageKey, -back.units, back.resetAt, now);
    this.scheduleWriteBack();
  }

  /**
   * Forgets `key` in memory and in Redis. Rejects with RateLimitStoreError if
   * Redis could not be reached: the memory counter is reset, Redis's is not.
   */
  async reset(key: string): Promise<void> {
    checkKey(key);
    const storageKey = this.name + '|' + toStorageKey(key);
    const now = this.config.clock.now();
    this.resets.note(storageKey, now);
    this.memory.reset(storageKey);
    this.continuity.forget(storageKey);
    this.blocks.forget(storageKey);
    if (!this.redisStore || !this.breakers) return;
    const redisKey = this.redisKey(storageKey);
    const breaker = this.breakers.forKey(redisKey);
    if (breaker.shouldSkip()) {
      throw new RateLimitStoreError(
        `could not reset '${key}' in Redis: the circuit breaker is open`,
      );
    }
    const store = this.redisStore;
    try {
      await breaker.execute(() =>
        withTimeout(store.reset(redisKey, this.params(this.limit, 0, now)), this.config.timeoutMs),
      );
    } catch (error) {
      this.noteStoreError(error);
      throw new RateLimitStoreError(`could not reset '${key}' in Redis`, { cause: error });
    }
  }

  /** Stops listening to the breaker and frees what this limiter created. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.writeBackTimer !== undefined) clearTimeout(this.writeBackTimer);
    await this.continuity.settled();
    for (const disposer of this.disposers.splice(0)) disposer.dispose();
    if (this.registry) releaseInstanceRegistry(this.registry.client, this.registry.registry);
    // After the breakers: they hold listeners on this client.
    if (typeof this.config.redis === 'string') releaseUrlClient(this.config.redis);
    if (this.config.ownsMemory) this.memory.close();
  }

  private params(limit: number, cost: number, now: number): DecisionParams {
    return { algorithm: this.algorithm, limit, windowMs: this.windowMs, cost, now };
  }

  private redisKey(storageKey: string): string {
    return this.config.prefix + '{' + storageKey + '}';
  }

  private decideInMemory(
    key: string,
    storageKey: string,
    cost: number,
    limit: number,
    now: number,
  ): RateLimitResult {
    try {
      const decision = this.memory.consume(storageKey, this.params(limit, cost, now));
      return {
        allowed: decision.allowed,
        limit,
        remaining: decision.remaining,
        resetAt: decision.resetAt,
        retryAfterMs: decision.retryAfterMs,
        source: 'memory',
        key,
      };
    } catch (error) {
      if (isRateLimitCapacityError(error) && !this.failClosed) return this.bypass(key, limit);
      throw error;
    }
  }

  private fallBack(
    key: string,
    storageKey: string,
    cost: number,
    limit: number,
    reason: FallbackReason,
    error?: unknown,
  ): RateLimitResult {
    if (error !== undefined && reason !== 'breaker-open') this.emitStoreError(error);
    const source: 'memory' | 'bypass' = this.failClosed ? 'memory' : 'bypass';
    if (!this.inOutage) {
      this.inOutage = true;
      this.config.logger.warn(
        `resilient-rate-limit: '${this.name}' cannot decide in Redis (${describeRedisFailure(reason, error, this.redisStore?.client)}); ${source === 'memory' ? 'limiting from memory' : 'letting requests through'} until it recovers`,
      );
    }
    // Per request during an outage: build the event only for a listener.
    if (this.listenerCount('fallback') > 0) this.emit('fallback', { source, key, reason });
    if (!this.failClosed) return this.bypass(key, limit);
    const now = this.config.clock.now();
    const result = this.decideInMemory(key, storageKey, cost, this.fallbackFor(limit), now);
    if (result.allowed) {
      this.continuity.record(storageKey, cost, result.resetAt, now);
      this.metrics?.outageAdmitted?.(this.name, cost);
      if (reason !== 'breaker-open') this.scheduleWriteBack();
    }
    return result;
  }

  // The memory store's limit for a call judged against `limit`: the rule's
  // fallbackLimit, and never more than that call's own limit.
  private fallbackFor(limit: number): number {
    if (limit === this.limit) return this.fallbackLimit;
    const configured = this.config.fallbackLimit;
    if (configured === 'share') return outageBudget(limit, configured, this.liveInstances ?? 1);
    return Math.min(limit, this.fallbackLimit);
  }

  // Credentials off the error first: listeners, causes and logs get it next.
  private noteStoreError(error: unknown): void {
    redactError(error);
    if (this.redisStore) {
      const probeKey = this.config.prefix + '{' + this.name + '}';
      const { client } = this.redisStore;
      reportPermissionError(client, error, probeKey, this.config.prefix, this.config.logger);
      noteCommandError(client, error, this.config.logger);
    }
  }

  private emitStoreError(error: unknown): void {
    this.noteStoreError(error);
    this.emit('storeError', error);
  }

  private bypass(key: string, limit = this.limit): RateLimitResult {
    const now = this.config.clock.now();
    return {
      allowed: true,
      limit,
      remaining: limit,
      resetAt: now + this.windowMs,
      retryAfterMs: 0,
      source: 'bypass' satisfies DecisionSource,
      key,
    };
  }

  // Redis reports times on its own clock; shift them onto ours so resetAt and
  // the headers stay right when the app's clock is skewed.
  private fromRedis(key: string, decision: RedisDecision, limit: number): RateLimitResult {
    const skew = this.config.clock.now() - decision.redisNow;
    return {
      allowed: decision.allowed,
      limit,
      remaining: Math.max(0, decision.remaining),
      resetAt: decision.resetAt + skew,
      retryAfterMs: decision.retryAfterMs,
      source: 'redis',
      key,
    };
  }

  private reasonFor(error: unknown): FallbackReason {
    if (error instanceof BrokenCircuitError || isBrokenCircuitError(error)) return 'breaker-open';
    if (error instanceof RateLimitTimeoutError) return 'timeout';
    return 'error';
  }
}
