import type { CounterState } from './algorithms/index.js';
import type { Clock } from './clock.js';
import { Reconciler, type PendingHits } from './reconciler.js';
import type { MemoryStore } from './stores/memory-store.js';
import type { RedisDecision, RedisStore } from './stores/redis-store.js';
import { withTimeout } from './timeout.js';
import type { AlgorithmName, DecisionParams, Logger } from './types.js';

const RECONCILE_BATCH = 100;
const RECONCILE_TIMEOUT_MS = 1000;

export type ReconciledEvent = { keys: number; hits: number; expired: number };

/** What one limiter tells its continuity keeper about itself. */
export type ContinuityRule = {
  name: string;
  algorithm: AlgorithmName;
  limit: number;
  fallbackLimit: number;
  windowMs: number;
  clock: Clock;
  logger: Logger;
  redisKey(storageKey: string): string;
  onReconciled(event: ReconciledEvent): void;
  onStoreError(error: unknown): void;
};

/**
 * Keeps one rule's counts continuous across a Redis outage, in both
 * directions: the memory store continues from where Redis left each key
 * (warm fallback), and what memory admitted goes back to Redis afterwards
 * (reconciliation), so neither failover nor recovery hands out a fresh quota.
 */
export class OutageContinuity {
  private readonly reconciler: Reconciler;
  /** Local clock minus Redis clock, from the latest Redis answer. */
  private skewMs = 0;
  private reconciling: Promise<void> | undefined;

  constructor(
    private readonly rule: ContinuityRule,
    private readonly memory: MemoryStore,
  ) {
    this.reconciler = new Reconciler(memory.maxKeys);
  }

  /** Hits admitted during an outage and not yet written back to Redis. */
  get pending(): number {
    return this.reconciler.size;
  }

  /** Mirrors a Redis answer into the memory store (warm fallback). */
  mirror(storageKey: string, decision: RedisDecision): void {
    const { algorithm, windowMs, clock } = this.rule;
    const localNow = clock.now();
    this.skewMs = localNow - decision.redisNow;
    const state: CounterState = { ...decision.state };
    if (algorithm === 'fixed-window') {
      state.b += this.skewMs;
    } else if (algorithm === 'sliding-window') {
      // Aligned windows: map Redis's window onto the same window locally.
      const redisStart = decision.redisNow - (decision.redisNow % windowMs);
      state.b = localNow - (localNow % windowMs) - (redisStart - state.b);
    } else {
      state.a += this.skewMs;
    }
    this.memory.mirror(
      storageKey,
      state,
      { algorithm, limit: this.rule.fallbackLimit, windowMs, cost: 0, now: localNow },
      !decision.allowed || decision.remaining <= 0,
    );
  }

  /** Notes `cost` units memory admitted for a key during an outage. */
  record(storageKey: string, cost: number, resetAt: number, now: number): void {
    const windowStart = this.rule.algorithm === 'token-bucket' ? 0 : resetAt - this.rule.windowMs;
    this.reconciler.record(storageKey, cost, windowStart, now);
  }

  /** Removes and returns a key's pending hits, to be written before its next decision. */
  take(storageKey: string): PendingHits[] | undefined {
    if (this.reconciler.size === 0) return undefined;
    const pending = this.reconciler.take(storageKey);
    return pending.length > 0 ? pending : undefined;
  }

  restore(entries: PendingHits[]): void {
    this.reconciler.restore(entries);
  }

  forget(storageKey: string): void {
    this.reconciler.forget(storageKey);
  }

  /** Writes `pending` for a key, then decides it: one breaker call, two round trips. */
  async writeThenConsume(
    store: RedisStore,
    pending: PendingHits[],
    redisKey: string,
    params: DecisionParams,
  ): Promise<RedisDecision> {
    await Promise.all(pending.map(entry => this.writeOne(store, entry)));
    return store.consume(redisKey, params);
  }

  /** Writes every pending hit back, in batches; one run at a time. */
  reconcile(store: RedisStore): Promise<void> {
    this.reconciling ??= this.writeBack(store).finally(() => {
      this.reconciling = undefined;
    });
    return this.reconciling;
  }

  /** Resolves once a reconciliation in progress has finished. */
  async settled(): Promise<void> {
    await this.reconciling;
  }

  private async writeBack(store: RedisStore): Promise<void> {
    const entries = this.reconciler.drain();
    const done: ReconciledEvent = { keys: 0, hits: 0, expired: 0 };
    for (let i = 0; i < entries.length; i += RECONCILE_BATCH) {
      const batch = entries.slice(i, i + RECONCILE_BATCH);
      const outcomes = await Promise.allSettled(batch.map(entry => this.writeOne(store, entry)));
      const failed: PendingHits[] = [];
      let firstError: unknown;
      outcomes.forEach((outcome, j) => {
        const entry = batch[j] as PendingHits;
        if (outcome.status === 'rejected') {
          failed.push(entry);
          firstError ??= outcome.reason;
        } else if (outcome.value) {
          done.keys++;
          done.hits += entry.hits;
        } else {
          done.expired++;
        }
      });
      if (failed.length > 0) {
        // Redis went away again: keep the rest for the next recovery.
        this.reconciler.restore([...failed, ...entries.slice(i + RECONCILE_BATCH)]);
        this.rule.onStoreError(firstError);
        break;
      }
    }
    if (done.keys + done.expired > 0) {
      this.rule.logger.info(
        `resilient-rate-limit: '${this.rule.name}' wrote ${done.hits} hits for ${done.keys} keys admitted during the outage back to Redis (${done.expired} windows had already ended)`,
      );
      this.rule.onReconciled(done);
    }
  }

  private async writeOne(store: RedisStore, entry: PendingHits): Promise<boolean> {
    const { algorithm, windowMs, clock, limit } = this.rule;
    const now = clock.now();
    const span = algorithm === 'sliding-window' ? 2 * windowMs : windowMs;
    const liveUntil =
      algorithm === 'token-bucket' ? entry.lastAt + windowMs : entry.windowStart + span;
    if (now >= liveUntil) return false;
    let start = entry.windowStart - this.skewMs;
    if (algorithm === 'sliding-window') start = Math.round(start / windowMs) * windowMs;
    const params = { algorithm, limit, windowMs, cost: 0, now };
    return withTimeout(
      store.reconcile(this.rule.redisKey(entry.storageKey), params, entry.hits, start),
      RECONCILE_TIMEOUT_MS,
    );
  }
}
