import {
  RateLimitArgumentError,
  RateLimitCapacityError,
  isRateLimitCapacityError,
} from '../../lib/errors.js';
import { RateLimiter } from '../../lib/rate-limiter.js';
import type { RateLimiterOptions } from '../../lib/options.js';
import { toStorageKey } from '../../lib/storage-key.js';
import { MemoryStore, defaultMemoryStore } from '../../lib/stores/memory-store.js';
import type { Logger } from '../../lib/types.js';
import { ManualClock } from '../helpers/manual-clock.js';

const T0 = 1_700_000_000_000;

/** Records every log call. */
class RecordingLogger implements Logger {
  readonly warnings: string[] = [];
  readonly errors: string[] = [];
  readonly infos: string[] = [];
  warn(message: string): void {
    this.warnings.push(message);
  }
  error(message: string): void {
    this.errors.push(message);
  }
  info(message: string): void {
    this.infos.push(message);
  }
}

const limiters: RateLimiter[] = [];
let clock: ManualClock;

function limiter(options: Partial<RateLimiterOptions> = {}): RateLimiter {
  const created = new RateLimiter({
    name: 'test',
    limit: 3,
    window: '1m',
    clock,
    logger: new RecordingLogger(),
    ...options,
  } as RateLimiterOptions);
  limiters.push(created);
  return created;
}

beforeEach(() => {
  clock = new ManualClock(T0);
});

afterEach(async () => {
  await Promise.all(limiters.splice(0).map(l => l.close()));
  jest.useRealTimers();
});

afterAll(() => {
  defaultMemoryStore().close();
});

describe('RateLimiter', () => {
  describe('in memory-only mode', () => {
    it('decides from memory and reports limit, remaining and reset', async () => {
      const l = limiter();
      expect(l.breakerState).toBeUndefined();
      const first = await l.consume('user:1');
      expect(first).toEqual({
        allowed: true,
        limit: 3,
        remaining: 2,
        resetAt: T0 + 60_000,
        retryAfterMs: 0,
        source: 'memory',
        key: 'user:1',
      });
      clock.tick(1_000);
      expect(await l.consume('user:1')).toMatchObject({ allowed: true, remaining: 1 });
      expect(await l.consume('user:1')).toMatchObject({ allowed: true, remaining: 0 });
      clock.tick(9_000);
      expect(await l.consume('user:1')).toEqual({
        allowed: false,
        limit: 3,
        remaining: 0,
        resetAt: T0 + 60_000,
        retryAfterMs: 50_000,
        source: 'memory',
        key: 'user:1',
      });
    });

    it('keeps separate counters per key', async () => {
      const l = limiter({ limit: 1 });
      expect((await l.consume('a')).allowed).toBe(true);
      expect((await l.consume('a')).allowed).toBe(false);
      expect((await l.consume('b')).allowed).toBe(true);
    });

    it('opens a new window after the old one ends', async () => {
      const l = limiter({ limit: 1 });
      await l.consume('a');
      clock.tick(59_999);
      expect((await l.consume('a')).allowed).toBe(false);
      clock.tick(1);
      expect(await l.consume('a')).toMatchObject({ allowed: true, resetAt: T0 + 120_000 });
    });

    it('counts a cost above 1 as that many units', async () => {
      const l = limiter({ limit: 10 });
      expect(await l.consume('a', 4)).toMatchObject({ allowed: true, remaining: 6 });
      expect(await l.consume('a', 7)).toMatchObject({ allowed: false, remaining: 6 });
      expect(await l.consume('a', 6)).toMatchObject({ allowed: true, remaining: 0 });
    });

    it('uses limit, not fallbackLimit, since there is no outage', async () => {
      const l = limiter({ limit: 5, fallbackLimit: 2 });
      expect(await l.consume('a')).toMatchObject({ limit: 5, remaining: 4 });
    });

    it('emits no fallback events', async () => {
      const l = limiter();
      const fallback = jest.fn();
      l.on('fallback', fallback);
      await l.consume('a');
      expect(fallback).not.toHaveBeenCalled();
    });

    it.each(['sliding-window', 'token-bucket'] as const)(
      'decides with the %s algorithm',
      async algorithm => {
        const l = limiter({ algorithm, limit: 2 });
        expect(l.algorithm).toBe(algorithm);
        expect((await l.consume('a')).allowed).toBe(true);
        expect((await l.consume('a')).allowed).toBe(true);
        const denied = await l.consume('a');
        expect(denied.allowed).toBe(false);
        expect(denied.retryAfterMs).toBeGreaterThan(0);
      },
    );
  });

  describe('cost', () => {
    it.each<[string, unknown]>([
      ['0', 0],
      ['-1', -1],
      ['1.5', 1.5],
      ['NaN', NaN],
      ['Infinity', Infinity],
      ['above the limit', 4],
      ["'1'", '1'],
      ['null', null],
    ])(
      'rejects the cost %s with RateLimitArgumentError and counts nothing',
      async (_label, cost) => {
        const l = limiter();
        await expect(l.consume('a', cost as number)).rejects.toThrow(RateLimitArgumentError);
        await expect(l.consume('a', cost as number)).rejects.toThrow(
          /cost must be a whole number from 1 to the limit \(3\)/,
        );
        expect(await l.get('a')).toBeUndefined();
        expect(l.memory.size).toBe(0);
      },
    );

    it('accepts a cost equal to the limit', async () => {
      const l = limiter();
      expect(await l.consume('a', 3)).toMatchObject({ allowed: true, remaining: 0 });
    });

    it('defaults to 1 when omitted or undefined', async () => {
      const l = limiter();
      expect((await l.consume('a')).remaining).toBe(2);
      expect((await l.consume('a', undefined)).remaining).toBe(1);
    });
  });

  describe('key', () => {
    it.each<[string, unknown]>([
      ["''", ''],
      ['undefined', undefined],
      ['42', 42],
      ['null', null],
      ['an object', { id: 1 }],
    ])('rejects the key %s in consume, get and reset', async (_label, key) => {
      const l = limiter();
      await expect(l.consume(key as string)).rejects.toThrow(RateLimitArgumentError);
      await expect(l.get(key as string)).rejects.toThrow(RateLimitArgumentError);
      await expect(l.reset(key as string)).rejects.toThrow(RateLimitArgumentError);
      await expect(l.consume(key as string)).rejects.toThrow(/key must be a non-empty string/);
      expect(l.memory.size).toBe(0);
    });

    it('limits long keys and reports the caller key, not its hash', async () => {
      const l = limiter({ limit: 1 });
      const long = 'tenant:' + 'x'.repeat(1_000);
      const result = await l.consume(long);
      expect(result.key).toBe(long);
      expect(result.allowed).toBe(true);
      expect((await l.consume(long)).allowed).toBe(false);
      expect((await l.get(long))?.key).toBe(long);
      // A different long key with the same prefix has its own counter.
      expect((await l.consume(long + 'y')).allowed).toBe(true);
    });

    it('never lets a key that looks like a hash share a hashed key counter', async () => {
      const l = limiter({ limit: 1 });
      const long = 'k'.repeat(500);
      await l.consume(long);
      expect((await l.consume(toStorageKey(long))).allowed).toBe(true);
    });

    it.each(['{user}', 'a|b', 'x*', '\uD800', 'ключ'])('takes the key %p literally', async key => {
      const l = limiter({ limit: 1 });
      expect(await l.consume(key)).toMatchObject({ allowed: true, key });
      expect((await l.consume(key)).allowed).toBe(false);
      expect((await l.consume(key + '2')).allowed).toBe(true);
    });
  });

  describe('get', () => {
    it('returns undefined for an unseen key', async () => {
      expect(await limiter().get('nobody')).toBeUndefined();
    });

    it('reports the state without consuming', async () => {
      const l = limiter();
      await l.consume('a');
      clock.tick(500);
      const seen = await l.get('a');
      expect(seen).toEqual({
        allowed: true,
        limit: 3,
        remaining: 2,
        resetAt: T0 + 60_000,
        retryAfterMs: 0,
        source: 'memory',
        key: 'a',
      });
      expect(await l.get('a')).toEqual(seen);
      expect((await l.consume('a')).remaining).toBe(1);
    });

    it('returns undefined once the window has passed', async () => {
      const l = limiter();
      await l.consume('a');
      clock.tick(60_000);
      expect(await l.get('a')).toBeUndefined();
    });

    it('reports a blocked key as not allowed, with the wait until it frees', async () => {
      const l = limiter({ limit: 1 });
      await l.consume('a');
      clock.tick(20_000);
      const seen = await l.get('a');
      expect(seen).toMatchObject({ allowed: false, remaining: 0, resetAt: T0 + 60_000 });
      // RateLimitResult.retryAfterMs: "0 when allowed; otherwise ms until a
      // request of the same cost can pass".
      expect(seen?.retryAfterMs).toBe(40_000);
    });
  });

  describe('reset', () => {
    it('gives the key a fresh quota', async () => {
      const l = limiter({ limit: 1 });
      await l.consume('a');
      await l.consume('b');
      await expect(l.reset('a')).resolves.toBeUndefined();
      expect(await l.get('a')).toBeUndefined();
      expect((await l.consume('a')).allowed).toBe(true);
      expect((await l.consume('b')).allowed).toBe(false);
    });

    it('resets a long, hashed key', async () => {
      const l = limiter({ limit: 1 });
      const long = 'z'.repeat(300);
      await l.consume(long);
      await l.reset(long);
      expect((await l.consume(long)).allowed).toBe(true);
    });
  });

  describe('close', () => {
    it('closes the store it created, and can be called twice', async () => {
      jest.useFakeTimers({ now: T0 });
      const l = new RateLimiter({ name: 'closing', limit: 3, window: 1_000, clock });
      await l.consume('a');
      expect(jest.getTimerCount()).toBe(1);
      await l.close();
      expect(jest.getTimerCount()).toBe(0);
      expect(l.memory.size).toBe(0);
      await expect(l.close()).resolves.toBeUndefined();
    });

    it('leaves a store it was given open', async () => {
      const store = new MemoryStore({ clock });
      const l = new RateLimiter({ name: 'given', limit: 3, window: 1_000, clock, memory: store });
      await l.consume('a');
      await l.close();
      expect(store.size).toBe(1);
      store.close();
    });
  });

  describe('memory store', () => {
    it('gets a private store when a clock is injected', async () => {
      const a = limiter({ name: 'same' });
      const b = limiter({ name: 'same' });
      expect(a.memory).not.toBe(defaultMemoryStore());
      expect(a.memory).not.toBe(b.memory);
      await a.consume('k', 3);
      expect((await b.consume('k')).allowed).toBe(true);
    });

    it('shares counters between limiters with the same name on the default store', async () => {
      const a = new RateLimiter({ name: 'shared-by-name', limit: 2, window: '1h' });
      const b = new RateLimiter({ name: 'shared-by-name', limit: 2, window: '1h' });
      const other = new RateLimiter({ name: 'other-name', limit: 2, window: '1h' });
      limiters.push(a, b, other);
      expect(a.memory).toBe(defaultMemoryStore());
      expect(b.memory).toBe(a.memory);
      await a.consume('shared-key');
      expect(await b.consume('shared-key')).toMatchObject({ allowed: true, remaining: 0 });
      expect((await a.consume('shared-key')).allowed).toBe(false);
      expect((await other.consume('shared-key')).allowed).toBe(true);
    });

    it('does not close the default store when a limiter closes', async () => {
      const a = new RateLimiter({ name: 'default-survives', limit: 2, window: '1h' });
      await a.consume('k');
      await a.close();
      const b = new RateLimiter({ name: 'default-survives', limit: 2, window: '1h' });
      limiters.push(b);
      expect((await b.consume('k')).remaining).toBe(0);
    });

    it('shares a MemoryStore passed to several limiters', async () => {
      const store = new MemoryStore({ clock });
      const a = limiter({ name: 'share', memory: store });
      const b = limiter({ name: 'share', memory: store });
      await a.consume('k', 2);
      expect((await b.consume('k')).remaining).toBe(0);
      expect(store.size).toBe(1);
      store.close();
    });

    it('keeps remaining at 0 when a same-named limiter with a higher limit used more', async () => {
      const store = new MemoryStore({ clock });
      const generous = limiter({ name: 'mixed', limit: 10, memory: store });
      const strict = limiter({ name: 'mixed', limit: 4, memory: store });
      await generous.consume('k', 8);
      const denied = await strict.consume('k');
      expect(denied.allowed).toBe(false);
      expect(denied.remaining).toBe(0);
      store.close();
    });

    it("rejects with RateLimitCapacityError when a 'reject' store is full and failClosed", async () => {
      const l = limiter({ memory: { maxKeys: 1, whenFull: 'reject' } });
      await l.consume('a');
      const error = await l.consume('b').then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(RateLimitCapacityError);
      expect(isRateLimitCapacityError(error)).toBe(true);
      expect((await l.consume('a')).allowed).toBe(true);
    });

    it("lets the request through when a 'reject' store is full and not failClosed", async () => {
      const l = limiter({ failClosed: false, memory: { maxKeys: 1, whenFull: 'reject' } });
      await l.consume('a');
      expect(await l.consume('b')).toMatchObject({
        allowed: true,
        source: 'bypass',
        key: 'b',
        limit: 3,
        retryAfterMs: 0,
      });
      expect(l.memory.size).toBe(1);
    });
  });

  describe('name', () => {
    it('derives the name from algorithm, limit and window', () => {
      const l = limiter({ name: undefined, limit: 4_321, window: '1m' });
      expect(l.name).toBe('fixed-window-4321-per-60000ms');
    });

    it('warns exactly once when unnamed limiters derive the same name', () => {
      const logger = new RecordingLogger();
      const options = { limit: 9_871, window: '7s', logger } as const;
      limiters.push(new RateLimiter(options));
      expect(logger.warnings).toHaveLength(0);
      limiters.push(new RateLimiter(options), new RateLimiter(options));
      expect(logger.warnings).toHaveLength(1);
      expect(logger.warnings[0]).toMatch(/^resilient-rate-limit: /);
      expect(logger.warnings[0]).toContain("'fixed-window-9871-per-7000ms'");
      expect(logger.warnings[0]).toContain('name');
    });

    it('does not warn for named limiters or for different derived names', () => {
      const logger = new RecordingLogger();
      limiters.push(
        new RateLimiter({ limit: 9_872, window: '7s', logger }),
        new RateLimiter({ limit: 9_872, window: '7s', algorithm: 'token-bucket', logger }),
        new RateLimiter({ limit: 9_872, window: '8s', logger }),
        new RateLimiter({
          name: 'fixed-window-9872-per-7000ms-a',
          limit: 9_872,
          window: '7s',
          logger,
        }),
        new RateLimiter({ name: 'explicit', limit: 9_872, window: '7s', logger }),
        new RateLimiter({ name: 'explicit', limit: 9_872, window: '7s', logger }),
      );
      expect(logger.warnings).toEqual([]);
      expect(logger.errors).toEqual([]);
    });
  });
});
