import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  RateLimitCapacityError,
  RateLimitConfigError,
  isRateLimitCapacityError,
} from '../../lib/errors.js';
import {
  MemoryStore,
  defaultMemoryStore,
  type MemoryStoreOptions,
} from '../../lib/stores/memory-store.js';
import type { DecisionParams } from '../../lib/types.js';
import { ManualClock } from '../helpers/manual-clock.js';

const T0 = 1_700_000_000_000;
const WINDOW = 60_000;

function at(now: number, overrides: Partial<DecisionParams> = {}): DecisionParams {
  return { algorithm: 'fixed-window', limit: 5, windowMs: WINDOW, cost: 1, now, ...overrides };
}

// Stores made in a test are closed after it, so no sweep timer outlives it.
const stores: MemoryStore[] = [];
function store(options: MemoryStoreOptions = {}): MemoryStore {
  const created = new MemoryStore(options);
  stores.push(created);
  return created;
}
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
  jest.useRealTimers();
});

function timerOf(s: MemoryStore): NodeJS.Timeout | undefined {
  return (s as unknown as { timer: NodeJS.Timeout | undefined }).timer;
}

// A real collector, so heap measurements are not garbage waiting for a GC.
function collector(): (() => void) | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    return typeof gc === 'function' ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}

describe('MemoryStore', () => {
  describe('constructor', () => {
    it('defaults to 10 000 keys and evict', () => {
      const s = store();
      expect(s.maxKeys).toBe(10_000);
      expect(s.whenFull).toBe('evict');
      expect(s.size).toBe(0);
    });

    it.each<[MemoryStoreOptions, string]>([
      [{ maxKeys: 0 }, 'memory.maxKeys'],
      [{ maxKeys: -1 }, 'memory.maxKeys'],
      [{ maxKeys: 2.5 }, 'memory.maxKeys'],
      [{ maxKeys: NaN }, 'memory.maxKeys'],
      [{ whenFull: 'drop' as 'evict' }, 'memory.whenFull'],
      [{ sweepIntervalMs: 0 }, 'memory.sweepIntervalMs'],
    ])('rejects %p with a RateLimitConfigError naming %s', (options, option) => {
      let caught: unknown;
      try {
        new MemoryStore(options);
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(RateLimitConfigError);
      expect((caught as RateLimitConfigError).option).toBe(option);
      expect((caught as RateLimitConfigError).message).toContain(option);
    });

    it('rejects options that are not an object', () => {
      expect(() => new MemoryStore(null as unknown as MemoryStoreOptions)).toThrow(
        RateLimitConfigError,
      );
    });
  });

  describe('consume', () => {
    it('counts per key and denies past the limit', () => {
      const s = store();
      const results = [0, 1, 2, 3, 4, 5].map(i => s.consume('a', at(T0 + i)));
      expect(results.map(r => r.allowed)).toEqual([true, true, true, true, true, false]);
      expect(s.consume('b', at(T0)).remaining).toBe(4);
      expect(s.size).toBe(2);
    });

    it('treats an expired entry as a fresh key', () => {
      const s = store();
      for (let i = 0; i < 5; i++) s.consume('a', at(T0));
      expect(s.consume('a', at(T0 + WINDOW - 1)).allowed).toBe(false);
      expect(s.consume('a', at(T0 + WINDOW))).toMatchObject({ allowed: true, remaining: 4 });
    });
  });

  describe('get', () => {
    it('returns undefined for an unseen or expired key and never consumes', () => {
      const s = store();
      expect(s.get('a', at(T0))).toBeUndefined();
      expect(s.size).toBe(0);
      s.consume('a', at(T0));
      expect(s.get('a', at(T0 + 1))).toMatchObject({ allowed: true, remaining: 4 });
      expect(s.get('a', at(T0 + 2))).toMatchObject({ allowed: true, remaining: 4 });
      expect(s.get('a', at(T0 + WINDOW))).toBeUndefined();
    });
  });

  describe('eviction', () => {
    it('evicts the least recently used key first', () => {
      const s = store({ maxKeys: 3 });
      s.consume('a', at(T0));
      s.consume('b', at(T0 + 1));
      s.consume('c', at(T0 + 2));
      s.consume('a', at(T0 + 3)); // a is now the most recently used
      s.consume('d', at(T0 + 4)); // evicts b
      expect(s.size).toBe(3);
      expect(s.get('b', at(T0 + 5))).toBeUndefined();
      expect(s.get('a', at(T0 + 5))).toMatchObject({ remaining: 3 });
      expect(s.get('c', at(T0 + 5))).toBeDefined();
      s.consume('e', at(T0 + 6)); // evicts c
      expect(s.get('c', at(T0 + 7))).toBeUndefined();
      expect(s.get('a', at(T0 + 7))).toBeDefined();
      expect(s.evictions).toBe(2);
    });

    it('evicts in constant time, however large maxKeys is', () => {
      // Time per eviction with 20x the keys must stay within a small factor
      // (O(1)), not grow with maxKeys (O(n)). Best of three to shed GC noise.
      const perEviction = (maxKeys: number): number => {
        let best = Infinity;
        for (let run = 0; run < 3; run++) {
          const s = store({ maxKeys });
          const params = at(T0);
          for (let i = 0; i < maxKeys; i++) s.consume(`fill-${i}`, params);
          const evictions = 40_000;
          const start = process.hrtime.bigint();
          for (let i = 0; i < evictions; i++) s.consume(`new-${i}`, params);
          best = Math.min(best, Number(process.hrtime.bigint() - start) / evictions);
          expect(s.size).toBe(maxKeys);
          s.close();
        }
        return best;
      };
      perEviction(1_000); // warm up the JIT
      const small = perEviction(1_000);
      const large = perEviction(20_000);
      expect(large / small).toBeLessThan(5);
    });

    it('evicts exhausted keys last, so a flood of new keys cannot free a blocked one', () => {
      const maxKeys = 100;
      const s = store({ maxKeys });
      for (let i = 0; i < maxKeys - 1; i++) s.consume(`filler-${i}`, at(T0));
      for (let i = 0; i < 5; i++) s.consume('attacker', at(T0));
      expect(s.consume('attacker', at(T0)).allowed).toBe(false);
      // The attacker rotates through many fresh keys hoping to push itself out.
      for (let i = 0; i < 10 * maxKeys; i++) s.consume(`flood-${i}`, at(T0 + 1));
      expect(s.size).toBe(maxKeys);
      expect(s.consume('attacker', at(T0 + 2))).toMatchObject({ allowed: false, remaining: 0 });
      expect(s.get('filler-0', at(T0 + 2))).toBeUndefined();
    });

    it('denies a new key, for at most 1 s, rather than evict an exhausted one when only exhausted keys remain', () => {
      const s = store({ maxKeys: 2 });
      const one = (now: number) => at(now, { limit: 1 });
      s.consume('a', one(T0));
      s.consume('b', one(T0 + 1));
      const newcomer = s.consume('c', one(T0 + 2));
      expect(newcomer).toMatchObject({ allowed: false, remaining: 0 });
      expect(newcomer.retryAfterMs).toBeGreaterThan(0);
      expect(newcomer.retryAfterMs).toBeLessThanOrEqual(1000);
      expect(s.size).toBe(2);
      expect(s.get('c', one(T0 + 3))).toBeUndefined();
      expect(s.get('a', one(T0 + 3))).toMatchObject({ allowed: false });
      expect(s.get('b', one(T0 + 3))).toMatchObject({ allowed: false });
      expect(s.evictions).toBe(0);
      // Once the blocked keys' windows pass, new keys get in again.
      expect(s.consume('c', one(T0 + WINDOW + 1))).toMatchObject({ allowed: true });
    });

    it.each([1, 2])(
      'with limit %i, a flood of maxKeys new keys spending their quota never frees a blocked key',
      limit => {
        const maxKeys = 50;
        const s = store({ maxKeys });
        const p = (now: number) => at(now, { limit });
        for (let i = 0; i <= limit; i++) s.consume('blocked', p(T0));
        expect(s.consume('blocked', p(T0)).allowed).toBe(false);
        for (let i = 0; i < 3 * maxKeys; i++) {
          for (let j = 0; j < limit; j++) s.consume(`flood-${i}`, p(T0 + 1));
        }
        expect(s.size).toBeLessThanOrEqual(maxKeys);
        expect(s.consume('blocked', p(T0 + 2))).toMatchObject({ allowed: false, remaining: 0 });
      },
    );

    it('moves a key back among open keys when its window passes', () => {
      const s = store({ maxKeys: 2 });
      for (let i = 0; i < 5; i++) s.consume('blocked', at(T0));
      s.consume('other', at(T0));
      // New window: blocked is open again (remaining 4), and older than other2.
      s.consume('blocked', at(T0 + WINDOW));
      s.consume('other2', at(T0 + WINDOW + 1));
      s.consume('other3', at(T0 + WINDOW + 2));
      expect(s.get('blocked', at(T0 + WINDOW + 3))).toBeUndefined();
    });
  });

  describe("whenFull: 'reject'", () => {
    it('throws RateLimitCapacityError for a new key while full, yet serves existing keys', () => {
      const s = store({ maxKeys: 2, whenFull: 'reject' });
      s.consume('a', at(T0));
      s.consume('b', at(T0));
      let caught: unknown;
      try {
        s.consume('c', at(T0 + 1));
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(RateLimitCapacityError);
      expect(isRateLimitCapacityError(caught)).toBe(true);
      expect((caught as RateLimitCapacityError).retryAfterMs).toBeGreaterThan(0);
      expect(s.size).toBe(2);
      expect(s.get('c', at(T0 + 1))).toBeUndefined();
      expect(s.consume('a', at(T0 + 2))).toMatchObject({ allowed: true, remaining: 3 });
      expect(s.evictions).toBe(0);
    });

    it('accepts new keys again once expired entries are swept', () => {
      const s = store({ maxKeys: 2, whenFull: 'reject' });
      s.consume('a', at(T0));
      s.consume('b', at(T0));
      expect(() => s.consume('c', at(T0 + 1))).toThrow(RateLimitCapacityError);
      expect(s.consume('c', at(T0 + WINDOW + 1_000))).toMatchObject({ allowed: true });
    });
  });

  describe('mirror', () => {
    it('sets the counter state of a key as Redis reported it', () => {
      const s = store();
      s.mirror('k', { a: 4, b: T0, c: 0 }, at(T0), false, 0);
      expect(s.get('k', at(T0 + 1))).toMatchObject({
        allowed: true,
        remaining: 1,
        resetAt: T0 + WINDOW,
      });
      s.mirror('k', { a: 5, b: T0, c: 0 }, at(T0 + 2), true, 0);
      expect(s.consume('k', at(T0 + 3))).toMatchObject({ allowed: false, remaining: 0 });
    });

    it('keeps warm copies from making a whenFull: reject store count as full', () => {
      const s = store({ maxKeys: 3, whenFull: 'reject' });
      for (let i = 0; i < 3; i++) s.mirror(`warm-${i}`, { a: 1, b: T0, c: 0 }, at(T0), false, T0);
      expect(s.tierSizes).toEqual({ warm: 3, open: 0, exhausted: 0 });
      // The outage starts: three new clients arrive.
      for (let i = 0; i < 3; i++) {
        expect(s.consume(`new-${i}`, at(T0 + 1))).toMatchObject({ allowed: true });
      }
      expect(s.tierSizes).toEqual({ warm: 0, open: 3, exhausted: 0 });
      // Real outage state fills it now: that, and only that, is rejected.
      expect(() => s.consume('one-more', at(T0 + 2))).toThrow(RateLimitCapacityError);
    });

    it('evicts warm copies before keys counted here, and never a counted key to mirror', () => {
      const s = store({ maxKeys: 2 });
      s.consume('counted', at(T0));
      s.mirror('warm', { a: 1, b: T0, c: 0 }, at(T0 + 1), false, T0);
      s.consume('new', at(T0 + 2));
      expect(s.get('counted', at(T0 + 3))).toBeDefined();
      expect(s.get('warm', at(T0 + 3))).toBeUndefined();
      s.mirror('warm-2', { a: 1, b: T0, c: 0 }, at(T0 + 4), false, T0);
      expect(s.get('warm-2', at(T0 + 5))).toBeUndefined();
      expect(s.tierSizes).toEqual({ warm: 0, open: 2, exhausted: 0 });
    });

    it('never evicts an exhausted key to mirror another', () => {
      const s = store({ maxKeys: 1 });
      for (let i = 0; i < 5; i++) s.consume('blocked', at(T0));
      s.mirror('new', { a: 1, b: T0, c: 0 }, at(T0), false, 0);
      expect(s.size).toBe(1);
      expect(s.get('new', at(T0))).toBeUndefined();
      expect(s.get('blocked', at(T0))).toMatchObject({ allowed: false });
    });

    it('reports remaining 0, not below, for a mirrored count above a lower fallback limit', () => {
      const s = store();
      s.mirror('k', { a: 10, b: T0, c: 0 }, at(T0, { limit: 10 }), true, 0);
      const decision = s.consume('k', at(T0 + 1, { limit: 4 }));
      expect(decision.allowed).toBe(false);
      expect(decision.remaining).toBe(0);
    });
  });

  describe('reset', () => {
    it('forgets one key, open or exhausted', () => {
      const s = store();
      for (let i = 0; i < 5; i++) s.consume('blocked', at(T0));
      s.consume('open', at(T0));
      s.reset('blocked');
      expect(s.size).toBe(1);
      expect(s.consume('blocked', at(T0 + 1))).toMatchObject({ allowed: true, remaining: 4 });
      s.reset('open');
      expect(s.get('open', at(T0 + 1))).toBeUndefined();
      expect(() => s.reset('never-seen')).not.toThrow();
    });
  });

  describe('sweep', () => {
    it('removes expired entries and keeps live ones', () => {
      const s = store();
      s.consume('old', at(T0));
      for (let i = 0; i < 5; i++) s.consume('old-blocked', at(T0));
      s.consume('new', at(T0 + 30_000));
      expect(s.size).toBe(3);
      s.sweep(T0 + WINDOW - 1);
      expect(s.size).toBe(3);
      s.sweep(T0 + WINDOW);
      expect(s.size).toBe(1);
      expect(s.get('new', at(T0 + WINDOW))).toBeDefined();
      s.sweep(T0 + 30_000 + WINDOW);
      expect(s.size).toBe(0);
    });

    it('sweeps on its own clock when called without a time', () => {
      const clock = new ManualClock(T0);
      const s = store({ clock });
      s.consume('a', at(T0));
      s.sweep();
      expect(s.size).toBe(1);
      clock.tick(WINDOW);
      s.sweep();
      expect(s.size).toBe(0);
    });

    it('runs on a timer every sweepIntervalMs', () => {
      jest.useFakeTimers({ now: T0 });
      const s = store({ sweepIntervalMs: 5_000 });
      s.consume('a', at(Date.now(), { windowMs: 7_000 }));
      s.consume('b', at(Date.now(), { windowMs: 60_000 }));
      jest.advanceTimersByTime(5_000);
      expect(s.size).toBe(2);
      jest.advanceTimersByTime(5_000);
      expect(s.size).toBe(1);
      expect(s.get('b', at(Date.now()))).toBeDefined();
    });

    it('starts no timer before the first entry', () => {
      jest.useFakeTimers({ now: T0 });
      const s = store();
      expect(jest.getTimerCount()).toBe(0);
      s.consume('a', at(T0));
      expect(jest.getTimerCount()).toBe(1);
      s.consume('b', at(T0));
      expect(jest.getTimerCount()).toBe(1);
    });
  });

  describe('close', () => {
    it('stops the sweep timer and drops every entry', () => {
      jest.useFakeTimers({ now: T0 });
      const s = store();
      s.consume('a', at(T0));
      expect(jest.getTimerCount()).toBe(1);
      s.close();
      expect(jest.getTimerCount()).toBe(0);
      expect(s.size).toBe(0);
      // Still answers, but never restarts the timer.
      expect(s.consume('a', at(T0)).allowed).toBe(true);
      expect(jest.getTimerCount()).toBe(0);
    });

    it('can be called twice', () => {
      const s = store();
      s.consume('a', at(T0));
      s.close();
      expect(() => s.close()).not.toThrow();
    });
  });

  it('keeps its sweep timer from holding the process open', () => {
    const s = store();
    s.consume('a', at(Date.now()));
    const timer = timerOf(s);
    expect(timer).toBeDefined();
    expect(timer?.hasRef()).toBe(false);
    s.close();
    expect(timerOf(s)).toBeUndefined();
  });

  it('stays at maxKeys with bounded heap under a flood of 1 000 000 distinct keys', () => {
    const gc = collector();
    const maxKeys = 10_000;
    const s = store({ maxKeys });
    const params = at(T0);
    gc?.();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 1_000_000; i++) {
      params.now = T0 + (i >> 10);
      s.consume(`k${i}`, params);
    }
    expect(s.size).toBe(maxKeys);
    expect(s.evictions).toBe(1_000_000 - maxKeys);
    gc?.();
    const growth = process.memoryUsage().heapUsed - before;
    expect(growth).toBeLessThan(50 * 1024 * 1024);
  });
});

describe('defaultMemoryStore', () => {
  it('returns one process-wide store', () => {
    const shared = defaultMemoryStore();
    expect(defaultMemoryStore()).toBe(shared);
    expect(shared.maxKeys).toBe(10_000);
    expect(shared.whenFull).toBe('evict');
  });
});
