import type { CounterState } from './algorithms/index.js';
import type { Clock } from './clock.js';
import {
  PendingHits,
  type DroppedEvent,
  type PendingEntry,
  type PendingSnapshot,
  type Tally,
} from './pending-hits.js';
import type { ResetLog } from './reset-log.js';
import type { MemoryStore } from './stores/memory-store.js';
import type { RedisDecision } from './stores/redis-store.js';
import type { AlgorithmName, Logger } from './types.js';

const WRITE_BACK_BATCH = 100;

export type ReconciledEvent = { keys: number; hits: number; expired: number };

/** What one limiter tells its continuity keeper about itself. */
export type ContinuityRule = {
  name: string;
  algorithm: AlgorithmName;
  fallbackLimit: number;
  windowMs: number;
  /** Fail-open rules keep no memory state, so they mirror nothing. */
  failClosed: boolean;
  clock: Clock;
  logger: Logger;
  onReconciled(event: ReconciledEvent): void;
  onDropped(event: DroppedEvent): void;
  onStoreError(error: unknown): void;
};

/**
 * ARGV[5..] of the decision script: what this instance holds for a key (its
 * last view of Redis and the hits it admitted since), all times as ages.
 */
export type ContinuityArgs = number[];

type Outgoing = { args: ContinuityArgs; entry: PendingEntry | undefined; sent: PendingSnapshot };

/** One call for a key, from `prepare()` to `settle()`. */
export type Ticket = {
  readonly storageKey: string;
  readonly startedAt: number;
  /** The monotonic clock at `startedAt`; 0 when the clock has none. */
  readonly startedMono: number;
  readonly mark: number;
  readonly outgoing: Outgoing | undefined;
};

/**
 * Keeps one rule's counts continuous across Redis outages and data loss, in
 * both directions: the memory store continues from where Redis left each key
 * (warm fallback), and every Redis call for a key carries what this instance
 * holds for it, merged by the decision script in the same atomic step
 * (stored = max(stored, known) + local; see redis-scripts.ts). So no decision
 * is made in Redis against a count that misses this instance's outage hits,
 * and a Redis that lost a key gets its count back on the key's next call.
 *
 * Ordering: a call that carries a key's local hits is the only one in flight
 * for that key until it settles (`inFlight`), and the hits are forgotten only
 * when Redis has acknowledged them, so they are added exactly once.
 */
export class OutageContinuity {
  private readonly pendingHits: PendingHits;
  private writingBack: Promise<void> | undefined;
  /**
   * Calls that timed out carrying local units, until Redis answers them:
   * their units are neither pending (sending them again would count them
   * twice if the call lands) nor acknowledged.
   */
  private readonly timedOut = new Map<Ticket, { taken: PendingSnapshot; landed: Promise<void> }>();
  /** Hits and keys acknowledged since the last `reconciled` event. */
  private acknowledged = { keys: 0, hits: 0 };

  constructor(
    private readonly rule: ContinuityRule,
    private readonly memory: MemoryStore,
    private readonly resets: ResetLog,
  ) {
    this.pendingHits = new PendingHits(rule.algorithm, rule.windowMs, memory.maxKeys, event =>
      rule.onDropped(event),
    );
  }

  /** Hits admitted locally and not yet acknowledged by Redis. */
  get pending(): number {
    let hits = this.pendingHits.hits;
    for (const { taken } of this.timedOut.values()) {
      hits += taken.current.hits + taken.previous.hits;
    }
    return hits;
  }

  /** A call carrying the key's local units that must settle before another call for it is sent. */
  inFlight(storageKey: string): Promise<unknown> | undefined {
    return this.pendingHits.get(storageKey)?.inFlight;
  }

  /**
   * Redis's answer to a call that timed out carrying the key's local units,
   * while it is still to come. Later calls for the key do not carry those
   * units, so they must not run in Redis before that call, which they could
   * (found by an attack: its EVAL after NOSCRIPT leaves only when the slow
   * reply is back; a Cluster redirection too): they wait for it.
   */
  lateAnswer(storageKey: string): Promise<void> | undefined {
    if (this.timedOut.size === 0) return undefined;
    for (const [ticket, { landed }] of this.timedOut) {
      if (ticket.storageKey === storageKey) return landed;
    }
    return undefined;
  }

  /**
   * Notes `cost` units memory admitted for a key (its window ends at
   * `resetAt`); a negative cost notes units memory refunded.
   */
  record(storageKey: string, cost: number, resetAt: number, now: number): void {
    // A token bucket's resetAt is its TAT: the hits count until then.
    if (this.rule.algorithm === 'token-bucket')
      this.pendingHits.record(storageKey, cost, 0, now, resetAt);
    else this.pendingHits.record(storageKey, cost, resetAt - this.rule.windowMs, now, resetAt);
  }

  /** Drops a key's local state (reset). */
  forget(storageKey: string): void {
    this.pendingHits.forget(storageKey);
    if (this.timedOut.size === 0) return;
    for (const ticket of this.timedOut.keys()) {
      if (ticket.storageKey === storageKey) this.timedOut.delete(ticket);
    }
  }

  /**
   * What to send with one call for `storageKey`: the script's continuity
   * arguments (none when this instance holds nothing for the key; one floor
   * number when it holds only a view, unless `wholeView`) and what
   * `settle()` needs afterwards. Callers first wait for
   * `inFlight(storageKey)`, then send, then `hold()` the call if it carries
   * local units. `now` is the local time the call starts (ms).
   */
  prepare(storageKey: string, now: number, wholeView = false): Ticket {
    const outgoing = this.outgoing(storageKey, now, wholeView);
    const startedMono = this.rule.clock.monotonic?.() ?? 0;
    return { storageKey, startedAt: now, startedMono, mark: this.resets.mark(), outgoing };
  }

  /** Marks the key as having a call out that carries its local units. */
  hold(ticket: Ticket, call: Promise<unknown>): void {
    const entry = ticket.outgoing?.entry;
    if (entry === undefined) return;
    const settled = call.then(
      () => undefined,
      () => undefined,
    );
    entry.inFlight = settled;
    void settled.then(() => {
      if (entry.inFlight === settled) entry.inFlight = undefined;
      this.pendingHits.tidy(entry);
    });
  }

  /**
   * Folds Redis's answer to a prepared call back: the local units it carried
   * are forgotten, and the answer becomes this instance's view of the key.
   */
  settle(ticket: Ticket, decision: RedisDecision): void {
    const { outgoing } = ticket;
    if (outgoing?.entry !== undefined)
      this.note(this.pendingHits.acknowledge(outgoing.entry, outgoing.sent));
    // A reset or refund after this call started wins: the answer describes
    // the state before it, so it must not become this instance's view.
    if (this.rule.failClosed && !this.resets.since(ticket.storageKey, ticket.mark)) {
      this.adopt(ticket.storageKey, decision, ticket.startedAt, ticket.startedMono);
    }
  }

  /**
   * A prepared call timed out, but Redis may still run it (`call` is its own
   * answer; `index` this key's decision in it). The local units it carried
   * leave the key's pending units now, so no later call sends them again,
   * and come back only if Redis answers with an error or wrote nothing: so a
   * slow Redis counts them exactly once. (A connection that breaks after the
   * script ran but before its reply arrived still brings them back: counted
   * twice, the safe side.)
   */
  unanswered(ticket: Ticket, call: Promise<readonly RedisDecision[]>, index: number): void {
    const { outgoing } = ticket;
    if (outgoing?.entry === undefined) return;
    const taken = this.pendingHits.acknowledge(outgoing.entry, outgoing.sent);
    if (taken === undefined) return;
    const fold = (decisions: readonly RedisDecision[]): void => {
      if (!this.timedOut.delete(ticket)) return;
      if (decisions[index]?.needsView === false) this.note(taken);
      else this.pendingHits.restore(outgoing.entry!, taken, this.rule.clock.now());
    };
    this.timedOut.set(ticket, { taken, landed: call.then(fold, () => fold([])) });
  }

  // Counts what an acknowledgement took off the pending hits.
  private note(taken: PendingSnapshot | undefined): void {
    // Only calls that brought hits count as keys merged.
    if (taken === undefined || taken.current.hits + taken.previous.hits === 0) return;
    this.acknowledged.hits += taken.current.hits + taken.previous.hits;
    this.acknowledged.keys++;
  }

  /**
   * Writes the outage hits of keys not decided since back to Redis, through
   * `writeOne` (the decision script at cost 0), in batches. One run at a
   * time; what fails stays pending for the next run.
   */
  reconcile(writeOne: (storageKey: string) => Promise<unknown>): Promise<void> {
    this.writingBack ??= this.writeBack(writeOne).finally(() => {
      this.writingBack = undefined;
    });
    return this.writingBack;
  }

  /** Resolves once a write-back in progress has finished. */
  async settled(): Promise<void> {
    await this.writingBack;
  }

  private async writeBack(writeOne: (storageKey: string) => Promise<unknown>): Promise<void> {
    let expired = 0;
    const keys = this.pendingHits.keys();
    for (let i = 0; i < keys.length; i += WRITE_BACK_BATCH) {
      const batch: Promise<unknown>[] = [];
      const now = this.rule.clock.now();
      for (const storageKey of keys.slice(i, i + WRITE_BACK_BATCH)) {
        const entry = this.pendingHits.get(storageKey);
        if (entry === undefined) continue;
        if (!this.pendingHits.isLive(entry, now) && entry.inFlight === undefined) {
          this.pendingHits.forget(storageKey);
          expired++;
          continue;
        }
        batch.push(writeOne(storageKey));
      }
      const outcomes = await Promise.allSettled(batch);
      const failure = outcomes.find(outcome => outcome.status === 'rejected');
      if (failure) {
        // Redis went away again: everything not acknowledged stays pending.
        this.rule.onStoreError(failure.reason);
        break;
      }
    }
    const { keys: written, hits } = this.acknowledged;
    this.acknowledged = { keys: 0, hits: 0 };
    if (written + expired === 0) return;
    this.rule.logger.info(
      `resilient-rate-limit: '${this.rule.name}' merged ${hits} hits for ${written} keys admitted during the outage into Redis (${expired} windows had already ended)`,
    );
    this.rule.onReconciled({ keys: written, hits, expired });
  }

  // The script's continuity arguments for a key: undefined when this
  // instance holds nothing for it, the floor alone for a bare view.
  private outgoing(storageKey: string, now: number, wholeView: boolean): Outgoing | undefined {
    const held = this.rule.failClosed ? this.memory.peek(storageKey, -Infinity) : undefined;
    // The view's own now: its observation time plus the monotonic time since,
    // so a step of the wall clock neither ages nor rejuvenates it.
    const mono =
      held !== undefined && held.observedMono > 0 ? this.rule.clock.monotonic?.() : undefined;
    const viewNow =
      held !== undefined && mono !== undefined ? held.observedAt + (mono - held.observedMono) : now;
    const view = held !== undefined && held.expiresAt > viewNow ? held : undefined;
    let entry = this.pendingHits.get(storageKey);
    if (view === undefined && entry === undefined) return undefined;
    if (!wholeView && entry === undefined && view !== undefined && view.observedAt > 0) {
      // The hot path: one number the script checks what it stores against;
      // the whole view only when it falls short (see redis-scripts.ts).
      const floor = this.floorOf(view, viewNow);
      if (floor > 0) return { args: [-2 - floor], entry: undefined, sent: NOTHING_SENT };
      // A fixed window refunded to 0 still has a start to restore; nothing
      // else at 0 does.
      if (this.rule.algorithm !== 'fixed-window') return undefined;
    }
    if (entry !== undefined && !this.pendingHits.isLive(entry, now) && !entry.inFlight) {
      // Its window has ended: those units count nowhere any more.
      this.pendingHits.forget(storageKey);
      entry = undefined;
    }
    // A view taken "after" now (the clock stepped back) has no usable age,
    // and an age below -1 would read as the hot path's floor: never seen.
    const observed =
      view !== undefined && view.observedAt > 0 && view.observedAt <= viewNow
        ? viewNow - view.observedAt
        : -1;
    const { algorithm, windowMs } = this.rule;
    const none: Tally = { hits: 0, refunds: 0 };
    const sent: PendingSnapshot = {
      windowStart: entry?.windowStart ?? 0,
      current: entry ? { ...entry.current } : none,
      previous: entry ? { ...entry.previous } : none,
    };
    let args: ContinuityArgs;
    if (algorithm === 'fixed-window') {
      // A live view counts even at 0 (refunded): its window's start does.
      const seen = view !== undefined && (view.a > 0 || view.b > 0) ? view : undefined;
      const start = seen?.b ?? entry?.windowStart ?? 0;
      if (start === 0) return undefined;
      // Local units belong to the view only if counted in its window.
      const mine = entry !== undefined && entry.windowStart === start ? entry.current : none;
      sent.current = { ...mine };
      sent.previous = none;
      // A window never seen in Redis is one memory opened itself.
      const opened = seen === undefined || seen.observedAt === 0 ? 1 : 0;
      const redisStart = opened === 0 && seen !== undefined ? seen.c : 0;
      args = [
        seen ? observed : -1,
        seen?.a ?? 0,
        (seen ? viewNow : now) - start,
        mine.hits,
        mine.refunds,
        opened,
        redisStart,
      ];
    } else if (algorithm === 'sliding-window') {
      const current = now - (now % windowMs);
      const [viewCur, viewPrev] = view
        ? byWindow(view.b, view.a, view.c, viewNow - (viewNow % windowMs), windowMs)
        : [0, 0];
      let mineCur = none;
      let minePrev = none;
      if (entry?.windowStart === current) {
        mineCur = entry.current;
        minePrev = entry.previous;
      } else if (entry?.windowStart === current - windowMs) {
        // Its previous window has ended: acknowledging drops those units.
        minePrev = entry.current;
      }
      if (viewCur + viewPrev + units(mineCur) + units(minePrev) === 0) return undefined;
      args = [
        viewCur + viewPrev > 0 ? observed : -1,
        viewCur,
        viewPrev,
        mineCur.hits,
        minePrev.hits,
        mineCur.refunds,
        minePrev.refunds,
      ];
    } else {
      const mine = entry?.current ?? none;
      let ahead = view !== undefined ? view.a - viewNow : (entry?.until ?? now) - now;
      const frac = view?.b ?? 0;
      // A full bucket: nothing this instance holds still counts, but for a
      // local refund of units Redis may still count.
      if (ahead < 0 || (ahead === 0 && frac === 0)) {
        if (mine.refunds === 0) {
          if (entry !== undefined && !entry.inFlight) this.pendingHits.forget(storageKey);
          return undefined;
        }
        ahead = 0;
      }
      args = [view !== undefined ? observed : -1, ahead, frac, mine.hits, mine.refunds];
    }
    return { args, entry, sent };
  }

  // A view's count (fixed window; current plus previous for a sliding one)
  // or debt ahead of `now` in ms (token bucket), for the hot path's check.
  private floorOf(view: Readonly<CounterState>, now: number): number {
    const { algorithm, windowMs } = this.rule;
    if (algorithm === 'fixed-window') return view.a;
    if (algorithm === 'sliding-window') {
      const [cur, prev] = byWindow(view.b, view.a, view.c, now - (now % windowMs), windowMs);
      return cur + prev;
    }
    return view.a - now;
  }

  /**
   * Takes a Redis answer as this instance's view of the key (warm fallback),
   * keeping on top of it any local hits made while the call was out.
   */
  private adopt(
    storageKey: string,
    decision: RedisDecision,
    observedAt: number,
    observedMono: number,
  ): void {
    // Nothing to mirror: the key holds no state in Redis.
    if (!decision.live) return;
    const { algorithm, windowMs, clock, fallbackLimit } = this.rule;
    const localNow = clock.now();
    const skewMs = localNow - decision.redisNow;
    const state: CounterState = { ...decision.state };
    if (algorithm === 'fixed-window') {
      // c is free in a fixed window: it keeps Redis's own start, which
      // restores the window exactly (an age would arrive a transit late).
      const redisStart = state.b;
      state.c = redisStart;
      // One Redis window keeps the local start it was first given, moved
      // only by a step of the local clock (its wall time against its
      // monotonic time since the view was taken). Each answer's skew
      // estimate differs by its transit time, and local units are filed
      // under the local start: a moved start made them another window's, so
      // acknowledging a call missed them (sent twice) and a later hit's roll
      // dropped them (lost). A step the start did not follow ends the window
      // early locally (a fresh quota) or makes the view read as expired.
      // Without a monotonic clock a step cannot be told from transit time:
      // each answer places the start afresh.
      state.b = redisStart + skewMs;
      const held = this.memory.peek(storageKey, -Infinity);
      const mono = held !== undefined && held.observedMono > 0 ? clock.monotonic?.() : undefined;
      if (held !== undefined && held.c === redisStart && mono !== undefined) {
        const step = localNow - held.observedAt - (mono - held.observedMono);
        state.b = Math.abs(step) < CLOCK_NOISE_MS ? held.b : held.b + step;
      }
    } else if (algorithm === 'sliding-window') {
      // Aligned windows: map Redis's window onto the same window locally.
      const redisStart = decision.redisNow - (decision.redisNow % windowMs);
      state.b = localNow - (localNow % windowMs) - (redisStart - state.b);
    } else {
      state.a += skewMs;
    }
    // Hits made locally while the call was out are not in Redis's answer yet.
    const entry = this.pendingHits.get(storageKey);
    const extra = entry === undefined ? 0 : entry.current.hits - entry.current.refunds;
    if (entry !== undefined && extra !== 0) {
      if (algorithm === 'fixed-window') {
        state.a = Math.max(0, state.a + extra);
        entry.windowStart = state.b;
      } else if (algorithm === 'sliding-window') {
        const current = localNow - (localNow % windowMs);
        const [cur, prev] = byWindow(state.b, state.a, state.c, current, windowMs);
        Object.assign(state, { a: Math.max(0, cur + extra), b: current, c: prev });
      } else {
        const debt = Math.max(state.a, localNow) + Math.ceil((extra * windowMs) / fallbackLimit);
        state.a = Math.max(localNow, debt);
      }
    }
    const params = { algorithm, limit: fallbackLimit, windowMs, cost: 0, now: localNow };
    const exhausted = !decision.allowed || decision.remaining <= 0;
    this.memory.mirror(storageKey, state, params, exhausted, observedAt, observedMono);
  }
}

const units = (tally: Tally): number => tally.hits + tally.refunds;

/**
 * Wall and monotonic clocks drift apart by rounding (Date.now() is whole
 * ms): a difference below this (ms) is no step of the clock.
 */
const CLOCK_NOISE_MS = 10;

const NOTHING_SENT: PendingSnapshot = {
  windowStart: 0,
  current: { hits: 0, refunds: 0 },
  previous: { hits: 0, refunds: 0 },
};

// A (current, previous) pair stored for the window starting at `start`,
// seen from the window starting at `current`.
function byWindow(
  start: number,
  cur: number,
  prev: number,
  current: number,
  windowMs: number,
): [number, number] {
  if (start === current) return [cur, prev];
  if (start === current - windowMs) return [0, cur];
  return [0, 0];
}
