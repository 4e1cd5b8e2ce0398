import { ConsecutiveBreaker, circuitBreaker, handleAll, retry } from 'cockatiel';
import { RateLimitConfigError, isRateLimitConfigError } from '../../lib/errors.js';
import {
  parseLimiterOptions,
  rejectUnknownOptions,
  type RateLimiterOptions,
} from '../../lib/options.js';
import { RateLimiter } from '../../lib/rate-limiter.js';
import { systemClock } from '../../lib/clock.js';
import { MemoryStore } from '../../lib/stores/memory-store.js';
import { ManualClock } from '../helpers/manual-clock.js';

const base = { name: 'options-test', limit: 5, window: 1000 };

function constructionError(options: unknown): RateLimitConfigError {
  let caught: unknown;
  try {
    new RateLimiter(options as RateLimiterOptions);
  } catch (error) {
    caught = error;
  }
  if (caught === undefined) throw new Error('expected the constructor to throw');
  expect(isRateLimitConfigError(caught)).toBe(true);
  expect(caught).toBeInstanceOf(RateLimitConfigError);
  return caught as RateLimitConfigError;
}

describe('RateLimiter options', () => {
  it.each<[string, Record<string, unknown>, string, string]>([
    ['limit 0', { limit: 0 }, 'limit', 'got 0'],
    ['limit -1', { limit: -1 }, 'limit', 'got -1'],
    ['limit 1.5', { limit: 1.5 }, 'limit', 'got 1.5'],
    ['limit NaN', { limit: NaN }, 'limit', 'got NaN'],
    ['limit Infinity', { limit: Infinity }, 'limit', 'got Infinity'],
    ['limit above MAX_SAFE_INTEGER', { limit: 2 ** 53 }, 'limit', `got ${2 ** 53}`],
    ["limit '5'", { limit: '5' }, 'limit', 'got "5"'],
    ['limit undefined', { limit: undefined }, 'limit', 'got undefined'],
    ['window 0', { window: 0 }, 'window', 'got 0'],
    ["window 'abc'", { window: 'abc' }, 'window', 'got "abc"'],
    ['window -5', { window: -5 }, 'window', 'got -5'],
    ['window undefined', { window: undefined }, 'window', 'got undefined'],
    ["failClosed 'yes'", { failClosed: 'yes' }, 'failClosed', 'got "yes"'],
    ['failClosed 1', { failClosed: 1 }, 'failClosed', 'got 1'],
    ['timeout 0', { timeout: 0 }, 'timeout', 'got 0'],
    ['timeout -1', { timeout: -1 }, 'timeout', 'got -1'],
    ["algorithm 'leaky'", { algorithm: 'leaky' }, 'algorithm', 'got "leaky"'],
    ['fallbackLimit 0', { fallbackLimit: 0 }, 'fallbackLimit', 'got 0'],
    ['fallbackLimit 2.5', { fallbackLimit: 2.5 }, 'fallbackLimit', 'got 2.5'],
    ["fallbackLimit 'half'", { fallbackLimit: 'half' }, 'fallbackLimit', 'got "half"'],
    ['instanceHorizon 1999', { instanceHorizon: 1999 }, 'instanceHorizon', 'got 1999'],
    ["instanceHorizon '1s'", { instanceHorizon: '1s' }, 'instanceHorizon', 'got "1s"'],
    ["instanceHorizon 'soon'", { instanceHorizon: 'soon' }, 'instanceHorizon', 'got "soon"'],
    ["prefix with '{'", { prefix: 'rl:{' }, 'prefix', 'got "rl:{"'],
    ["prefix with '}'", { prefix: 'rl}:' }, 'prefix', 'got "rl}:"'],
    ['prefix 42', { prefix: 42 }, 'prefix', 'got 42'],
    [
      'prefix over 128 characters',
      { prefix: 'p'.repeat(129) },
      'prefix',
      `got "${'p'.repeat(129)}"`,
    ],
    ["name with '\"'", { name: 'a"b' }, 'name', 'got "a\\"b"'],
    ["name with '{'", { name: 'a{b' }, 'name', 'got "a{b"'],
    ["name with '}'", { name: 'a}b' }, 'name', 'got "a}b"'],
    ["name with '|'", { name: 'a|b' }, 'name', 'got "a|b"'],
    ["name with '\\'", { name: 'a\\b' }, 'name', 'got "a\\\\b"'],
    ['name with a newline', { name: 'a\nb' }, 'name', 'got "a\\nb"'],
    ['name with non-ASCII', { name: 'café' }, 'name', 'got "café"'],
    ["name ''", { name: '' }, 'name', 'got ""'],
    ['name over 128 characters', { name: 'n'.repeat(129) }, 'name', 'got "n'],
    ['name 42', { name: 42 }, 'name', 'got 42'],
    ['breaker 5', { breaker: 5 }, 'breaker', 'got 5'],
    ['breaker {threshold: 0}', { breaker: { threshold: 0 } }, 'breaker.threshold', 'got 0'],
    [
      "breaker {halfOpenAfter: 'x'}",
      { breaker: { halfOpenAfter: 'x' } },
      'breaker.halfOpenAfter',
      'got "x"',
    ],
    ['breaker with an unknown key', { breaker: { threshhold: 3 } }, 'threshhold', "'threshhold'"],
    ['memory 5', { memory: 5 }, 'memory', 'got 5'],
    ['memory {maxKeys: 0}', { memory: { maxKeys: 0 } }, 'memory.maxKeys', 'got 0'],
    ['memory {maxKeys: 1.5}', { memory: { maxKeys: 1.5 } }, 'memory.maxKeys', 'got 1.5'],
    [
      "memory {whenFull: 'drop'}",
      { memory: { whenFull: 'drop' } },
      'memory.whenFull',
      'got "drop"',
    ],
    ['memory with an unknown key', { memory: { max: 10 } }, 'max', "'max'"],
    ['redis 42', { redis: 42 }, 'redis', 'got 42'],
    ['redis {}', { redis: {} }, 'redis', 'got {}'],
    ["redis 'http://x'", { redis: 'http://x' }, 'redis', 'got "http://x"'],
    ["redis 'not a url'", { redis: 'not a url' }, 'redis', 'got "not a url"'],
    ['clock {}', { clock: {} }, 'clock', 'got {}'],
    ["redisTime 'local'", { redisTime: 'local' }, 'redisTime', 'got "local"'],
    ['logger {}', { logger: {} }, 'logger', 'got {}'],
    ['logger with a non-function info', { logger: { warn() {}, info: 1 } }, 'logger', 'got 1'],
    [
      'a cockatiel retry policy as breaker',
      { breaker: retry(handleAll, { maxAttempts: 1 }) },
      'breaker',
      'onBreak',
    ],
    ['metrics with only decision()', { metrics: { decision() {} } }, 'metrics', 'attach'],
    ['clock whose now() gives a Date', { clock: { now: () => new Date() } }, 'clock', 'now()'],
    ["timeout '30d'", { timeout: '30d' }, 'timeout', "Node's timer limit"],
    ['timeout 2^31 ms', { timeout: 2 ** 31 }, 'timeout', 'at most 2147483647'],
    [
      'breaker.halfOpenAfter 30 days',
      { breaker: { halfOpenAfter: '30d' } },
      'breaker.halfOpenAfter',
      'got "30d"',
    ],
    [
      'memory.sweepIntervalMs 30 days',
      { memory: { sweepIntervalMs: 30 * 86_400_000 } },
      'memory.sweepIntervalMs',
      'got 2592000000',
    ],
    ["window '200000d'", { window: '200000d' }, 'window', 'got "200000d"'],
    ['memory that is a foreign store', { memory: { consume() {}, size: 0 } }, 'memory', 'store'],
  ])('rejects %s at construction, naming the option', (_label, bad, option, shown) => {
    const error = constructionError({ ...base, ...bad });
    expect(error.code).toBe('ERR_RRL_CONFIG');
    expect(error.option).toBe(option);
    expect(error.message).toContain(option);
    expect(error.message).toContain(shown);
    expect(error.message.startsWith('resilient-rate-limit: ')).toBe(true);
  });

  it.each([
    ['windowMs', 'window'],
    ['max', 'limit'],
    ['points', 'limit'],
    ['duration', 'window'],
    ['keyPrefix', 'prefix'],
    ['storeClient', 'redis'],
  ])("rejects the unknown option '%s' and suggests '%s'", (unknown, suggestion) => {
    const error = constructionError({ ...base, [unknown]: 1 });
    expect(error.code).toBe('ERR_RRL_CONFIG');
    expect(error.option).toBe(unknown);
    expect(error.message).toContain(`'${unknown}'`);
    expect(error.message).toContain(`did you mean '${suggestion}'?`);
  });

  it('rejects an unknown option without a known rename and offers no suggestion', () => {
    const error = constructionError({ ...base, colour: 'blue' });
    expect(error.option).toBe('colour');
    expect(error.message).toContain("unknown option 'colour'");
    expect(error.message).not.toContain('did you mean');
  });

  it.each([null, undefined, 5, 'limit=5'])('rejects %p as the options object', options => {
    const error = constructionError(options);
    expect(error.option).toBe('options');
  });

  it('accepts every valid option at once', () => {
    const clock = new ManualClock();
    const limiter = new RateLimiter({
      name: 'all-options',
      limit: 10,
      window: '1m',
      failClosed: false,
      algorithm: 'token-bucket',
      timeout: 250,
      breaker: { threshold: 3, halfOpenAfter: 10_000 },
      memory: { maxKeys: 50, whenFull: 'reject' },
      fallbackLimit: 4,
      prefix: 'app:rl:',
      clock,
      redisTime: 'clock',
      logger: { warn: () => {}, error: () => {}, info: () => {} },
    });
    expect(limiter.name).toBe('all-options');
    expect(limiter.windowMs).toBe(60_000);
    expect(limiter.algorithm).toBe('token-bucket');
    expect(limiter.failClosed).toBe(false);
    expect(limiter.fallbackLimit).toBe(4);
    expect(limiter.memory.maxKeys).toBe(50);
    expect(limiter.memory.whenFull).toBe('reject');
    return limiter.close();
  });

  it('accepts a name of 128 printable ASCII characters', () => {
    const name = 'n'.repeat(127) + '~';
    expect(parseLimiterOptions({ name, limit: 1, window: 1 }).name).toBe(name);
  });
});

describe('parseLimiterOptions', () => {
  it('fills in the documented defaults', () => {
    const config = parseLimiterOptions({ limit: 5, window: '1m' });
    expect(config).toMatchObject({
      name: 'fixed-window-5-per-60000ms',
      named: false,
      limit: 5,
      windowMs: 60_000,
      failClosed: true,
      redis: undefined,
      algorithm: 'fixed-window',
      timeoutMs: 100,
      breaker: { threshold: 5, halfOpenAfter: 30_000 },
      memory: undefined,
      ownsMemory: false,
      fallbackLimit: 5,
      instanceHorizonMs: 30_000,
      prefix: 'rl:',
      redisTime: 'redis',
    });
    expect(config.clock).toBe(systemClock);
  });

  it('derives the name from algorithm, limit and window', () => {
    const config = parseLimiterOptions({ limit: 3, window: '30s', algorithm: 'sliding-window' });
    expect(config.name).toBe('sliding-window-3-per-30000ms');
    expect(config.named).toBe(false);
  });

  it('keeps an explicit name', () => {
    const config = parseLimiterOptions({ name: 'login', limit: 3, window: 1000 });
    expect(config.name).toBe('login');
    expect(config.named).toBe(true);
  });

  it('uses a MemoryStore it is given without owning it', () => {
    const store = new MemoryStore({ maxKeys: 3 });
    const config = parseLimiterOptions({ limit: 1, window: 1000, memory: store });
    expect(config.memory).toBe(store);
    expect(config.ownsMemory).toBe(false);
  });

  it('builds a private store from memory options', () => {
    const config = parseLimiterOptions({ limit: 1, window: 1000, memory: { maxKeys: 7 } });
    expect(config.memory).toBeInstanceOf(MemoryStore);
    expect(config.memory?.maxKeys).toBe(7);
    expect(config.ownsMemory).toBe(true);
  });

  it('builds a private store when a clock is injected', () => {
    const config = parseLimiterOptions({ limit: 1, window: 1000, clock: new ManualClock() });
    expect(config.memory).toBeInstanceOf(MemoryStore);
    expect(config.ownsMemory).toBe(true);
  });

  it('accepts rediss:// URLs and duck-typed clients', () => {
    expect(parseLimiterOptions({ limit: 1, window: 1, redis: 'rediss://cache:6380/2' }).redis).toBe(
      'rediss://cache:6380/2',
    );
    const client = { evalsha: () => {}, eval: () => {}, on: () => {} };
    expect(
      parseLimiterOptions({
        limit: 1,
        window: 1,
        redis: client as unknown as RateLimiterOptions['redis'],
      }).redis,
    ).toBe(client);
  });

  it('passes a breaker policy through untouched', () => {
    const policy = circuitBreaker(handleAll, {
      halfOpenAfter: 1000,
      breaker: new ConsecutiveBreaker(3),
    });
    const config = parseLimiterOptions({
      limit: 1,
      window: 1,
      breaker: policy as unknown as RateLimiterOptions['breaker'],
    });
    expect(config.breaker).toBe(policy);
  });
});

describe('rejectUnknownOptions', () => {
  it('accepts known options and rejects the first unknown one', () => {
    expect(() => rejectUnknownOptions({ a: 1, b: 2 }, ['a', 'b'])).not.toThrow();
    expect(() => rejectUnknownOptions({ a: 1, c: 2 }, ['a', 'b'])).toThrow(RateLimitConfigError);
  });
});

describe('duration ranges', () => {
  it('keeps a window longer than 2^31 ms working without any timer overflow', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => {
      warnings.push(warning);
    };
    process.on('warning', onWarning);
    const clock = new ManualClock();
    const limiter = new RateLimiter({ ...base, window: '30d', limit: 1, clock });
    try {
      expect(limiter.windowMs).toBe(30 * 86_400_000);
      const first = await limiter.consume('k');
      expect(first.resetAt).toBe(clock.now() + 30 * 86_400_000);
      expect((await limiter.consume('k')).allowed).toBe(false);
      clock.tick(30 * 86_400_000);
      expect((await limiter.consume('k')).allowed).toBe(true);
      // Node reports an overflowing timer through 'warning' on a later tick.
      await new Promise(resolve => setImmediate(resolve));
      expect(warnings.map(w => w.name)).not.toContain('TimeoutOverflowWarning');
    } finally {
      process.off('warning', onWarning);
      await limiter.close();
    }
  });

  it('rejects a MemoryStore sweep interval a Node timer cannot hold', () => {
    expect(() => new MemoryStore({ sweepIntervalMs: 30 * 86_400_000 })).toThrow(
      /memory\.sweepIntervalMs .*timer limit/,
    );
    expect(() => new MemoryStore({ sweepIntervalMs: 2 ** 31 - 1 }).close()).not.toThrow();
  });
});
