import type { AlgorithmName } from './types.js';

/** Units admitted and refunded locally in one window. */
export type Tally = { hits: number; refunds: number };

/**
 * What the memory store admitted and refunded for one key that Redis has not
 * yet acknowledged. Hits and refunds stay apart: Redis applies the refunds to
 * the count it holds before it adds the hits, so a refund can never cancel a
 * hit it did not follow. Fixed and sliding windows remember which
 * (local-clock) window they were counted in; a token bucket's debt is
 * continuous.
 */
export type PendingEntry = {
  readonly storageKey: string;
  /** Local epoch ms the `current` window opened (fixed, sliding); 0 for token bucket. */
  windowStart: number;
  current: Tally;
  /** Sliding window: the window before `current`. */
  previous: Tally;
  /** Local epoch ms of the latest local hit or refund. */
  lastAt: number;
  /** Local epoch ms until which the hits count (a token bucket's TAT). */
  until: number;
  /** Token bucket: local epoch ms until which a local refund is owed to Redis. */
  owedUntil: number;
  /** The call carrying these units to Redis, while one is out. */
  inFlight: Promise<unknown> | undefined;
};

/** What one call carried, to be subtracted when Redis acknowledges it. */
export type PendingSnapshot = { windowStart: number; current: Tally; previous: Tally };

export type DroppedEvent = { keys: number; hits: number };

const units = (entry: PendingEntry): number =>
  entry.current.hits + entry.current.refunds + entry.previous.hits + entry.previous.refunds;

/**
 * The outage hits of one rule that Redis has not yet confirmed, by key.
 *
 * A key's entry stays until the script that merged it has answered (acknowledge
 * before forgetting), so no decision for that key can ever be made in Redis
 * without it. Bounded by `maxEntries`: when full, entries whose window has
 * ended go first, then the least recently hit key's; what is dropped is
 * reported.
 */
export class PendingHits {
  private readonly entries = new Map<string, PendingEntry>();
  private total = 0;

  constructor(
    private readonly algorithm: AlgorithmName,
    private readonly windowMs: number,
    private readonly maxEntries: number,
    private readonly onDropped: (event: DroppedEvent) => void,
  ) {}

  /** Hits not yet acknowledged, over all keys. */
  get hits(): number {
    return this.total;
  }

  get size(): number {
    return this.entries.size;
  }

  get(storageKey: string): PendingEntry | undefined {
    return this.entries.size === 0 ? undefined : this.entries.get(storageKey);
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  /**
   * Notes `cost` units admitted locally at `now` (a negative cost: refunded),
   * in the window opened at `windowStart`, that count until `until` (local
   * epoch ms).
   */
  record(storageKey: string, cost: number, windowStart: number, now: number, until: number): void {
    let entry = this.entries.get(storageKey);
    if (entry === undefined) {
      if (this.entries.size >= this.maxEntries) this.makeRoom(now);
      entry = {
        storageKey,
        windowStart,
        current: { hits: 0, refunds: 0 },
        previous: { hits: 0, refunds: 0 },
        lastAt: now,
        until,
        owedUntil: 0,
        inFlight: undefined,
      };
    } else {
      // Most recently used last, so the bound drops the coldest key first.
      this.entries.delete(storageKey);
      this.roll(entry, windowStart);
    }
    if (cost >= 0) {
      entry.current.hits += cost;
      this.total += cost;
    } else {
      // A refund first cancels local hits it follows; only the rest gives
      // back units Redis counted before them.
      const cancelled = Math.min(entry.current.hits, -cost);
      entry.current.hits -= cancelled;
      this.total -= cancelled;
      entry.current.refunds += -cost - cancelled;
      // What it gives back was debt Redis holds for at most one window.
      if (cost + cancelled < 0) entry.owedUntil = now + this.windowMs;
    }
    entry.lastAt = now;
    entry.until = until;
    this.entries.set(storageKey, entry);
  }

  /**
   * Subtracts what a call carried once Redis has merged it (or may have).
   * Returns what it took, by the entry's windows, for `restore()`; undefined
   * when a reset dropped the entry meanwhile.
   */
  acknowledge(entry: PendingEntry, sent: PendingSnapshot): PendingSnapshot | undefined {
    if (this.entries.get(entry.storageKey) !== entry) return undefined;
    const before = entry.current.hits + entry.previous.hits;
    const taken: PendingSnapshot = {
      windowStart: entry.windowStart,
      current: NONE,
      previous: NONE,
    };
    if (this.algorithm === 'token-bucket' || entry.windowStart === sent.windowStart) {
      subtract(entry.current, sent.current);
      subtract(entry.previous, sent.previous);
      taken.current = sent.current;
      taken.previous = sent.previous;
    } else if (entry.windowStart === sent.windowStart + this.windowMs) {
      // The window rolled while the call was out: what was current is previous.
      subtract(entry.previous, sent.current);
      taken.previous = sent.current;
    }
    this.total -= before - entry.current.hits - entry.previous.hits;
    this.tidy(entry);
    return taken;
  }

  /**
   * Gives an entry back what `acknowledge()` took from it, for the windows
   * that are still its own: the call that carried it did not land.
   */
  restore(entry: PendingEntry, taken: PendingSnapshot, now: number): void {
    let current = taken.current;
    let previous = taken.previous;
    if (current.hits + current.refunds + previous.hits + previous.refunds === 0) return;
    let held = this.entries.get(entry.storageKey);
    if (held === undefined) {
      // Emptied and tidied meanwhile: it comes back as it was taken.
      if (this.entries.size >= this.maxEntries) this.makeRoom(now);
      held = entry;
      held.windowStart = taken.windowStart;
      held.current = { hits: 0, refunds: 0 };
      held.previous = { hits: 0, refunds: 0 };
      held.inFlight = undefined;
      this.entries.set(held.storageKey, held);
    }
    if (this.algorithm !== 'token-bucket' && held.windowStart !== taken.windowStart) {
      // Only a sliding window's current one survives a roll (as previous).
      const rolled =
        this.algorithm === 'sliding-window' &&
        held.windowStart === taken.windowStart + this.windowMs;
      if (!rolled) return;
      previous = current;
      current = NONE;
    }
    held.current = add(held.current, current);
    held.previous = add(held.previous, previous);
    this.total += current.hits + previous.hits;
  }

  /** Drops a key's entry (reset), whatever is in flight for it. */
  forget(storageKey: string): void {
    const entry = this.entries.get(storageKey);
    if (entry === undefined) return;
    this.total -= entry.current.hits + entry.previous.hits;
    this.entries.delete(storageKey);
  }

  /** Drops an entry that holds nothing any more and has no call out. */
  tidy(entry: PendingEntry): void {
    if (units(entry) === 0 && entry.inFlight === undefined) {
      if (this.entries.get(entry.storageKey) === entry) this.entries.delete(entry.storageKey);
    }
  }

  /** Whether the entry's units still count anywhere at `now`. */
  isLive(entry: PendingEntry, now: number): boolean {
    if (this.algorithm === 'token-bucket') return now < Math.max(entry.until, entry.owedUntil);
    const span = this.algorithm === 'sliding-window' ? 2 * this.windowMs : this.windowMs;
    return now < entry.windowStart + span;
  }

  // Moves an entry to the window `windowStart`, keeping what still counts.
  private roll(entry: PendingEntry, windowStart: number): void {
    if (this.algorithm === 'token-bucket' || entry.windowStart === windowStart) return;
    const adjacent =
      this.algorithm === 'sliding-window' && windowStart === entry.windowStart + this.windowMs;
    this.total -= entry.previous.hits + (adjacent ? 0 : entry.current.hits);
    entry.previous = adjacent ? entry.current : { hits: 0, refunds: 0 };
    entry.current = { hits: 0, refunds: 0 };
    entry.windowStart = windowStart;
  }

  private makeRoom(now: number): void {
    const dropped: DroppedEvent = { keys: 0, hits: 0 };
    // Ended windows first: losing them costs nothing, so they are not
    // reported. An O(n) pass, but only when the bound is reached, and it
    // usually frees many entries at once.
    for (const entry of this.entries.values()) {
      if (!this.isLive(entry, now)) this.forget(entry.storageKey);
    }
    if (this.entries.size >= this.maxEntries) {
      const coldest = this.entries.values().next();
      if (!coldest.done) {
        dropped.keys++;
        dropped.hits += coldest.value.current.hits + coldest.value.previous.hits;
        this.forget(coldest.value.storageKey);
      }
    }
    if (dropped.keys > 0) this.onDropped(dropped);
  }
}

const NONE: Tally = Object.freeze({ hits: 0, refunds: 0 });

const add = (tally: Tally, more: Tally): Tally => ({
  hits: tally.hits + more.hits,
  refunds: tally.refunds + more.refunds,
});

function subtract(tally: Tally, sent: Tally): void {
  tally.hits -= sent.hits;
  tally.refunds -= sent.refunds;
  // Hits a refund cancelled while they were on their way are in Redis now:
  // that refund gives back units Redis holds.
  if (tally.hits < 0) {
    tally.refunds -= tally.hits;
    tally.hits = 0;
  }
}
