import fc from 'fast-check';
import type { Redis } from 'ioredis';
import request from 'supertest';
import {
  MemoryStore,
  RateLimiter,
  isRateLimitConfigError,
  rateLimit,
  type RateLimiterOptions,
} from '../../lib/index.js';
import { createAppWith } from '../helpers/create-app.js';
import { RedisProcess } from '../helpers/redis-process.js';
import { failFastClient, ready, recordingLogger, uniqueName } from '../helpers/redis.js';

const HOSTILE_KEYS = [
  '*',
  '?',
  '[a-z]',
  '{',
  '}',
  '{tag}',
  'a}b{c',
  ':',
  'user:1',
  'user',
  '1',
  'line\nbreak',
  'nul\u0000byte',
  'nul\u0000',
  '\r\n',
  '#',
  '#literal',
  'x'.repeat(10 * 1024),
  'x'.repeat(10 * 1024 - 1) + 'y',
  '\uD800',
  '\uD801',
  '\uDC00\uD800',
  '\uFFFD',
  'é'.repeat(100),
  'e\u0301'.repeat(50),
  ' ',
  'rl:',
  'rl:{x|y}',
];

let redis: RedisProcess;
let client: Redis;

beforeAll(async () => {
  redis = await RedisProcess.start();
  client = failFastClient(redis.port);
  await ready(client);
});

afterAll(async () => {
  client.disconnect();
  await redis.stop();
});

describe.each(['redis', 'memory'] as const)('hostile keys in %s', store => {
  it('each key gets its own counter and touches no other key', async () => {
    const name = uniqueName('hostile');
    const limiter = new RateLimiter({
      name,
      limit: 1,
      window: '1h',
      redis: store === 'redis' ? client : undefined,
      memory: new MemoryStore(),
      logger: recordingLogger(),
    });
    try {
      for (const key of HOSTILE_KEYS) {
        const result = await limiter.consume(key);
        expect({ key, allowed: result.allowed, source: result.source }).toEqual({
          key,
          allowed: true,
          source: store,
        });
        expect(result.key).toBe(key);
      }
      for (const key of HOSTILE_KEYS) expect((await limiter.consume(key)).allowed).toBe(false);
      if (store === 'redis') {
        const stored = await client.keys(`rl:{${name}|*`);
        expect(stored).toHaveLength(HOSTILE_KEYS.length);
        for (const key of stored) expect(Buffer.byteLength(key)).toBeLessThanOrEqual(200 + 80);
      }
      await limiter.reset('{tag}');
      expect((await limiter.consume('{tag}')).allowed).toBe(true);
      expect((await limiter.consume('tag')).allowed).toBe(true);
    } finally {
      await limiter.close();
    }
  });
});

describe('hostile traffic', () => {
  it('an attacker rotating keys cannot evict a blocked client nor grow the store', async () => {
    const memory = new MemoryStore({ maxKeys: 100 });
    const limiter = rateLimit({
      name: uniqueName('flood'),
      limit: 2,
      window: '1h',
      memory,
      key: req => String(req.headers['x-client']),
      logger: recordingLogger(),
    });
    const app = createAppWith('express5', {}, limiter);
    for (let i = 0; i < 3; i++) await request(app).get('/').set('x-client', 'victim');
    for (let i = 0; i < 2000; i++) await limiter.limiter.consume(`attacker-${i}`);
    expect(memory.size).toBeLessThanOrEqual(100);
    const after = await request(app).get('/').set('x-client', 'victim');
    expect(after.status).toBe(429);
    await limiter.limiter.close();
  });

  it('groups IPv6 addresses of one /56 into one client', async () => {
    const limiter = rateLimit({
      name: uniqueName('v6'),
      limit: 3,
      window: '1h',
      logger: recordingLogger(),
    });
    const app = createAppWith('express5', { trustProxy: 1 }, limiter);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const address = `2001:db8:abcd:12${i.toString(16).padStart(2, '0')}::${i + 1}`;
      statuses.push((await request(app).get('/').set('X-Forwarded-For', address)).status);
    }
    expect(statuses).toEqual([200, 200, 200, 429, 429, 429]);
    const other = await request(app).get('/').set('X-Forwarded-For', '2001:db8:abcd:1300::1');
    expect(other.status).toBe(200);
    await limiter.limiter.close();
  });

  it('ignores a spoofed X-Forwarded-For when trust proxy is off, and warns once', async () => {
    const logger = recordingLogger();
    const limiter = rateLimit({ name: uniqueName('spoof'), limit: 2, window: '1h', logger });
    const app = createAppWith('express5', {}, limiter);
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      statuses.push((await request(app).get('/').set('X-Forwarded-For', `10.0.0.${i}`)).status);
    }
    expect(statuses).toEqual([200, 200, 429, 429]);
    const warnings = logger.warn.mock.calls.map(call => String(call[0]));
    expect(warnings.filter(w => w.includes('X-Forwarded-For'))).toHaveLength(1);
    await limiter.limiter.close();
  });

  it("warns once that trust proxy 'true' lets clients pick their address", async () => {
    const logger = recordingLogger();
    const limiter = rateLimit({ name: uniqueName('trust'), limit: 5, window: '1h', logger });
    const app = createAppWith('express5', { trustProxy: true }, limiter);
    await request(app).get('/');
    await request(app).get('/');
    const warnings = logger.warn.mock.calls.map(call => String(call[0]));
    expect(warnings.filter(w => w.includes("'trust proxy' is true"))).toHaveLength(1);
    await limiter.limiter.close();
  });

  it('says nothing when trust proxy is set to a hop count', async () => {
    const logger = recordingLogger();
    const limiter = rateLimit({ name: uniqueName('hops'), limit: 5, window: '1h', logger });
    const app = createAppWith('express5', { trustProxy: 1 }, limiter);
    await request(app).get('/').set('X-Forwarded-For', '203.0.113.9');
    expect(logger.warn).not.toHaveBeenCalled();
    await limiter.limiter.close();
  });
});

describe('suspicious options', () => {
  it('warns once when fallbackLimit is above limit', async () => {
    const logger = recordingLogger();
    const limiter = new RateLimiter({
      name: uniqueName(),
      limit: 5,
      fallbackLimit: 300,
      window: '1m',
      logger,
    });
    expect(logger.warn).toHaveBeenCalledTimes(1);
    expect(String(logger.warn.mock.calls[0]?.[0])).toMatch(/fallbackLimit 300 above limit 5/);
    await limiter.close();
  });
});

describe('option fuzzing', () => {
  it('random options either build a limiter or throw RateLimitConfigError, never anything else', () => {
    const anything = fc.oneof(
      fc.anything(),
      fc.integer(),
      fc.double(),
      fc.string(),
      fc.constantFrom('1s', '15m', 'fixed-window', 'token-bucket', 'rl:', true, false),
    );
    const optionsArb = fc.record(
      {
        name: anything,
        limit: anything,
        window: anything,
        failClosed: anything,
        algorithm: anything,
        timeout: anything,
        fallbackLimit: anything,
        prefix: anything,
        breaker: anything,
        memory: anything,
        redisTime: anything,
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(optionsArb, options => {
        let limiter: RateLimiter | undefined;
        try {
          limiter = new RateLimiter({
            logger: recordingLogger(),
            ...(options as RateLimiterOptions),
          });
        } catch (error) {
          expect(isRateLimitConfigError(error)).toBe(true);
        }
        void limiter?.close();
      }),
      { numRuns: 500 },
    );
  });
});
