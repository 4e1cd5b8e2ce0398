import { algorithms, type CounterState } from '../algorithms/index.js';
import { systemClock, type Clock } from '../clock.js';
import { RateLimitCapacityError, RateLimitConfigError } from '../errors.js';
import { MAX_TIMER_MS, describe } from '../duration.js';
import { RecencyList } from './recency-list.js';
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

/**
 * Which eviction tier an entry is in, evicted in this order:
 * - `warm`: a copy of a Redis answer that left capacity (warm fallback);
 *   only a hint, since Redis holds the real count.
 * - `open`: counted here (memory-only mode, or during an outage), capacity left.
 * - `exhausted`: nothing left; never evicted for a new key (see consume()).
 */
type Tier = 'warm' | 'open' | 'exhausted';

class Entry implements CounterState {
  a = 0;
  b = 0;
  c = 0;
  expiresAt = 0;
  tier: Tier = 'open';
  /** Epoch ms this instance last saw the key in Redis (the call's start); 0: never. */
  observedAt = 0;
  /** The monotonic clock's reading at `observedAt`, if it has one; 0: none. */
  observedMono = 0;
  prev: Entry | undefined = undefined;
  next: Entry | undefined = undefined;
  constructor(readonly key: string) {}
}

const DEFAULT_MAX_KEYS = 10_000;
const DEFAULT_SWEEP_MS = 10_000;

/**
 * Bounded in-memory counters: the fallback during Redis outages, and the only
 * store in memory-only mode. O(1) per decision.
 *
 * Entries sit in one of three recency lists (see Tier). To make room for a
 * new key the store takes the least recently used warm copy, then (with
 * `whenFull: 'evict'`) the least recently used open key. Exhausted keys are
 * never evicted for a new key, so no flood of new keys can hand a blocked
 * client a fresh quota: when only exhausted keys remain, the new key is
 * denied until one of them expires. With `whenFull: 'reject'` only warm
 * copies are evicted, so they never make the store count as full; real
 * outage state filling it gives RateLimitCapacityError.
 */
export class MemoryStore implements RateLimitStore {
  readonly maxKeys: number;
  readonly whenFull: 'evict' | 'reject';
  private readonly clock: Clock;
  private readonly sweepIntervalMs: number;
  private readonly entries = new Map<string, Entry>();
  private readonly tiers: Record<Tier, RecencyList<Entry>> = {
    warm: new RecencyList(),
    open: new RecencyList(),
    exhausted: new RecencyList(),
  };
  private timer: ReturnType<typeof setInterval> | undefined;
  private lastSweep = 0;
  private closed = false;
  /** Entries dropped to make room, for metrics. */
  evictions = 0;
  /** Units of calls still out to Redis, by key (see `reserve()`). */
  private readonly outside = new Map<string, number>();

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

  /**
   * Notes `units` (negative: their answer came) of a decision for `key` out
   * to Redis. Redis may count them, so until their answer comes a decision
   * made here must leave room for them too: a half-open probe, or a call
   * still in flight when another timed out, would otherwise let memory admit
   * past the limit. Held per store, so limiters of one name (one counter)
   * see each other's calls.
   */
  reserve(key: string, units: number): void {
    const left = (this.outside.get(key) ?? 0) + units;
    if (left > 0) this.outside.set(key, left);
    else this.outside.delete(key);
  }

  /** Units of calls for `key` still out to Redis (see `reserve()`). */
  reserved(key: string): number {
    return this.outside.size === 0 ? 0 : (this.outside.get(key) ?? 0);
  }

  /**
   * Counts `params.cost` units for `key` if they fit, and if the units still
   * out to Redis for it (`reserve()`) would fit beside them; only the cost
   * is counted.
   */
  consume(key: string, params: DecisionParams): Decision {
    const { now } = params;
    let entry = this.lookup(key, now);
    if (entry === undefined) {
      const denied = this.makeRoom(now);
      if (denied) return denied;
      entry = this.insert(key);
    }
    const reserved = this.reserved(key);
    if (reserved > 0) {
      const trial = this.trial(entry, params, reserved);
      if (!trial.allowed) return trial;
    }
    return this.count(entry, params, reserved);
  }

  /**
   * Decides `cost` units for several keys as one step (a limiter's
   * policies, each with its own params): counted in every key if every key
   * admits them, else in none. One decision per key, in order; a key that
   * would have admitted answers as a read (what it has left).
   * @throws RateLimitCapacityError as `consume()` does with `whenFull: 'reject'`
   */
  consumeAll(keys: readonly string[], params: readonly DecisionParams[]): Decision[] {
    const reserved = keys.map(key => this.reserved(key));
    const { now } = params[0]!;
    const entries: Entry[] = [];
    for (const key of keys) {
      let entry = this.lookup(key, now);
      if (entry === undefined) {
        const denied = this.makeRoom(now);
        if (denied) return keys.map(() => denied);
        entry = this.insert(key);
      }
      // Most recently used, so making room for the next key cannot take it.
      this.file(entry, entry.tier);
      entries.push(entry);
    }
    const trials = entries.map((entry, i) => this.trial(entry, params[i]!, reserved[i]!));
    // Only a store holding fewer keys than the limiter has policies loses one.
    if (entries.some(entry => this.entries.get(entry.key) !== entry)) {
      return keys.map(() => ({
        allowed: false,
        remaining: 0,
        resetAt: now + 1000,
        retryAfterMs: 1000,
      }));
    }
    if (trials.every(trial => trial.allowed)) {
      return entries.map((entry, i) => this.count(entry, params[i]!, reserved[i]!));
    }
    return entries.map((entry, i) => {
      if (!trials[i]!.allowed) return trials[i]!;
      const trial = { a: entry.a, b: entry.b, c: entry.c };
      return algorithms[params[i]!.algorithm].decide(trial, params[i]!, 0, now);
    });
  }

  // The decision for the cost plus `reserved` units, on a copy of the state;
  // what it reports left leaves the reserved units out.
  private trial(entry: Entry, params: DecisionParams, reserved: number): Decision {
    const copy = { a: entry.a, b: entry.b, c: entry.c };
    const decision = algorithms[params.algorithm].decide(
      copy,
      params,
      params.cost + reserved,
      params.now,
    );
    if (reserved > 0) decision.remaining = Math.max(0, decision.remaining - reserved);
    return decision;
  }

  private count(entry: Entry, params: DecisionParams, reserved = 0): Decision {
    const algorithm = algorithms[params.algorithm];
    const start = entry.b;
    const decision = algorithm.decide(entry, params, params.cost, params.now);
    if (reserved > 0) decision.remaining = Math.max(0, decision.remaining - reserved);
    // A fixed window memory opened itself is no copy of one seen in Redis.
    if (params.algorithm === 'fixed-window' && entry.b !== start) {
      entry.observedAt = 0;
      entry.observedMono = 0;
      entry.c = 0;
    } else if (params.algorithm === 'sliding-window' && entry.b < start && entry.observedAt > 0) {
      // A window from the future (the clock stepped back) was taken as the
      // current one and moved to its start: when the view was seen moves
      // with it, or the view's age (read off the monotonic clock) would put
      // it that much later than its windows and it would read as expired.
      entry.observedAt += entry.b - start;
    }
    entry.expiresAt = algorithm.expiresAt(entry, params);
    this.file(entry, !decision.allowed || decision.remaining === 0 ? 'exhausted' : 'open');
    return decision;
  }

  get(key: string, params: DecisionParams): Decision | undefined {
    const entry = this.lookup(key, params.now);
    if (entry === undefined) return undefined;
    return algorithms[params.algorithm].decide(entry, params, 0, params.now);
  }

  /**
   * Sets the counter state of `key` outright, as seen in Redis by a call that
   * started at `observedAt`, so a later fallback continues from it. A warm
   * copy only ever replaces another warm copy: it never evicts state counted
   * here, nor an exhausted key.
   */
  mirror(
    key: string,
    state: CounterState,
    params: DecisionParams,
    exhausted: boolean,
    observedAt: number,
    observedMono = 0,
  ): void {
    let entry = this.lookup(key, params.now);
    if (entry === undefined) {
      if (this.size >= this.maxKeys && !this.evictOldest('warm')) return;
      entry = this.insert(key);
    }
    entry.a = state.a;
    entry.b = state.b;
    entry.c = state.c;
    entry.observedAt = observedAt;
    entry.observedMono = observedMono;
    entry.expiresAt = algorithms[params.algorithm].expiresAt(entry, params);
    this.file(entry, exhausted ? 'exhausted' : 'warm');
  }

  /** Keys held per tier, for tests and diagnostics. */
  get tierSizes(): Record<Tier, number> {
    const sizes = { warm: 0, open: 0, exhausted: 0 };
    for (const entry of this.entries.values()) sizes[entry.tier]++;
    return sizes;
  }

  /**
   * The live state of `key` and when it was last seen in Redis, without
   * touching its recency; `undefined` if it has none. Read-only by contract.
   */
  peek(
    key: string,
    now: number,
  ):
    | Readonly<CounterState & { observedAt: number; observedMono: number; expiresAt: number }>
    | undefined {
    const entry = this.entries.get(key);
    return entry !== undefined && entry.expiresAt > now ? entry : undefined;
  }

  /**
   * Gives back `params.cost` units of `key` in its live window or bucket.
   * Returns the units given back and when the window or bucket they were in
   * frees capacity (epoch ms).
   */
  refund(key: string, params: DecisionParams): { units: number; resetAt: number } {
    const entry = this.lookup(key, params.now);
    if (entry === undefined) return { units: 0, resetAt: params.now };
    const algorithm = algorithms[params.algorithm];
    const units = algorithm.refund(entry, params, params.cost, params.now);
    entry.expiresAt = algorithm.expiresAt(entry, params);
    const decision = algorithm.decide(entry, params, 0, params.now);
    // A refunded warm copy is still a copy of Redis's count.
    this.file(entry, !decision.allowed ? 'exhausted' : entry.tier === 'warm' ? 'warm' : 'open');
    // The end of the window the units were in (a token bucket: its TAT).
    const resetAt = params.algorithm === 'token-bucket' ? entry.a : entry.b + params.windowMs;
    return { units, resetAt };
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
    for (const list of Object.values(this.tiers)) list.clear();
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
    this.tiers[entry.tier].push(entry);
    return entry;
  }

  private drop(entry: Entry): void {
    this.entries.delete(entry.key);
    this.tiers[entry.tier].remove(entry);
  }

  // Moves the entry to the most recently used end of the list it belongs in.
  private file(entry: Entry, tier: Tier): void {
    this.tiers[entry.tier].remove(entry);
    entry.tier = tier;
    this.tiers[tier].push(entry);
    if (this.timer === undefined && !this.closed) this.startTimer();
  }

  /**
   * Frees a slot for a new key. Returns a denial for the new key when every
   * held key is exhausted (`evict`), throws when full of real state (`reject`).
   */
  private makeRoom(now: number): Decision | undefined {
    if (this.size < this.maxKeys) return undefined;
    if (this.evictOldest('warm')) return undefined;
    if (this.whenFull === 'evict' && this.evictOldest('open')) return undefined;
    // A full sweep is O(n); at most once a second keeps a flood from turning
    // every refused request into one.
    if (now - this.lastSweep >= 1000) this.sweep(now);
    if (this.size < this.maxKeys) return undefined;
    if (this.whenFull === 'reject') throw new RateLimitCapacityError(1000);
    // Only exhausted keys left: evicting one would hand a blocked client a
    // fresh quota, so the newcomer waits until the oldest of them frees.
    const oldest = this.tiers.exhausted.oldest();
    const retryAfterMs = Math.max(1, Math.min((oldest?.expiresAt ?? now) - now, 1000));
    return { allowed: false, remaining: 0, resetAt: now + retryAfterMs, retryAfterMs };
  }

  private evictOldest(tier: Tier): boolean {
    const oldest = this.tiers[tier].oldest();
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
