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
 * written back when the breaker closes: without it, every instance would
 * hand out a fresh quota after recovery. Bounded: past `maxEntries` the
 * oldest entry is dropped (and counted), never an unbounded backlog.
 */
export class Reconciler {
  private readonly pending = new Map<string, PendingHits>();
  /** Entries dropped because the backlog was full. */
  dropped = 0;

  constructor(private readonly maxEntries: number) {}

  get size(): number {
    return this.pending.size;
  }

  record(storageKey: string, hits: number, windowStart: number, now: number): void {
    const id = `${windowStart}@${storageKey}`;
    const entry = this.pending.get(id);
    if (entry) {
      entry.hits += hits;
      entry.lastAt = now;
      return;
    }
    if (this.pending.size >= this.maxEntries) {
      const oldest = this.pending.keys().next();
      if (!oldest.done) this.pending.delete(oldest.value);
      this.dropped++;
    }
    this.pending.set(id, { storageKey, hits, windowStart, lastAt: now });
  }

  /** Removes and returns every pending entry. */
  drain(): PendingHits[] {
    const entries = [...this.pending.values()];
    this.pending.clear();
    return entries;
  }

  /** Puts back entries that could not be written, to try at the next recovery. */
  restore(entries: PendingHits[]): void {
    for (const entry of entries)
      this.record(entry.storageKey, entry.hits, entry.windowStart, entry.lastAt);
  }

  forget(storageKey: string): void {
    for (const [id, entry] of this.pending)
      if (entry.storageKey === storageKey) this.pending.delete(id);
  }
}
