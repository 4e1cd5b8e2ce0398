import { BrokenCircuitError } from 'cockatiel';
import type { StoreBreaker } from './breaker.js';
import type { BreakerRegistry } from './breaker-registry.js';
import { RateLimitStoreError, RateLimitTimeoutError } from './errors.js';
import type { Policy } from './policy.js';
import type { MemoryStore } from './stores/memory-store.js';
import type { RedisDecision, RedisStore } from './stores/redis-store.js';
import type { Ticket } from './outage-continuity.js';
import { withTimeout } from './timeout.js';
import type { AlgorithmName, Clock, DecisionParams } from './types.js';

/** How long one write-back call of outage hits may take (ms). */
export const WRITE_BACK_TIMEOUT_MS = 1000;
/** How soon outage hits recorded while the breaker stayed closed are written back (ms). */
const WRITE_BACK_DELAY_MS = 1000;
/** The longest wait between write-backs that keep failing (ms). */
const MAX_WRITE_BACK_DELAY_MS = 30_000;

/** One policy's counter for one caller key. */
export type Slot = {
  readonly policy: Policy;
  readonly storageKey: string;
  readonly redisKey: string;
};

/**
 * The Redis side of a limiter: every call that reaches Redis goes through
 * `exchange()`, which carries what this instance holds for each key (see
 * OutageContinuity) into the decision script and folds the answer back, and
 * orders the calls per key. Write-back of outage hits for keys not requested
 * again goes through the same path.
 */
export class RedisExchange {
  private writeBackTimer: ReturnType<typeof setTimeout> | undefined;
  private retryDelayMs = WRITE_BACK_DELAY_MS;
  private closed = false;
  /** When close() stops writing back (performance.now() ms). */
  private closeBy = Infinity;
  /** Resets out to Redis, by storage key: calls for the key wait for them. */
  private readonly resets = new Map<string, Promise<void>>();

  constructor(
    readonly store: RedisStore,
    private readonly memory: MemoryStore,
    readonly breakers: BreakerRegistry,
    private readonly policies: readonly Policy[],
    private readonly algorithm: AlgorithmName,
    private readonly clock: Clock,
    private readonly redisKeyOf: (storageKey: string, policy: Policy) => string,
    private readonly onError: (context: string) => (error: unknown) => void,
    /** A decision's budget (ms): a write-back that probes the breaker gets no more. */
    private readonly timeoutMs: number,
  ) {}

  /** Set by every request: while Redis is out, requests probe the breaker. */
  busy = false;

  /**
   * One Redis call for the slots of one caller key within `budgetMs`, after
   * any call already carrying their outage hits has settled. `params[i]` is
   * a fresh object per call for `slots[i]`: its `now` is set here, once any
   * wait is over. Resolves to one decision per slot.
   * @throws RateLimitTimeoutError past the budget, BrokenCircuitError when
   *   the breaker is open, or the Redis error
   */
  async exchange(
    breaker: StoreBreaker,
    slots: readonly Slot[],
    params: readonly DecisionParams[],
    budgetMs: number,
  ): Promise<RedisDecision[]> {
    const deadline = performance.now() + budgetMs;
    // Until no call for these keys is out carrying their outage units and
    // none that timed out carrying them awaits its answer: every wait may
    // end with another call for the keys sent meanwhile.
    for (;;) {
      const wait = this.inFlight(slots);
      if (wait) {
        await withTimeout(wait, Math.max(1, deadline - performance.now()));
        continue;
      }
      const late = this.lateAnswer(slots);
      if (!late) break;
      // Waiting for Redis to answer is waiting on Redis: the breaker counts
      // a wait that runs out, so a Redis that hangs still opens it.
      if (breaker.skipReason() === 'breaker-open') throw new BrokenCircuitError();
      await breaker.execute(() =>
        withTimeout(late, Math.max(1, Math.round(deadline - performance.now()))),
      );
    }
    const { store } = this;
    const keys = slots.map(slot => slot.redisKey);
    for (let wholeView = false; ; wholeView = true) {
      // A wait above may have outlasted a breaker that opened meanwhile: in
      // half-open, cockatiel would hold this call behind the probe, outside
      // any timeout; decide locally instead.
      if (breaker.skipReason() === 'breaker-open') throw new BrokenCircuitError();
      const now = this.clock.now();
      const tickets: Ticket[] = [];
      for (let i = 0; i < slots.length; i++) {
        params[i]!.now = now;
        tickets.push(slots[i]!.policy.continuity.prepare(slots[i]!.storageKey, now, wholeView));
      }
      const groups = params.map((p, i) => ({ params: p, continuity: tickets[i]!.outgoing?.args }));
      let call: Promise<RedisDecision[]> | undefined;
      const sent = breaker.execute(() => {
        call = store.decide(keys, groups);
        return withTimeout(call, Math.max(1, Math.round(deadline - performance.now())));
      });
      for (let i = 0; i < slots.length; i++) slots[i]!.policy.continuity.hold(tickets[i]!, sent);
      const units = params[0]!.cost;
      if (units > 0) this.sendUnits(slots, units);
      let decisions: RedisDecision[];
      try {
        decisions = await sent;
      } catch (error) {
        // Redis may still run a call that timed out: the outage units it
        // carries wait for its own answer instead of being sent again.
        if (call !== undefined && error instanceof RateLimitTimeoutError) {
          for (let i = 0; i < slots.length; i++) {
            slots[i]!.policy.continuity.unanswered(tickets[i]!, call, i);
          }
        }
        throw error;
      } finally {
        if (units > 0) this.sendUnits(slots, -units);
      }
      // Redis stores less than this instance's view: send the whole view.
      if (decisions[0]!.needsView && !wholeView) continue;
      // Never settle a non-answer: outage units stay pending.
      if (decisions[0]!.needsView)
        throw new RateLimitStoreError('the decision script asked twice for the view');
      for (let i = 0; i < slots.length; i++) {
        slots[i]!.policy.continuity.settle(tickets[i]!, decisions[i]!);
      }
      return decisions;
    }
  }

  // Units out to Redis and not answered yet: Redis may count them (a
  // half-open probe, a call still in flight when another timed out), so
  // memory deciding the key meanwhile leaves room for them (the safe side).
  private sendUnits(slots: readonly Slot[], units: number): void {
    for (const { storageKey } of slots) this.memory.reserve(storageKey, units);
  }

  // Redis's answer, still to come, to a call for these keys that timed out
  // carrying their outage units.
  private lateAnswer(slots: readonly Slot[]): Promise<void> | undefined {
    for (const slot of slots) {
      const late = slot.policy.continuity.lateAnswer(slot.storageKey);
      if (late) return late;
    }
    return undefined;
  }

  // A call that must settle before another for these keys is sent.
  private inFlight(slots: readonly Slot[]): Promise<unknown> | undefined {
    for (const slot of slots) {
      const wait =
        slot.policy.continuity.inFlight(slot.storageKey) ??
        (this.resets.size > 0 ? this.resets.get(slot.storageKey) : undefined);
      if (wait) return wait;
    }
    return undefined;
  }

  /**
   * Sends the reset of a key's slots: calls for the key that start while it
   * is out wait for it (within their own budget), so none is answered from
   * the count before the reset, which Redis could otherwise run first (the
   * reset's EVALSHA meeting an empty script cache costs it a round trip).
   */
  async reset(
    breaker: StoreBreaker,
    slots: readonly Slot[],
    params: DecisionParams,
    budgetMs: number,
  ): Promise<void> {
    const keys = slots.map(slot => slot.redisKey);
    const windows = slots.map(slot => slot.policy.windowMs);
    const sent = breaker.execute(() =>
      withTimeout(this.store.reset(keys, windows, params), budgetMs),
    );
    const settled = sent.then(
      () => undefined,
      () => undefined,
    );
    for (const { storageKey } of slots) this.resets.set(storageKey, settled);
    try {
      await sent;
    } finally {
      for (const { storageKey } of slots) {
        if (this.resets.get(storageKey) === settled) this.resets.delete(storageKey);
      }
    }
  }

  /**
   * Merges the hits memory admitted during an outage into Redis, for the keys
   * not decided since, policy by policy: the decision script at cost 0 per
   * key. What fails stays pending.
   */
  async reconcile(): Promise<void> {
    const closedAtStart = this.breakers.state === 'closed';
    try {
      await this.writeBack();
    } finally {
      const closedNow = this.breakers.state === 'closed';
      if (this.pending > 0 && !closedAtStart && closedNow && !this.closed) {
        // This run's probe closed the breaker: the keys it skipped while the
        // breaker was open go now (found by an attack: 99 hits waited 30 s,
        // the backoff, after breakerClose joined this run).
        this.retryDelayMs = WRITE_BACK_DELAY_MS;
        this.reconcile().catch(this.onError('write-back after the probe'));
      } else if (this.pending > 0) {
        // What failed (Redis went away again, or the answer to a write-back
        // that timed out never came) is tried again: nothing else would send
        // the hits of keys not requested again. Backing off: a Redis that
        // keeps failing need not be asked every second.
        this.retryDelayMs = Math.min(2 * this.retryDelayMs, MAX_WRITE_BACK_DELAY_MS);
        this.scheduleWriteBack();
      } else {
        this.retryDelayMs = WRITE_BACK_DELAY_MS;
      }
    }
  }

  private async writeBack(): Promise<void> {
    await Promise.all(
      this.policies.map(policy =>
        policy.continuity.reconcile(storageKey => {
          const slot = { policy, storageKey, redisKey: this.redisKeyOf(storageKey, policy) };
          const breaker = this.breakers.forKey(slot.redisKey);
          // Redis is out: the hits stay pending for a later run. An open
          // breaker that is due lets the first key through as its probe.
          if (breaker.shouldSkip() || performance.now() > this.closeBy) return Promise.resolve();
          const params = {
            algorithm: this.algorithm,
            limit: policy.limit,
            windowMs: policy.windowMs,
            cost: 0,
            now: 0,
          };
          // A probe holds the breaker half-open: no longer than a request's.
          const budget = breaker.state === 'closed' ? WRITE_BACK_TIMEOUT_MS : this.timeoutMs;
          return this.exchange(breaker, [slot], [params], budget);
        }),
      ),
    );
  }

  /** Hits admitted during an outage and not yet acknowledged by Redis. */
  get pending(): number {
    let hits = 0;
    for (const policy of this.policies) hits += policy.continuity.pending;
    return hits;
  }

  /**
   * Outage hits with no breakerClose to write them back (a lone timeout, or
   * an outage after which no request comes to probe Redis) are written back
   * by a timer, unref'd, backing off while Redis stays out; a run while the
   * breaker is open and due, with no request since the last run, probes it.
   */
  scheduleWriteBack(): void {
    if (this.writeBackTimer !== undefined || this.closed) return;
    this.writeBackTimer = setTimeout(() => {
      this.writeBackTimer = undefined;
      // While Redis is out, requests probe the breaker and its closing
      // writes back; only an instance left idle probes it from here.
      if (this.breakers.state !== 'closed' && this.busy) {
        this.busy = false;
        this.scheduleWriteBack();
        return;
      }
      this.reconcile().catch(this.onError('scheduled write-back'));
    }, this.retryDelayMs);
    this.writeBackTimer.unref?.();
  }

  /**
   * Stops the write-back timer and makes one last write-back of the outage
   * hits still pending, which would otherwise leave with this instance,
   * within two write-back budgets (a batch started by then finishes within
   * its own), and none while the breaker is open. Resolves to the hits that
   * stay unwritten.
   */
  async close(): Promise<number> {
    this.closed = true;
    this.closeBy = performance.now() + 2 * WRITE_BACK_TIMEOUT_MS;
    if (this.writeBackTimer !== undefined) clearTimeout(this.writeBackTimer);
    if (this.pending > 0) await this.writeBack().catch(this.onError('write-back on close'));
    await Promise.all(this.policies.map(policy => policy.continuity.settled()));
    return this.pending;
  }
}
