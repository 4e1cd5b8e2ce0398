import express from 'express';
import { circuitBreaker, ConsecutiveBreaker, handleAll } from 'cockatiel';
import type { Redis } from 'ioredis';
import request from 'supertest';
import {
  MemoryStore,
  RateLimitConfigError,
  RateLimiter,
  rateLimit,
  type RateLimitMiddleware,
  type RateLimiterOptions,
} from '../../lib/index.js';
import { ALGORITHMS } from '../helpers/conformance.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { RedisProcess } from '../helpers/redis-process.js';
import { failFastClient, ready, recordingLogger, uniqueName } from '../helpers/redis.js';

/*
 * Several quotas on one route (issue 13): "10 per second and 1000 per day"
 * decided as one step. A request is admitted only if every policy admits,
 * and one any policy denies consumes in none, in memory and in Redis (one
 * script call over keys of one hash tag). The outage, refund and random-run
 * side is in continuity.property.test.ts, which plays policies too.
 */

let redis: RedisProcess;
let client: Redis;
let resp2: Redis;
let admin: Redis;

beforeAll(async () => {
  redis = await RedisProcess.start();
  client = failFastClient(redis.port);
  resp2 = failFastClient(redis.port, 2);
  admin = failFastClient(redis.port);
  await Promise.all([ready(client), ready(resp2), ready(admin)]);
});

afterAll(async () => {
  for (const c of [client, resp2, admin]) c.disconnect();
  await redis.stop();
});

const limiters: RateLimiter[] = [];
const memories: MemoryStore[] = [];
afterEach(async () => {
  await Promise.all(limiters.splice(0).map(limiter => limiter.close()));
  for (const memory of memories.splice(0)) memory.close();
});

function limiter(options: Partial<RateLimiterOptions> & Pick<RateLimiterOptions, 'policies'>) {
  const clock = options.clock ?? new ManualClock();
  const memory = new MemoryStore({ clock });
  memories.push(memory);
  const made = new RateLimiter({ name: uniqueName('policies'), clock, memory, ...options });
  limiters.push(made);
  return made;
}

function track(middleware: RateLimitMiddleware): RateLimitMiddleware {
  limiters.push(middleware.limiter);
  return middleware;
}

const BURST_AND_DAILY = [
  { name: 'burst', limit: 3, window: '1m' },
  { name: 'daily', limit: 5, window: '1d' },
] as const;

describe('policies: configuration', () => {
  it.each([
    ['none', [], /policies must be an array of 1 to 4/],
    [
      'five',
      Array.from({ length: 5 }, (_, i) => ({ name: `p${i}`, limit: 1, window: 1000 })),
      /policies must be an array of 1 to 4/,
    ],
    [
      'a name twice',
      [
        { name: 'a', limit: 1, window: 1000 },
        { name: 'a', limit: 2, window: 2000 },
      ],
      /policy names must be unique: 'a'/,
    ],
    ['a bad limit', [{ name: 'a', limit: 0, window: 1000 }], /policies\[0\]\.limit must be/],
    ['a bad window', [{ name: 'a', limit: 1, window: 'soon' }], /policies\[0\]\.window/],
    ['a bad name', [{ name: 'a|b', limit: 1, window: 1000 }], /policies\[0\]\.name must be/],
    ['an unknown field', [{ name: 'a', limit: 1, window: 1000, max: 3 }], /unknown option 'max'/],
    ['not an object', [3], /policies\[0\] must be an object/],
  ])('rejects %s', (_case, policies, message) => {
    expect(() => new RateLimiter({ policies: policies as never })).toThrow(message);
    expect(() => new RateLimiter({ policies: policies as never })).toThrow(RateLimitConfigError);
  });

  it('takes limit and window, or policies, not both', () => {
    expect(
      () => new RateLimiter({ limit: 5, window: '1m', policies: [...BURST_AND_DAILY] }),
    ).toThrow(/either limit and window, or policies/);
    expect(() => new RateLimiter({} as RateLimiterOptions)).toThrow(/limit must be a positive/);
  });

  it('takes a number fallbackLimit per policy, not for the limiter', () => {
    expect(() => new RateLimiter({ policies: [...BURST_AND_DAILY], fallbackLimit: 2 })).toThrow(
      /give a number to each policy as its own fallbackLimit/,
    );
    const made = limiter({
      policies: [{ name: 'burst', limit: 3, window: '1m', fallbackLimit: 1 }, BURST_AND_DAILY[1]],
    });
    expect(made.policies.map(p => p.name)).toEqual(['burst', 'daily']);
  });

  it('rejects a cost above any policy limit, and a per-call limit on the core', async () => {
    expect(() =>
      rateLimit({ policies: [...BURST_AND_DAILY], cost: 4, name: uniqueName() }),
    ).toThrow('cost (4) must not exceed limit (3)');
    const made = limiter({ policies: [...BURST_AND_DAILY] });
    await expect(made.consume('k', 4)).rejects.toThrow(/from 1 to the limit \(3\)/);
    await expect(made.consume('k', 1, { limit: 2 })).rejects.toThrow(/belongs to one policy/);
  });

  it('needs a name when a policy limit is a function', () => {
    expect(() =>
      rateLimit({ policies: [{ name: 'burst', limit: () => 3, window: '1m' }] }),
    ).toThrow(/name is required/);
  });
});

describe.each(ALGORITHMS)('policies decided together (%s)', algorithm => {
  describe.each(['memory', 'redis', 'redis RESP2'] as const)('%s', store => {
    const on = () =>
      store === 'memory'
        ? {}
        : { redis: store === 'redis' ? client : resp2, redisTime: 'clock' as const };

    it('admits only while every policy admits; a request one denies consumes in none', async () => {
      const clock = new ManualClock();
      const made = limiter({ policies: [...BURST_AND_DAILY], algorithm, clock, ...on() });
      const source = store === 'memory' ? 'memory' : 'redis';
      // Three pass (burst binds: least remaining), the fourth is burst's.
      for (let i = 1; i <= 3; i++) {
        const result = await made.consume('k');
        expect(result).toMatchObject({ allowed: true, source, limit: 3 });
        expect(result.policies?.map(p => p.name)).toEqual(['burst', 'daily']);
        expect(result.policies?.[1]).toMatchObject({ allowed: true, limit: 5 });
      }
      const denied = await made.consume('k');
      expect(denied).toMatchObject({ allowed: false, limit: 3, remaining: 0 });
      expect(denied.retryAfterMs).toBeGreaterThan(0);
      expect(denied.policies?.[0]).toMatchObject({ name: 'burst', allowed: false });
      // Daily still admits, with 2 left: the denied request took nothing from it.
      expect(denied.policies?.[1]).toMatchObject({ name: 'daily', allowed: true, remaining: 2 });
      // Past the burst window, daily binds: 2 more, then daily denies.
      clock.tick(60_000 * 2);
      expect((await made.consume('k')).allowed).toBe(true);
      const last = await made.consume('k');
      expect(last).toMatchObject({ allowed: true, limit: 5, remaining: 0 });
      const overDaily = await made.consume('k');
      expect(overDaily).toMatchObject({ allowed: false, limit: 5 });
      expect(overDaily.policies?.[1]?.allowed).toBe(false);
      // Burst still has room, and keeps it: the denied request took none.
      expect(overDaily.policies?.[0]).toMatchObject({ allowed: true });
      const burstLeft = overDaily.policies?.[0]?.remaining ?? -1;
      expect((await made.consume('k')).policies?.[0]?.remaining).toBe(burstLeft);
    });

    it('refund gives units back in every policy', async () => {
      const made = limiter({ policies: [...BURST_AND_DAILY], algorithm, ...on() });
      await made.consume('k', 2);
      const before = await made.consume('k');
      await made.refund('k', 2);
      const after = await made.consume('k');
      expect(after.policies?.[0]?.remaining).toBe(before.policies![0]!.remaining + 1);
      expect(after.policies?.[1]?.remaining).toBe(before.policies![1]!.remaining + 1);
    });
  });
});

describe('policies on Redis', () => {
  it('decides every policy in one script call, over keys of one hash tag', async () => {
    const name = uniqueName('one-call');
    const made = limiter({
      name,
      policies: [
        ...BURST_AND_DAILY,
        { name: 'hourly', limit: 4, window: '1h' },
        { name: 'weekly', limit: 9, window: '7d' },
      ],
      redis: client,
    });
    await made.consume('warm-up');
    const calls = async () => {
      const stats = await admin.info('commandstats');
      return Number(/cmdstat_evalsha:calls=(\d+)/.exec(stats)?.[1] ?? 0);
    };
    const before = await calls();
    for (let i = 0; i < 3; i++) expect((await made.consume('alice')).source).toBe('redis');
    expect((await calls()) - before).toBe(3);
    const keys = (await admin.keys(`rl:{${name}|alice}*`)).sort();
    expect(keys).toEqual(
      ['burst', 'daily', 'hourly', 'weekly'].map(p => `rl:{${name}|alice}|${p}`).sort(),
    );
    // A limiter without policies keeps its one key as before.
    const single = limiter({ limit: 3, window: '1m', redis: client } as never);
    await single.consume('bob');
    expect(await admin.keys(`rl:{${single.name}|bob}*`)).toEqual([`rl:{${single.name}|bob}`]);
  });

  it('two instances, 200 concurrent requests: exactly what burst and daily allow', async () => {
    const clock = new ManualClock();
    const name = uniqueName('fleet');
    const second = failFastClient(redis.port);
    await ready(second);
    try {
      const policies = [
        { name: 'burst', limit: 20, window: '1m' },
        { name: 'daily', limit: 50, window: '1d' },
      ];
      const a = limiter({
        name,
        policies,
        clock,
        redis: client,
        redisTime: 'clock',
        timeout: 2000,
      });
      const b = limiter({
        name,
        policies,
        clock,
        redis: second,
        redisTime: 'clock',
        timeout: 2000,
      });
      const round = async () => {
        const results = await Promise.all(
          Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).consume('tenant')),
        );
        expect(results.every(r => r.source === 'redis')).toBe(true);
        return results.filter(r => r.allowed).length;
      };
      expect(await round()).toBe(20);
      clock.tick(60_000);
      expect(await round()).toBe(20);
      clock.tick(60_000);
      // Daily binds now: 10 of its 50 left.
      expect(await round()).toBe(10);
      const counts = await Promise.all(
        ['burst', 'daily'].map(p => admin.hget(`rl:{${name}|tenant}|${p}`, 'a')),
      );
      expect(counts).toEqual(['10', '50']);
    } finally {
      second.disconnect();
    }
  });

  it('a hammered key is denied from the block cache of the policy that denied it', async () => {
    const made = limiter({
      policies: [
        { name: 'burst', limit: 1, window: '1m' },
        { name: 'daily', limit: 100, window: '1d' },
      ],
      redis: client,
    });
    await made.consume('k');
    const first = await made.consume('k');
    expect(first.allowed).toBe(false);
    const stats = async () =>
      Number(/cmdstat_evalsha:calls=(\d+)/.exec(await admin.info('commandstats'))?.[1] ?? 0);
    const before = await stats();
    const replayed = await made.consume('k');
    expect(await stats()).toBe(before);
    expect(replayed).toMatchObject({ allowed: false, source: 'redis', limit: 1 });
    expect(replayed.policies?.map(p => [p.name, p.allowed])).toEqual([
      ['burst', false],
      ['daily', true],
    ]);
  });

  it('reset forgets the key in every policy', async () => {
    const made = limiter({ policies: [...BURST_AND_DAILY], redis: client });
    for (let i = 0; i < 3; i++) await made.consume('k');
    expect((await made.consume('k')).allowed).toBe(false);
    await made.reset('k');
    const after = await made.consume('k');
    expect(after.policies?.map(p => p.remaining)).toEqual([2, 4]);
  });

  it('an outage in the middle: memory continues each policy from Redis, and hands back', async () => {
    const clock = new ManualClock();
    const logger = recordingLogger();
    // A breaker of our own to isolate: an outage without a network fault's timing.
    const breaker = circuitBreaker(handleAll, {
      halfOpenAfter: 1000,
      breaker: new ConsecutiveBreaker(1000),
    });
    const made = limiter({
      policies: [...BURST_AND_DAILY],
      clock,
      redis: client,
      redisTime: 'clock',
      logger,
      breaker,
    });
    expect((await made.consume('k')).source).toBe('redis');
    expect((await made.consume('k')).source).toBe('redis');
    const isolation = breaker.isolate();
    // Memory knows burst has 1 left of 3, daily 3 of 5.
    const during = await made.consume('k');
    expect(during).toMatchObject({ allowed: true, source: 'memory' });
    expect(during.policies?.map(p => p.remaining)).toEqual([0, 2]);
    expect((await made.consume('k')).allowed).toBe(false);
    expect(logger.warn).toHaveBeenCalledWith(expect.stringContaining('limiting from memory'));
    expect(made.pendingReconciliation).toBe(2);
    // Redis back: the outage hit reaches each policy's counter.
    isolation.dispose();
    await made.reconcile();
    expect(made.pendingReconciliation).toBe(0);
    const name = made.name;
    expect(await admin.hget(`rl:{${name}|k}|burst`, 'a')).toBe('3');
    expect(await admin.hget(`rl:{${name}|k}|daily`, 'a')).toBe('3');
    const back = await made.consume('k');
    expect(back).toMatchObject({ allowed: false, source: 'redis' });
    expect(back.policies?.[1]).toMatchObject({ allowed: true, remaining: 2 });
  });
});

describe('policies over HTTP', () => {
  it('RateLimit-Policy and RateLimit list every policy; the rest is the binding one', async () => {
    const app = express();
    app.use(
      track(
        rateLimit({
          name: uniqueName('http'),
          policies: [
            { name: 'burst', limit: 2, window: '10s' },
            { name: 'daily', limit: 100, window: '1d' },
          ],
          key: () => 'k',
          memory: new MemoryStore(),
        }),
      ),
    );
    app.get('/', (_req, res) => res.send('ok'));
    const first = await request(app).get('/');
    expect(first.status).toBe(200);
    expect(first.headers['ratelimit-policy']).toBe('"burst";q=2;w=10, "daily";q=100;w=86400');
    expect(first.headers['ratelimit']).toMatch(/^"burst";r=1;t=\d+, "daily";r=99;t=\d+$/);
    expect(first.headers['x-ratelimit-limit']).toBe('2');
    expect(first.headers['x-ratelimit-remaining']).toBe('1');
    await request(app).get('/');
    const denied = await request(app).get('/');
    expect(denied.status).toBe(429);
    expect(Number(denied.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(denied.headers['retry-after'])).toBeLessThanOrEqual(10);
    expect(denied.headers['ratelimit']).toMatch(/"daily";r=98;/);
    // The problem body names the policy that denied, as RateLimit-Policy does.
    expect(denied.body).toMatchObject({ status: 429, 'violated-policies': ['burst'] });
  });

  it('a policy limit may be an async function of the request (plans)', async () => {
    const plans: Record<string, number> = { free: 1, pro: 3 };
    const app = express();
    app.use(
      track(
        rateLimit({
          name: uniqueName('plans'),
          policies: [
            {
              name: 'burst',
              limit: async req => plans[req.header('x-plan') ?? 'free'] ?? 1,
              window: '1m',
            },
            { name: 'daily', limit: 10, window: '1d' },
          ],
          key: req => req.header('x-plan') ?? 'free',
          redis: client,
        }),
      ),
    );
    app.get('/', (req, res) => res.json(req.rateLimit?.policies));
    const statuses = async (plan: string) => {
      const out: number[] = [];
      for (let i = 0; i < 4; i++)
        out.push((await request(app).get('/').set('x-plan', plan)).status);
      return out;
    };
    expect(await statuses('free')).toEqual([200, 429, 429, 429]);
    expect(await statuses('pro')).toEqual([200, 200, 200, 429]);
    const body = (await request(app).get('/').set('x-plan', 'other')).body as unknown;
    expect(body).toEqual([
      expect.objectContaining({ name: 'burst', limit: 1, allowed: true }),
      expect.objectContaining({ name: 'daily', limit: 10, allowed: true }),
    ]);
  });
});
