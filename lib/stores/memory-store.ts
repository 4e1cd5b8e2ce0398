import { algorithms, type CounterState } from '../algorithms/index.js';
import { systemClock, type Clock } from '../clock.js';
import { RateLimitCapacityError, RateLimitConfigError } from '../errors.js';
import { MAX_TIMER_MS, describe } from '../duration.js';
import type { Decision, DecisionParams, RateLimitStore } from '../types.js';

export type MemoryStoreOptions = {
  /** Most keys held at once. Default 10 000. */
  maxKeys?: number;
  /**
   * What a full store does with a new key: `'evict'` drops the least recently
   * used entry (exhausted entries last); `'reject'` refuses to decide (503).
   */
  whenFull?: 'evict' | 'reject';
  /** Time source for sweeping expired entries. */
  clock?: Clock;
  /** How often expired entries are swept. Default 10 s. */
  sweepIntervalMs?: number;
};

class Entry implements CounterState {
  a = 0;
  b = 0;
  c = 0;
  expiresAt = 0;
  exhausted = false;
  prev: Entry | undefined = undefined;
  next: Entry | undefined = undefined;
  constructor(readonly key: string) {}
}

/**
 * A doubly linked list in recency order, oldest first. Map iteration order
 * would give the same order for free, but taking the oldest key of a V8 Map
 * walks over every slot deleted before it, which made eviction O(maxKeys).
 */
class RecencyList {
  private head: Entry | undefined;
  private tail: Entry | undefined;

  push(entry: Entry): void {
    entry.prev = this.tail;
    entry.next = undefined;
    if (this.tail) this.tail.next = entry;
    else this.head = entry;
    this.tail = entry;
  }

  remove(entry: Entry): void {
    if (entry.prev) entry.prev.next = entry.next;
    else if (this.head === entry) this.head = entry.next;
    if (entry.next) entry.next.prev = entry.prev;
    else if (this.tail === entry) this.tail = entry.prev;
    entry.prev = entry.next = undefined;
  }

  oldest(): Entry | undefined {
    return this.head;
  }

  clear(): void {
    this.head = this.tail = undefined;
  }
}

const DEFAULT_MAX_KEYS = 10_000;
const DEFAULT_SWEEP_MS = 10_000;

/**
 * Bounded in-memory counters: the fallback during Redis outages, and the only
 * store in memory-only mode. O(1) per decision.
 *
 * Entries sit in one of two recency lists: `open` keys and `exhausted` keys
 * (their last decision left nothing). Eviction takes the least recently used
 * open key first, so a flood of new keys cannot push a blocked client out of
 * memory and hand it a fresh quota.
 */
export class MemoryStore implements RateLimitStore {
  readonly maxKeys: number;
  readonly whenFull: 'evict' | 'reject';
  private readonly clock: Clock;
  private readonly sweepIntervalMs: number;
  private readonly entries = new Map<string, Entry>();
  private readonly open = new RecencyList();
  private readonly exhausted = new RecencyList();
  private timer: ReturnType<typeof setInterval> | undefined;
  private lastSweep = 0;
  private closed = false;
  /** Entries dropped to make room, for metrics. */
  evictions = 0;

  constructor(options: MemoryStoreOptions = {}) {
    if (typeof options !== 'object' || options === null) {
      throw new RateLimitConfigError(
        `memory must be an object, got ${describe(options)}`,
        'memory',
      );
    }
    const { maxKeys = DEFAULT_MAX_KEYS, whenFull = 'evict', clock = systemClock } = options;
    if (!Number.isSafeInteger(maxKeys) || maxKeys < 1) {
      throw new RateLimitConfigError(
        `memory.maxKeys must be a positive integer, got ${describe(maxKeys)}`,
        'memory.maxKeys',
      );
    }
    if (typeof clock !== 'object' || clock === null || typeof clock.now !== 'function') {
      throw new RateLimitConfigError(
        `memory.clock must have a now() method, got ${describe(clock)}`,
        'memory.clock',
      );
    }
    if (whenFull !== 'evict' && whenFull !== 'reject') {
      throw new RateLimitConfigError(
        `memory.whenFull must be 'evict' or 'reject', got ${describe(whenFull)}`,
        'memory.whenFull',
      );
    }
    const sweepIntervalMs = options.sweepIntervalMs ?? DEFAULT_SWEEP_MS;
    if (
      !Number.isSafeInteger(sweepIntervalMs) ||
      sweepIntervalMs < 1 ||
      sweepIntervalMs > MAX_TIMER_MS
    ) {
      throw new RateLimitConfigError(
        `memory.sweepIntervalMs must be a whole number of ms from 1 to ${MAX_TIMER_MS} (Node's timer limit), got ${describe(sweepIntervalMs)}`,
        'memory.sweepIntervalMs',
      );
    }
    this.maxKeys = maxKeys;
    this.whenFull = whenFull;
    this.clock = clock;
    this.sweepIntervalMs = sweepIntervalMs;
  }

  /** Keys currently held. */
  get size(): number {
    return this.entries.size;
  }

  consume(key: string, params: DecisionParams): Decision {
    const { now } = params;
    let entry = this.lookup(key, now);
    if (entry === undefined) {
      this.makeRoom(now);
      entry = this.insert(key);
    }
    const algorithm = algorithms[params.algorithm];
    const decision = algorithm.decide(entry, params, params.cost, now);
    entry.expiresAt = algorithm.expiresAt(entry, params);
    this.file(entry, !decision.allowed || decision.remaining === 0);
    return decision;
  }

  get(key: string, params: DecisionParams): Decision | undefined {
    const entry = this.lookup(key, params.now);
    if (entry === undefined) return undefined;
    return algorithms[params.algorithm].decide(entry, params, 0, params.now);
  }

  /**
   * Sets the counter state of `key` outright, as seen elsewhere (Redis), so a
   * later fallback continues from it. Never evicts an exhausted key for it.
   */
  mirror(key: string, state: CounterState, params: DecisionParams, exhausted: boolean): void {
    let entry = this.lookup(key, params.now);
    if (entry === undefined) {
      if (this.size >= this.maxKeys && !this.evictOldest(this.open)) return;
      entry = this.insert(key);
    }
    entry.a = state.a;
    entry.b = state.b;
    entry.c = state.c;
    entry.expiresAt = algorithms[params.algorithm].expiresAt(entry, params);
    this.file(entry, exhausted);
  }

  reset(key: string): void {
    const entry = this.entries.get(key);
    if (entry) this.drop(entry);
  }

  /** Drops every entry whose window has passed. Runs on a timer as well. */
  sweep(now = this.clock.now()): void {
    this.lastSweep = now;
    for (const entry of this.entries.values()) if (entry.expiresAt <= now) this.drop(entry);
  }

  /** Stops the sweep timer and drops every entry. */
  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.entries.clear();
    this.open.clear();
    this.exhausted.clear();
  }

  private lookup(key: string, now: number): Entry | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined || entry.expiresAt > now) return entry;
    this.drop(entry);
    return undefined;
  }

  private insert(key: string): Entry {
    const entry = new Entry(key);
    this.entries.set(key, entry);
    this.open.push(entry);
    return entry;
  }

  private drop(entry: Entry): void {
    this.entries.delete(entry.key);
    (entry.exhausted ? this.exhausted : this.open).remove(entry);
  }

  // Moves the entry to the most recently used end of the list it belongs in.
  private file(entry: Entry, exhausted: boolean): void {
    (entry.exhausted ? this.exhausted : this.open).remove(entry);
    entry.exhausted = exhausted;
    (exhausted ? this.exhausted : this.open).push(entry);
    if (this.timer === undefined && !this.closed) this.startTimer();
  }

  private makeRoom(now: number): void {
    if (this.size < this.maxKeys) return;
    if (this.whenFull === 'reject') {
      // A full sweep is O(n); at most once a second keeps a flood from turning
      // every rejected request into one.
      if (now - this.lastSweep >= 1000) this.sweep(now);
      if (this.size >= this.maxKeys) throw new RateLimitCapacityError(1000);
      return;
    }
    if (!this.evictOldest(this.open)) this.evictOldest(this.exhausted);
  }

  private evictOldest(list: RecencyList): boolean {
    const oldest = list.oldest();
    if (oldest === undefined) return false;
    this.drop(oldest);
    this.evictions++;
    return true;
  }

  private startTimer(): void {
    this.timer = setInterval(() => this.sweep(), this.sweepIntervalMs);
    // The sweep is housekeeping: it must never keep a process alive.
    this.timer.unref?.();
  }
}

let defaultStore: MemoryStore | undefined;

/** The process-wide store shared by limiters that are given no `memory`. */
export function defaultMemoryStore(): MemoryStore {
  defaultStore ??= new MemoryStore();
  return defaultStore;
}
