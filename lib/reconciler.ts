/** Hits the memory store admitted for one key and window during an outage. */
export type PendingHits = {
  storageKey: string;
  hits: number;
  /** Local epoch ms the window opened (fixed/sliding); 0 for token bucket. */
  windowStart: number;
  /** Local epoch ms of the latest hit. */
  lastAt: number;
};

/**
 * Remembers what the memory store admitted while Redis was out, so it can be
 * written back when Redis returns: without it, every instance would hand out
 * a fresh quota after recovery. Indexed by key, so a Redis decision can find
 * (and write first) the hits of its own key. Bounded: past `maxEntries` the
 * oldest key's hits are dropped (and counted), never an unbounded backlog.
 */
export class Reconciler {
  private readonly pending = new Map<string, PendingHits[]>();
  private entries = 0;
  /** Entries dropped because the backlog was full. */
  dropped = 0;

  constructor(private readonly maxEntries: number) {}

  /** Pending entries (one per key and window). */
  get size(): number {
    return this.entries;
  }

  has(storageKey: string): boolean {
    return this.pending.has(storageKey);
  }

  record(storageKey: string, hits: number, windowStart: number, now: number): void {
    const list = this.pending.get(storageKey);
    if (list) {
      for (const entry of list) {
        if (entry.windowStart !== windowStart) continue;
        entry.hits += hits;
        entry.lastAt = now;
        return;
      }
    }
    if (this.entries >= this.maxEntries) this.dropOldest();
    const entry = { storageKey, hits, windowStart, lastAt: now };
    if (list) list.push(entry);
    else this.pending.set(storageKey, [entry]);
    this.entries++;
  }

  /** Removes and returns the pending entries of one key. */
  take(storageKey: string): PendingHits[] {
    const list = this.pending.get(storageKey);
    if (!list) return [];
    this.pending.delete(storageKey);
    this.entries -= list.length;
    return list;
  }

  /** Removes and returns every pending entry. */
  drain(): PendingHits[] {
    const all = [...this.pending.values()].flat();
    this.pending.clear();
    this.entries = 0;
    return all;
  }

  /** Puts back entries that could not be written, to try again later. */
  restore(entries: PendingHits[]): void {
    for (const entry of entries)
      this.record(entry.storageKey, entry.hits, entry.windowStart, entry.lastAt);
  }

  forget(storageKey: string): void {
    this.take(storageKey);
  }

  private dropOldest(): void {
    const oldest = this.pending.keys().next();
    if (oldest.done) return;
    this.dropped += this.take(oldest.value).length;
  }
}
