import type { Redis } from 'ioredis';
import request from 'supertest';
import type { Response } from 'supertest';
import { rateLimit, type AlgorithmName, type RateLimitMiddleware } from '../../lib/index.js';
import { createApp } from '../helpers/create-app.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { RedisProcess } from '../helpers/redis-process.js';
import { failFastClient, ready, recordingLogger, uniqueName } from '../helpers/redis.js';

/*
 * SPEC "Semantics": on a 429, X-RateLimit-Reset, RateLimit's t and
 * Retry-After agree, and a request sent at the announced time is admitted.
 * Limit 5 per 10 s; the 6th request comes at the start of an aligned window
 * (where a sliding window's reset used to say 10 s and Retry-After 12 s) and
 * 3.7 s into one (where rounding to whole seconds matters).
 */

const ALGORITHMS: readonly AlgorithmName[] = ['fixed-window', 'sliding-window', 'token-bucket'];
const WINDOW_START = 1_700_000_040_000; // a multiple of 10 s
const STARTS = [
  { label: 'at a window start', start: WINDOW_START },
  { label: '3.7 s into a window', start: WINDOW_START + 3_700 },
];

let redis: RedisProcess;
let client: Redis;
const created: RateLimitMiddleware[] = [];

beforeAll(async () => {
  redis = await RedisProcess.start();
  client = failFastClient(redis.port);
  await ready(client);
});

afterAll(async () => {
  await Promise.all(created.map(middleware => middleware.limiter.close()));
  client?.disconnect();
  await redis?.stop();
});

type Announced = { resetHeader: number; t: number; retryAfter: number };

function announced(res: Response): Announced {
  const t = /;t=(\d+)/.exec(String(res.headers['ratelimit']));
  return {
    resetHeader: Number(res.headers['x-ratelimit-reset']),
    t: Number(t?.[1]),
    retryAfter: Number(res.headers['retry-after']),
  };
}

describe.each(['memory', 'redis'] as const)('headers on a 429 (%s store)', store => {
  describe.each(ALGORITHMS)('%s', algorithm => {
    it.each(STARTS)(
      'agree, and a request at each announced time is admitted ($label)',
      async ({ start }) => {
        const clock = new ManualClock(start);
        const middleware = rateLimit({
          name: uniqueName('agree'),
          limit: 5,
          window: '10s',
          algorithm,
          clock,
          key: req => String(req.headers['x-client']),
          // Memory-only next to Redis-backed limiters in one process draws a
          // notice (ERR_RRL_MEMORY_ONLY), asserted in mistakes.test.ts.
          logger: recordingLogger(),
          ...(store === 'redis' ? { redis: client, redisTime: 'clock' as const } : {}),
        });
        created.push(middleware);
        const app = createApp('express5', middleware);
        const exhaust = async (who: string): Promise<Announced> => {
          clock.set(start);
          for (let i = 0; i < 5; i++) await request(app).get('/').set('x-client', who).expect(200);
          const limited = await request(app).get('/').set('x-client', who).expect(429);
          expect(limited.headers['x-ratelimit-source']).toBe(store);
          return announced(limited);
        };

        const first = await exhaust('reset-header');
        expect(first.t).toBe(first.retryAfter);
        // Whole epoch seconds against now + whole delta seconds: within rounding.
        expect(Math.abs(first.resetHeader * 1000 - (start + first.retryAfter * 1000))).toBeLessThan(
          1000,
        );

        // Each client waits for a different one of the three announcements.
        const times = {
          'reset-header': first.resetHeader * 1000,
          t: start + first.t * 1000,
          'retry-after': start + first.retryAfter * 1000,
        };
        for (const [who, at] of Object.entries(times)) {
          if (who !== 'reset-header') await exhaust(who);
          clock.set(at);
          const res = await request(app).get('/').set('x-client', who);
          expect({ who, status: res.status }).toEqual({ who, status: 200 });
        }
      },
    );
  });
});
