import { EventEmitter } from 'node:events';
import { BrokenCircuitError, isBrokenCircuitError } from 'cockatiel';
import type { StoreBreaker } from './breaker.js';
import {
  acquireBreakers,
  checkBreakers,
  releaseBreakers,
  type BreakerRegistry,
} from './breaker-registry.js';
import { checkCost, checkKey } from './arguments.js';
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
  type LimiterConfig,
  type RateLimiterOptions,
  type RedisClient,
} from './options.js';
import {
  acquireUrlClient,
  peekUrlClient,
  releaseUrlClient,
  warnIfOfflineQueue,
} from './redis-client.js';
import { noteLimiterCreated } from './serving-watch.js';
import { toStorageKey } from './storage-key.js';
import { defaultMemoryStore, type MemoryStore } from './stores/memory-store.js';
import { RedisStore, type RedisDecision } from './stores/redis-store.js';
import { BlockCache } from './block-cache.js';
import { OutageContinuity, type ReconciledEvent } from './outage-continuity.js';
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
  /** Hits admitted by memory during an outage, written back to Redis after it. */
  reconciled: [ReconciledEvent];
}

// ioredis's wording for "not connected" names an option, not the problem.
function describeFailure(reason: FallbackReason, error: unknown): string {
  if (reason === 'not-connected') return 'the client has not connected yet';
  if (reason !== 'error' || !(error instanceof Error)) return reason;
  if (error.message.includes("Stream isn't writeable")) return 'Redis is not connected';
  return error.message;
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
  readonly limit: number;
  readonly windowMs: number;
  readonly algorithm: AlgorithmName;
  readonly failClosed: boolean;
  readonly fallbackLimit: number;
  readonly memory: MemoryStore;
  private readonly config: LimiterConfig;
  private readonly redisStore: RedisStore | undefined;
  private readonly breakers: BreakerRegistry | undefined;
  private readonly disposers: Array<{ dispose(): void }> = [];
  private readonly continuity: OutageContinuity;
  private readonly blocks: BlockCache;
  private readonly metrics: RateLimitMetrics | undefined;
  private readonly hooks: HookRunner;
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
    this.fallbackLimit = config.fallbackLimit;
    this.memory = config.memory ?? defaultMemoryStore();
    this.hooks = new HookRunner(error => this.reportHookError(error), config.logger);
    this.metrics = config.metrics && isolateMetrics(config.metrics, this.hooks);
    this.continuity = new OutageContinuity(
      {
        name: this.name,
        algorithm: this.algorithm,
        limit: this.limit,
        fallbackLimit: this.fallbackLimit,
        windowMs: this.windowMs,
        clock: config.clock,
        logger: config.logger,
        redisKey: storageKey => this.redisKey(storageKey),
        onReconciled: event => {
          this.emit('reconciled', event);
          this.metrics?.reconciled(this.name, event.hits);
        },
        onStoreError: error => this.emit('storeError', error),
      },
      this.memory,
    );
    this.blocks = new BlockCache(this.memory.maxKeys);
    if (!config.named) warnIfDerivedNameTaken(this.name, config.logger);
    if (config.fallbackLimit > config.limit) {
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
      const breakers = acquireBreakers(client, config.breaker, config.logger);
      this.breakers = breakers;
      this.redisStore = new RedisStore(client, config.redisTime === 'clock');
      this.disposers.push({ dispose: () => releaseBreakers(client, config.breaker, breakers) });
      this.disposers.push(
        breakers.subscribe({
          open: () => this.emit('breakerOpen'),
          halfOpen: () => this.emit('breakerHalfOpen'),
          close: () => {
            this.inOutage = false;
            this.emit('breakerClose');
            this.reconcile().catch(this.hooks.caught('reconciliation after recovery'));
          },
          // Hits admitted before the first connection go to Redis now.
          connected: () => {
            this.inOutage = false;
            this.reconcile().catch(this.hooks.caught('reconciliation after connecting'));
          },
        }),
      );
    }
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

  /** The Redis breaker's state; `undefined` in memory-only mode. */
  get breakerState(): StoreBreaker['state'] | undefined {
    return this.breakers?.state;
  }

  /** Counts `cost` units for `key` if they fit. A denied call counts nothing. */
  consume(key: string, cost = 1): Promise<RateLimitResult> {
    try {
      const result = this.decide(key, cost);
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
  decide(key: string, cost: number): RateLimitResult | Promise<RateLimitResult> {
    const result = this.decideUnobserved(key, cost);
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

  private decideUnobserved(key: string, cost: number): RateLimitResult | Promise<RateLimitResult> {
    checkKey(key);
    checkCost(cost, this.limit);
    const storageKey = this.name + '|' + toStorageKey(key);
    if (this.redisStore === undefined || this.breakers === undefined) {
      return this.decideInMemory(key, storageKey, cost, this.limit, this.config.clock.now());
    }
    const redisKey = this.redisKey(storageKey);
    const breaker = this.breakers.forKey(redisKey);
    const skip = breaker.skipReason();
    if (skip) return this.fallBack(key, storageKey, cost, skip);
    // After the breaker check: during an outage the fallback decides (and
    // says so), even for keys Redis had denied.
    if (this.blocks.size > 0) {
      const blocked = this.blocks.check(storageKey, key, cost, this.config.clock.now());
      if (blocked) return blocked;
    }
    return this.decideInRedis(this.redisStore, breaker, key, storageKey, redisKey, cost);
  }

  private async decideInRedis(
    store: RedisStore,
    breaker: StoreBreaker,
    key: string,
    storageKey: string,
    redisKey: string,
    cost: number,
  ): Promise<RateLimitResult> {
    const params = this.params(this.limit, cost, this.config.clock.now());
    const started = this.metrics ? performance.now() : 0;
    // Hits this key was given from memory during an outage go to Redis first,
    // in the same breaker call, so recovery cannot admit past the limit.
    const pending = this.continuity.take(storageKey);
    let decision: RedisDecision;
    try {
      decision = await breaker.execute(() =>
        withTimeout(
          pending
            ? this.continuity.writeThenConsume(store, pending, redisKey, params)
            : store.consume(redisKey, params),
          this.config.timeoutMs,
        ),
      );
    } catch (error) {
      if (pending) this.continuity.restore(pending);
      this.metrics?.redisLatency(this.name, (performance.now() - started) / 1000);
      return this.fallBack(key, storageKey, cost, this.reasonFor(error), error);
    }
    this.metrics?.redisLatency(this.name, (performance.now() - started) / 1000);
    this.inOutage = false;
    if (this.failClosed) this.continuity.mirror(storageKey, decision);
    const result = this.fromRedis(key, decision);
    if (!result.allowed) this.blocks.remember(storageKey, result, cost, this.config.clock.now());
    return result;
  }

  /**
   * Writes the hits that memory admitted during the outage back to Redis.
   * Runs by itself when the breaker closes; exposed so callers (and tests)
   * can await it. Entries that fail stay queued for the next recovery.
   */
  reconcile(): Promise<void> {
    return this.redisStore ? this.continuity.reconcile(this.redisStore) : Promise.resolve();
  }

  /** Hits admitted during an outage and not yet written back to Redis. */
  get pendingReconciliation(): number {
    return this.continuity.pending;
  }

  /** The current state of `key` without consuming; `undefined` if it has none. */
  async get(key: string): Promise<RateLimitResult | undefined> {
    checkKey(key);
    const storageKey = this.name + '|' + toStorageKey(key);
    const now = this.config.clock.now();
    const redisKey = this.redisKey(storageKey);
    const breaker = this.breakers?.forKey(redisKey);
    if (this.redisStore && breaker && !breaker.shouldSkip()) {
      const store = this.redisStore;
      const params = this.params(this.limit, 0, now);
      try {
        const decision = await breaker.execute(() =>
          withTimeout(store.get(redisKey, params), this.config.timeoutMs),
        );
        return decision && this.fromRedis(key, decision);
      } catch (error) {
        if (!isBrokenCircuitError(error)) this.emit('storeError', error);
      }
    }
    const limit = this.redisStore ? this.fallbackLimit : this.limit;
    const decision = this.memory.get(storageKey, this.params(limit, 0, this.config.clock.now()));
    return decision && { ...decision, limit, source: 'memory', key };
  }

  /**
   * Forgets `key` in memory and in Redis. Rejects with RateLimitStoreError if
   * Redis could not be reached: the memory counter is reset, Redis's is not.
   */
  async reset(key: string): Promise<void> {
    checkKey(key);
    const storageKey = this.name + '|' + toStorageKey(key);
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
      await breaker.execute(() => withTimeout(store.reset(redisKey), this.config.timeoutMs));
    } catch (error) {
      throw new RateLimitStoreError(`could not reset '${key}' in Redis`, { cause: error });
    }
  }

  /** Stops listening to the breaker and frees what this limiter created. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.continuity.settled();
    for (const disposer of this.disposers.splice(0)) disposer.dispose();
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
      if (isRateLimitCapacityError(error) && !this.failClosed) return this.bypass(key);
      throw error;
    }
  }

  private fallBack(
    key: string,
    storageKey: string,
    cost: number,
    reason: FallbackReason,
    error?: unknown,
  ): RateLimitResult {
    if (error !== undefined && reason !== 'breaker-open') this.emit('storeError', error);
    const source: 'memory' | 'bypass' = this.failClosed ? 'memory' : 'bypass';
    if (!this.inOutage) {
      this.inOutage = true;
      this.config.logger.warn(
        `resilient-rate-limit: '${this.name}' cannot decide in Redis (${describeFailure(reason, error)}); ${source === 'memory' ? 'limiting from memory' : 'letting requests through'} until it recovers`,
      );
    }
    // Per request during an outage: build the event only for a listener.
    if (this.listenerCount('fallback') > 0) this.emit('fallback', { source, key, reason });
    if (!this.failClosed) return this.bypass(key);
    const now = this.config.clock.now();
    const result = this.decideInMemory(key, storageKey, cost, this.fallbackLimit, now);
    if (result.allowed) this.continuity.record(storageKey, cost, result.resetAt, now);
    return result;
  }

  private bypass(key: string): RateLimitResult {
    const now = this.config.clock.now();
    return {
      allowed: true,
      limit: this.limit,
      remaining: this.limit,
      resetAt: now + this.windowMs,
      retryAfterMs: 0,
      source: 'bypass' satisfies DecisionSource,
      key,
    };
  }

  // Redis reports times on its own clock; shift them onto ours so resetAt and
  // the headers stay right when the app's clock is skewed.
  private fromRedis(key: string, decision: RedisDecision): RateLimitResult {
    const skew = this.config.clock.now() - decision.redisNow;
    return {
      allowed: decision.allowed,
      limit: this.limit,
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
