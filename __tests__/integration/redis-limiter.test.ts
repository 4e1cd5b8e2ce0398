import express from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import {
  RateLimiter,
  isRateLimitConfigError,
  rateLimit,
  type RateLimiterOptions,
} from '../../lib/index.js';
import { DECIDE_SCRIPTS } from '../../lib/stores/redis-scripts.js';

const DECIDE_SHA = DECIDE_SCRIPTS['fixed-window'].sha;
import { freePort } from '../helpers/free-port.js';
import { RedisProcess } from '../helpers/redis-process.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { failFastClient, ready, recordingLogger, uniqueName } from '../helpers/redis.js';

let redis: RedisProcess;

beforeAll(async () => {
  redis = await RedisProcess.start();
});

afterAll(async () => {
  await redis.stop();
});

describe.each([2, 3] as const)('RateLimiter on Redis (RESP%i)', protocol => {
  let client: Redis;
  const limiters: RateLimiter[] = [];
  const limiter = (options: Partial<ConstructorParameters<typeof RateLimiter>[0]> = {}) => {
    const created = new RateLimiter({
      name: uniqueName(),
      limit: 3,
      window: '1m',
      redis: client,
      ...options,
    });
    limiters.push(created);
    return created;
  };

  beforeAll(async () => {
    client = failFastClient(redis.port, protocol);
    await ready(client);
  });

  afterAll(async () => {
    await Promise.all(limiters.map(l => l.close()));
    client.disconnect();
  });

  it('admits exactly limit per window and reports redis as the source', async () => {
    const rl = limiter();
    const results = [];
    for (let i = 0; i < 5; i++) results.push(await rl.consume('alice'));
    expect(results.map(r => r.allowed)).toEqual([true, true, true, false, false]);
    expect(results.map(r => r.remaining)).toEqual([2, 1, 0, 0, 0]);
    expect(results.every(r => r.source === 'redis' && r.limit === 3 && r.key === 'alice')).toBe(
      true,
    );
    expect(results[3]?.retryAfterMs).toBeGreaterThan(59_000);
    expect(results[3]?.retryAfterMs).toBeLessThanOrEqual(60_000);
  });

  it('keeps keys apart and counts cost units', async () => {
    const rl = limiter({ limit: 5 });
    expect((await rl.consume('a', 4)).remaining).toBe(1);
    expect((await rl.consume('a', 2)).allowed).toBe(false);
    expect((await rl.consume('a', 1)).remaining).toBe(0);
    expect((await rl.consume('b', 5)).remaining).toBe(0);
  });

  it('get() reads without consuming, and is undefined for an unseen key', async () => {
    const rl = limiter();
    expect(await rl.get('nobody')).toBeUndefined();
    await rl.consume('k');
    const seen = await rl.get('k');
    expect(seen).toMatchObject({ remaining: 2, source: 'redis', allowed: true });
    expect((await rl.get('k'))?.remaining).toBe(2);
  });

  it('reset() restores the quota in Redis', async () => {
    const rl = limiter({ limit: 1 });
    await rl.consume('k');
    expect((await rl.consume('k')).allowed).toBe(false);
    await rl.reset('k');
    expect((await rl.consume('k')).allowed).toBe(true);
  });

  it('a consume sent while a reset is out waits for it, even when the reset needs a second round trip', async () => {
    // Found by the chaos checker (seed 45): after SCRIPT FLUSH the reset's
    // EVALSHA meets NOSCRIPT and is sent again as EVAL, while a consume
    // started after reset() overtook it and was answered (and its denial
    // cached) from the count before the reset.
    const rl = limiter({ limit: 1 });
    await rl.consume('k');
    expect((await rl.consume('k')).allowed).toBe(false);
    await client.script('FLUSH');
    // Loads the decision script again (EVAL after NOSCRIPT), not the reset's.
    expect((await rl.consume('other')).allowed).toBe(true);
    const [, raced] = await Promise.all([rl.reset('k'), rl.consume('k')]);
    expect(raced).toMatchObject({ allowed: true, source: 'redis' });
    expect((await rl.consume('k')).allowed).toBe(false);
  });

  it('stores counters under prefix and a hash tag of name and key', async () => {
    const name = uniqueName('tagged');
    const rl = limiter({ name, prefix: 'app:' });
    await rl.consume('user:1');
    expect(await client.exists(`app:{${name}|user:1}`)).toBe(1);
    const ttl = await client.pttl(`app:{${name}|user:1}`);
    expect(ttl).toBeGreaterThan(59_000);
  });

  it('treats glob and brace characters in keys as plain data', async () => {
    const rl = limiter({ limit: 1 });
    await rl.consume('*');
    await rl.consume('{x}');
    for (const other of ['a', 'x', '?', '[a]'])
      expect((await rl.consume(other)).allowed).toBe(true);
    expect((await rl.consume('*')).allowed).toBe(false);
    expect((await rl.consume('{x}')).allowed).toBe(false);
  });

  it('hashes keys over 200 bytes but reports the caller key', async () => {
    const name = uniqueName('long');
    const rl = limiter({ name });
    const key = 'k'.repeat(10_000);
    const result = await rl.consume(key);
    expect(result.key).toBe(key);
    const stored = await client.keys(`rl:{${name}|*`);
    expect(stored).toHaveLength(1);
    expect(Buffer.byteLength(stored[0] as string)).toBeLessThan(120);
  });

  it('decides with one EVALSHA round trip per call', async () => {
    const rl = limiter();
    await rl.consume('warm');
    const before = await redis.commandCount('evalsha');
    const evalBefore = await redis.commandCount('eval');
    for (let i = 0; i < 10; i++) await rl.consume(`k${i}`);
    expect((await redis.commandCount('evalsha')) - before).toBe(10);
    expect((await redis.commandCount('eval')) - evalBefore).toBe(0);
  });

  it('answers a client hammering its limit from the block cache, without Redis', async () => {
    const rl = limiter({ limit: 2 });
    await rl.consume('hammer');
    await rl.consume('hammer');
    const denied = await rl.consume('hammer');
    expect(denied).toMatchObject({ allowed: false, remaining: 0, source: 'redis' });
    const before = await redis.commandCount('evalsha');
    for (let i = 0; i < 20; i++) {
      const again = await rl.consume('hammer');
      expect(again).toMatchObject({ allowed: false, remaining: 0, source: 'redis' });
      expect(again.retryAfterMs).toBeLessThanOrEqual(denied.retryAfterMs);
    }
    expect((await redis.commandCount('evalsha')) - before).toBe(0);
    // reset() on this instance clears the cached denial as well.
    await rl.reset('hammer');
    expect(await rl.consume('hammer')).toMatchObject({ allowed: true, source: 'redis' });
  });

  it('reloads the script transparently after SCRIPT FLUSH', async () => {
    const rl = limiter({ limit: 2 });
    await rl.consume('k');
    await redis.command('SCRIPT', 'FLUSH');
    expect((await client.script('EXISTS', DECIDE_SHA)) as number[]).toEqual([0]);
    const after = await rl.consume('k');
    expect(after).toMatchObject({ source: 'redis', remaining: 0 });
    expect((await client.script('EXISTS', DECIDE_SHA)) as number[]).toEqual([1]);
  });

  it('takes time from Redis, so a skewed app clock changes nothing', async () => {
    const name = uniqueName('skew');
    const ahead = limiter({ name, limit: 2, clock: { now: () => Date.now() + 3_600_000 } });
    const behind = limiter({ name, limit: 2, clock: { now: () => Date.now() - 3_600_000 } });
    const first = await ahead.consume('k');
    const second = await behind.consume('k');
    expect((await ahead.consume('k')).allowed).toBe(false);
    expect(second.remaining).toBe(0);
    // resetAt is shifted onto each instance's own clock.
    expect(first.resetAt - (Date.now() + 3_600_000)).toBeGreaterThan(59_000);
    expect(second.resetAt - (Date.now() - 3_600_000)).toBeGreaterThan(59_000);
  });

  it('rejects a second limiter on the same client asking for other breaker options', () => {
    limiter({ breaker: { threshold: 5, halfOpenAfter: 30_000 } });
    let error: unknown;
    try {
      limiter({ breaker: { threshold: 2 } });
    } catch (caught) {
      error = caught;
    }
    expect(isRateLimitConfigError(error)).toBe(true);
    expect(String(error)).toMatch(/breaker/);
  });
});

describe('redis option', () => {
  it('builds a fail-fast client from a redis:// URL', async () => {
    const logger = recordingLogger();
    const rl = new RateLimiter({
      name: uniqueName(),
      limit: 2,
      window: '1m',
      redis: redis.url,
      logger,
    });
    try {
      let result = await rl.consume('k');
      // The client may still be connecting: that is an outage like any other.
      for (let i = 0; i < 50 && result.source !== 'redis'; i++) {
        await new Promise(resolve => setTimeout(resolve, 20));
        await rl.reset('k').catch(() => undefined);
        result = await rl.consume('k');
      }
      expect(result.source).toBe('redis');
      // At most the one line for the connection not being up yet.
      for (const [line] of logger.warn.mock.calls) {
        expect(String(line)).toMatch(/cannot decide in Redis \(Redis is not connected\)/);
      }
    } finally {
      await rl.close();
    }
  });

  it('warns once about a client whose offline queue is on', async () => {
    const client = new Redis({ port: redis.port, host: '127.0.0.1', lazyConnect: true });
    const logger = recordingLogger();
    const a = new RateLimiter({
      name: uniqueName(),
      limit: 1,
      window: 1000,
      redis: client,
      logger,
    });
    const b = new RateLimiter({
      name: uniqueName(),
      limit: 1,
      window: 1000,
      redis: client,
      logger,
    });
    expect(logger.warn).toHaveBeenCalledTimes(1);
    expect(String(logger.warn.mock.calls[0]?.[0])).toMatch(/enableOfflineQueue/);
    await Promise.all([a.close(), b.close()]);
    client.disconnect();
  });

  it('decides from memory at once when Redis is unreachable at start-up', async () => {
    const port = await freePort();
    const logger = recordingLogger();
    const rl = new RateLimiter({
      name: uniqueName(),
      limit: 2,
      window: '1m',
      redis: `redis://127.0.0.1:${port}`,
      logger,
    });
    try {
      const started = Date.now();
      const results = [];
      for (let i = 0; i < 4; i++) results.push(await rl.consume('k'));
      expect(Date.now() - started).toBeLessThan(400);
      expect(results.map(r => [r.source, r.allowed])).toEqual([
        ['memory', true],
        ['memory', true],
        ['memory', false],
        ['memory', false],
      ]);
      expect(logger.warn).toHaveBeenCalledTimes(1);
    } finally {
      await rl.close();
    }
  });
});

describe('concurrency', () => {
  it('two app instances with their own clients admit exactly the limit under 200 concurrent requests', async () => {
    const name = uniqueName('tenant');
    const clients = [failFastClient(redis.port), failFastClient(redis.port, 2)];
    await Promise.all(clients.map(ready));
    const apps = clients.map(client => {
      const app = express();
      app.post(
        '/tenants',
        // A generous timeout: the point is atomicity, not latency on a busy machine.
        rateLimit({
          name,
          limit: 5,
          window: '1h',
          redis: client,
          key: () => 'acme',
          timeout: 1000,
        }),
        (_req, res) => {
          res.status(201).end();
        },
      );
      return app;
    });
    try {
      const responses = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          request(apps[i % 2] as express.Express).post('/tenants'),
        ),
      );
      const statuses = responses.map(r => r.status);
      expect(statuses.filter(s => s === 201)).toHaveLength(5);
      expect(statuses.filter(s => s === 429)).toHaveLength(195);
      expect(responses.every(r => r.headers['x-ratelimit-source'] === 'redis')).toBe(true);
    } finally {
      clients.forEach(c => c.disconnect());
    }
  });

  it('RateLimiter instances on separate clients admit exactly the limit', async () => {
    const name = uniqueName('direct');
    const clients = [failFastClient(redis.port), failFastClient(redis.port)];
    await Promise.all(clients.map(ready));
    const limiters = clients.map(
      client => new RateLimiter({ name, limit: 5, window: '1h', redis: client, timeout: 1000 }),
    );
    try {
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => (limiters[i % 2] as RateLimiter).consume('shared')),
      );
      expect(results.filter(r => r.allowed)).toHaveLength(5);
      expect(results.every(r => r.source === 'redis')).toBe(true);
    } finally {
      await Promise.all(limiters.map(l => l.close()));
      clients.forEach(c => c.disconnect());
    }
  });
});

describe('RateLimiter block cache bound', () => {
  let boundClient: Redis;

  beforeAll(async () => {
    boundClient = failFastClient(redis.port);
    await ready(boundClient);
  });

  afterAll(() => {
    boundClient.disconnect();
  });

  function clocked(
    name: string,
    clock: ManualClock,
    options: Partial<RateLimiterOptions> = {},
  ): RateLimiter {
    return new RateLimiter({
      name,
      limit: 1,
      window: '1h',
      redis: boundClient,
      clock,
      logger: recordingLogger(),
      ...options,
    });
  }

  it('replays a denial for at most 1 s, so a key Redis lost is admitted again within it', async () => {
    const clock = new ManualClock(Date.now());
    // Fail-open: this instance keeps no copy of the count that would restore
    // the lost key; the bound alone must end the replayed denial.
    const rl = clocked(uniqueName('lost'), clock, { failClosed: false });
    try {
      await rl.consume('alice');
      expect(await rl.consume('alice')).toMatchObject({ allowed: false, source: 'redis' });
      await boundClient.flushdb();
      clock.tick(999);
      // Still the replayed denial: the bound, not the 1 h wait, ends it.
      expect(await rl.consume('alice')).toMatchObject({ allowed: false, source: 'redis' });
      clock.tick(1);
      expect(await rl.consume('alice')).toMatchObject({ allowed: true, source: 'redis' });
    } finally {
      await rl.close();
    }
  });

  it('sees a reset made through another limiter of the same name within 1 s', async () => {
    const clock = new ManualClock(Date.now());
    const name = uniqueName('admin-unblock');
    const [app, admin] = [clocked(name, clock), clocked(name, clock)];
    try {
      await app.consume('alice');
      expect(await app.consume('alice')).toMatchObject({ allowed: false, source: 'redis' });
      await admin.reset('alice');
      clock.tick(1000);
      expect(await app.consume('alice')).toMatchObject({ allowed: true, source: 'redis' });
    } finally {
      await Promise.all([app.close(), admin.close()]);
    }
  });
});

describe('RateLimiter before its client has connected', () => {
  it('reset() rejects saying the client is not connected, not that the breaker is open', async () => {
    const client = failFastClient(await freePort());
    const limiter = new RateLimiter({
      name: uniqueName('early-reset'),
      limit: 3,
      window: '1m',
      redis: client,
      logger: recordingLogger(),
    });
    try {
      expect(limiter.breakerState).toBe('closed');
      await expect(limiter.reset('k')).rejects.toThrow(/the client is not connected/);
    } finally {
      await limiter.close();
      client.disconnect();
    }
  });
});
