import type { AlgorithmName } from './types.js';

/**
 * Units the memory store admitted for one key that Redis has not yet
 * acknowledged. Fixed and sliding windows remember which (local-clock) window
 * they were counted in; a token bucket's debt is continuous.
 */
export type PendingEntry = {
  readonly storageKey: string;
  /** Local epoch ms the window of `units` opened (fixed, sliding); 0 for token bucket. */
  windowStart: number;
  /** Units in that window. */
  units: number;
  /** Sliding window: units in the window before it. */
  previous: number;
  /** Local epoch ms of the latest local hit. */
  lastAt: number;
  /** Local epoch ms until which the units count (a token bucket's TAT). */
  until: number;
  /** The call carrying these units to Redis, while one is out. */
  inFlight: Promise<unknown> | undefined;
};

/** What one call carried, to be subtracted when Redis acknowledges it. */
export type PendingSnapshot = { windowStart: number; units: number; previous: number };

export type DroppedEvent = { keys: number; hits: number };

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
  private units = 0;

  constructor(
    private readonly algorithm: AlgorithmName,
    private readonly windowMs: number,
    private readonly maxEntries: number,
    private readonly onDropped: (event: DroppedEvent) => void,
  ) {}

  /** Units not yet acknowledged, over all keys. */
  get hits(): number {
    return this.units;
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
   * Notes `cost` units admitted locally at `now`, in the window opened at
   * `windowStart`, that count until `until` (local epoch ms).
   */
  record(storageKey: string, cost: number, windowStart: number, now: number, until: number): void {
    let entry = this.entries.get(storageKey);
    if (entry === undefined) {
      if (this.entries.size >= this.maxEntries) this.makeRoom(now);
      entry = {
        storageKey,
        windowStart,
        units: 0,
        previous: 0,
        lastAt: now,
        until,
        inFlight: undefined,
      };
    } else {
      // Most recently hit last, so the bound drops the coldest key first.
      this.entries.delete(storageKey);
      this.roll(entry, windowStart);
    }
    entry.units += cost;
    entry.lastAt = now;
    entry.until = Math.max(entry.until, until);
    this.units += cost;
    this.entries.set(storageKey, entry);
  }

  /** Subtracts what a call carried once Redis has merged it. */
  acknowledge(entry: PendingEntry, sent: PendingSnapshot): void {
    if (this.entries.get(entry.storageKey) !== entry) return;
    const before = entry.units + entry.previous;
    if (this.algorithm === 'token-bucket' || entry.windowStart === sent.windowStart) {
      entry.units = Math.max(0, entry.units - sent.units);
      entry.previous = Math.max(0, entry.previous - sent.previous);
    } else if (entry.windowStart === sent.windowStart + this.windowMs) {
      // The window rolled while the call was out: what was current is previous.
      entry.previous = Math.max(0, entry.previous - sent.units);
    }
    this.units -= before - entry.units - entry.previous;
    if (entry.units + entry.previous === 0 && entry.inFlight === undefined) {
      this.entries.delete(entry.storageKey);
    }
  }

  /** Drops a key's entry (reset), whatever is in flight for it. */
  forget(storageKey: string): void {
    const entry = this.entries.get(storageKey);
    if (entry === undefined) return;
    this.units -= entry.units + entry.previous;
    this.entries.delete(storageKey);
  }

  /** Drops an entry that holds nothing any more (after its call settled). */
  tidy(entry: PendingEntry): void {
    if (entry.units + entry.previous === 0 && entry.inFlight === undefined) {
      if (this.entries.get(entry.storageKey) === entry) this.entries.delete(entry.storageKey);
    }
  }

  /** Whether the entry's units still count anywhere at `now`. */
  isLive(entry: PendingEntry, now: number): boolean {
    if (this.algorithm === 'token-bucket') return now < entry.until;
    const span = this.algorithm === 'sliding-window' ? 2 * this.windowMs : this.windowMs;
    return now < entry.windowStart + span;
  }

  // Moves an entry to the window `windowStart`, keeping what still counts.
  private roll(entry: PendingEntry, windowStart: number): void {
    if (this.algorithm === 'token-bucket' || entry.windowStart === windowStart) return;
    const kept =
      this.algorithm === 'sliding-window' && windowStart === entry.windowStart + this.windowMs
        ? entry.units
        : 0;
    this.units -= entry.units + entry.previous - kept;
    entry.previous = kept;
    entry.units = 0;
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
        dropped.hits += coldest.value.units + coldest.value.previous;
        this.forget(coldest.value.storageKey);
      }
    }
    if (dropped.keys > 0) this.onDropped(dropped);
  }
}
