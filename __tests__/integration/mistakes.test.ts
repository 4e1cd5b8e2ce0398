import type { Redis } from 'ioredis';
import request from 'supertest';
import { rateLimit, type RateLimitMiddleware, type RateLimitOptions } from '../../lib/index.js';
import type * as Package from '../../lib/index.js';
import { APP_KINDS, createApp, createAppWith } from '../helpers/create-app.js';
import { RedisProcess } from '../helpers/redis-process.js';
import { failFastClient, ready, recordingLogger, uniqueName } from '../helpers/redis.js';

// Mistakes that only show with requests or Redis. Each is caught once, with
// the code README "Error codes" documents.

type Logger = ReturnType<typeof recordingLogger>;
const created: RateLimitMiddleware[] = [];

function limiter(options: Omit<RateLimitOptions, 'logger'>, logger: Logger): RateLimitMiddleware {
  const middleware = rateLimit({ name: uniqueName('mistake'), ...options, logger });
  created.push(middleware);
  return middleware;
}

afterAll(async () => {
  await Promise.all(created.map(middleware => middleware.limiter.close()));
});

const coded = (logger: Logger, level: 'warn' | 'info', code: string): string[] =>
  logger[level].mock.calls
    .map(([message]) => String(message))
    .filter(message => message.includes(`[${code}]`));

describe.each(APP_KINDS)('under %s', kind => {
  it('counts a request once when the same limiter is mounted twice (ERR_RRL_DOUBLE_COUNT)', async () => {
    const logger = recordingLogger();
    const limit = limiter({ limit: 4, window: '1m' }, logger);
    const app = createApp(kind, limit, limit);
    for (const remaining of ['3', '2', '1', '0']) {
      const res = await request(app).get('/').expect(200);
      expect(res.headers['x-ratelimit-remaining']).toBe(remaining);
    }
    await request(app).get('/').expect(429);
    expect(coded(logger, 'warn', 'ERR_RRL_DOUBLE_COUNT')).toHaveLength(1);
    expect(logger.warn).toHaveBeenCalledTimes(1);
  });

  it('still counts a request once in each of two different limiters', async () => {
    const logger = recordingLogger();
    const perMinute = limiter({ limit: 4, window: '1m' }, logger);
    const perHour = limiter({ limit: 10, window: '1h' }, logger);
    const app = createApp(kind, perMinute, perHour);
    await request(app).get('/').expect(200);
    await request(app).get('/').expect(200);
    expect(await perMinute.limiter.get('::ffff:127.0.0.1')).toBeUndefined(); // keyed as IPv4
    expect((await perMinute.limiter.get('127.0.0.1'))?.remaining).toBe(2);
    expect((await perHour.limiter.get('127.0.0.1'))?.remaining).toBe(8);
    expect(logger.warn).not.toHaveBeenCalled();
  });

  it('skips on a truthy skip() result such as 1', async () => {
    const logger = recordingLogger();
    const skip = (() => 1) as unknown as () => boolean; // what a JavaScript user may write
    const app = createApp(kind, limiter({ limit: 1, window: '1m', skip }, logger));
    for (let i = 0; i < 3; i++) {
      const res = await request(app).get('/').expect(200);
      expect(res.headers['x-ratelimit-remaining']).toBeUndefined();
    }
  });
});

describe.each(['express5', 'express4'] as const)('the default key under %s', kind => {
  it('keys "203.0.113.7:50000" from X-Forwarded-For as the address, so source ports share a quota', async () => {
    const logger = recordingLogger();
    const app = createAppWith(kind, { trustProxy: 1 }, limiter({ limit: 3, window: '1m' }, logger));
    const statuses: number[] = [];
    for (let port = 50_000; port < 50_006; port++) {
      const res = await request(app).get('/').set('X-Forwarded-For', `203.0.113.7:${port}`);
      statuses.push(res.status);
      if (res.status === 200) expect(res.body.rateLimit.key).toBe('203.0.113.7');
    }
    expect(statuses).toEqual([200, 200, 200, 429, 429, 429]);
    expect(logger.warn).not.toHaveBeenCalled();
  });

  it('keys "[2001:db8::1]:443" as its /56 prefix', async () => {
    const logger = recordingLogger();
    const app = createAppWith(kind, { trustProxy: 1 }, limiter({ limit: 1, window: '1m' }, logger));
    const first = await request(app).get('/').set('X-Forwarded-For', '[2001:db8::1]:443');
    expect(first.body.rateLimit.key).toBe('2001:db8::/56');
    await request(app).get('/').set('X-Forwarded-For', '[2001:db8::2]:444').expect(429);
    expect(logger.warn).not.toHaveBeenCalled();
  });

  it('warns once when req.ip holds no IP address (ERR_RRL_KEY_NOT_IP)', async () => {
    const logger = recordingLogger();
    const app = createAppWith(kind, { trustProxy: 1 }, limiter({ limit: 5, window: '1m' }, logger));
    await request(app).get('/').set('X-Forwarded-For', 'unknown').expect(200);
    await request(app).get('/').set('X-Forwarded-For', 'not-an-ip').expect(200);
    const warnings = coded(logger, 'warn', 'ERR_RRL_KEY_NOT_IP');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('"unknown"');
    expect(logger.warn).toHaveBeenCalledTimes(1);
  });
});

describe('a memory-only limiter next to Redis-backed ones (ERR_RRL_MEMORY_ONLY)', () => {
  let redis: RedisProcess;
  let client: Redis;

  beforeAll(async () => {
    redis = await RedisProcess.start();
    client = failFastClient(redis.port);
    await ready(client);
  });

  afterAll(async () => {
    client?.disconnect();
    await redis?.stop();
  });

  it('is noted once per process, with its name', async () => {
    // A fresh copy of the package: the notice is once per process.
    let fresh!: typeof Package;
    jest.isolateModules(() => {
      fresh = jest.requireActual('../../lib/index.js');
    });
    const logger = recordingLogger();
    const limiters = [
      new fresh.RateLimiter({ name: 'with-redis', limit: 5, window: '1m', redis: client, logger }),
      new fresh.RateLimiter({ name: 'forgot-redis', limit: 5, window: '1m', logger }),
      new fresh.RateLimiter({ name: 'forgot-again', limit: 5, window: '1m', logger }),
      new fresh.RateLimiter({
        name: 'with-redis-2',
        limit: 5,
        window: '1m',
        redis: client,
        logger,
      }),
    ];
    try {
      const notices = coded(logger, 'info', 'ERR_RRL_MEMORY_ONLY');
      expect(notices).toHaveLength(1);
      expect(notices[0]).toContain("'forgot-redis'");
      expect(logger.warn).not.toHaveBeenCalled();
    } finally {
      await Promise.all(limiters.map(l => l.close()));
    }
  });

  it('is not noted when every limiter is memory-only', async () => {
    let fresh!: typeof Package;
    jest.isolateModules(() => {
      fresh = jest.requireActual('../../lib/index.js');
    });
    const logger = recordingLogger();
    const limiters = [
      new fresh.RateLimiter({ name: 'memory-a', limit: 5, window: '1m', logger }),
      new fresh.RateLimiter({ name: 'memory-b', limit: 5, window: '1m', logger }),
    ];
    await Promise.all(limiters.map(l => l.close()));
    expect(logger.info).not.toHaveBeenCalled();
  });
});
