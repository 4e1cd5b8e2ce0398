import express from 'express';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { RateLimiter, rateLimit } from '../../lib/index.js';
import {
  REGISTRY_REFRESH_MS,
  findInstanceRegistry,
  registryKey,
  type InstanceRegistry,
} from '../../lib/instance-registry.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { RedisProcess } from '../helpers/redis-process.js';
import {
  eventually,
  failFastClient,
  ready,
  recordingLogger,
  uniqueName,
} from '../helpers/redis.js';

const HORIZON_MS = 2000;

describe('InstanceRegistry (fallbackLimit: share)', () => {
  let redis: RedisProcess;
  const clients: Redis[] = [];
  const limiters: RateLimiter[] = [];

  beforeAll(async () => {
    redis = await RedisProcess.start();
  });

  afterEach(async () => {
    await Promise.all(limiters.splice(0).map(l => l.close()));
    for (const client of clients.splice(0)) client.disconnect();
  });

  afterAll(async () => {
    await redis.stop();
  });

  async function client(): Promise<Redis> {
    const c = failFastClient(redis.port);
    await ready(c);
    clients.push(c);
    return c;
  }

  /** One instance: its own client and a 'share' limiter on it. */
  async function instance(
    prefix: string,
    extra: Partial<ConstructorParameters<typeof RateLimiter>[0]> = {},
  ): Promise<{ client: Redis; limiter: RateLimiter; registry: InstanceRegistry }> {
    const c = await client();
    const limiter = new RateLimiter({
      name: uniqueName('registry'),
      limit: 30,
      window: '1h',
      redis: c,
      fallbackLimit: 'share',
      instanceHorizon: HORIZON_MS,
      prefix,
      logger: recordingLogger(),
      ...extra,
    });
    limiters.push(limiter);
    const registry = findInstanceRegistry(c, prefix, HORIZON_MS);
    if (!registry) throw new Error('no registry');
    return { client: c, limiter, registry };
  }

  it('drops an instance that stops refreshing once the horizon has passed (injected clock)', async () => {
    const prefix = `${uniqueName('p')}:`;
    const clock = new ManualClock();
    const fleet = [
      await instance(prefix, { clock, redisTime: 'clock' }),
      await instance(prefix, { clock, redisTime: 'clock' }),
      await instance(prefix, { clock, redisTime: 'clock' }),
    ];
    for (const { registry } of fleet) await registry.refresh();
    await fleet[0]?.registry.refresh();
    expect(fleet[0]?.limiter.liveInstances).toBe(3);
    expect(fleet[0]?.limiter.fallbackLimit).toBe(10);

    // The third instance dies without saying goodbye (no close(): a crash).
    fleet[2]?.client.disconnect();
    clock.tick(HORIZON_MS);
    await fleet[1]?.registry.refresh();
    await fleet[0]?.registry.refresh();
    expect(fleet[0]?.limiter.liveInstances).toBe(3); // seen exactly one horizon ago: still live

    clock.tick(1);
    await fleet[1]?.registry.refresh();
    await fleet[0]?.registry.refresh();
    expect(fleet[0]?.limiter.liveInstances).toBe(2);
    expect(fleet[0]?.limiter.fallbackLimit).toBe(15);
    expect(await redis.command('ZCARD', registryKey(prefix, HORIZON_MS))).toBe('2');
  });

  it('drops a silent instance on Redis time, refreshed by its own timer', async () => {
    const prefix = `${uniqueName('p')}:`;
    const a = await instance(prefix);
    const b = await instance(prefix);
    await eventually(() => a.limiter.liveInstances === 2, 3 * REGISTRY_REFRESH_MS + 1000);
    b.client.disconnect();
    const silentSince = Date.now();
    await eventually(() => a.limiter.liveInstances === 1, HORIZON_MS + 3 * REGISTRY_REFRESH_MS);
    // Not before the horizon (a refresh may lag the silence by one period).
    expect(Date.now() - silentSince).toBeGreaterThanOrEqual(HORIZON_MS - REGISTRY_REFRESH_MS);
  });

  it('leaves the set at once on close()', async () => {
    const prefix = `${uniqueName('p')}:`;
    const a = await instance(prefix);
    const b = await instance(prefix);
    await b.registry.refresh();
    await a.registry.refresh();
    expect(a.limiter.liveInstances).toBe(2);
    await b.limiter.close();
    // Well inside the horizon (2 s since b's last refresh): only the goodbye removes it.
    const key = registryKey(prefix, HORIZON_MS);
    await eventually(async () => (await redis.command('ZCARD', key)) === '1', 500);
    await a.registry.refresh();
    expect(a.limiter.liveInstances).toBe(1);
  });

  it('leaves the set on close() with a URL client too, before the client goes', async () => {
    // Found in review: the removal was sent without waiting, and the URL
    // client, disconnected right after, dropped it unsent.
    const prefix = `${uniqueName('p')}:`;
    const limiter = new RateLimiter({
      name: uniqueName('registry-url'),
      limit: 30,
      window: '1h',
      redis: `redis://127.0.0.1:${redis.port}`,
      fallbackLimit: 'share',
      instanceHorizon: HORIZON_MS,
      prefix,
      logger: recordingLogger(),
    });
    const key = registryKey(prefix, HORIZON_MS);
    await eventually(async () => (await redis.command('ZCARD', key)) === '1', 3000);
    await limiter.close();
    expect(await redis.command('ZCARD', key)).toBe('0');
  });

  it('refreshes at most once a second and never on the decision path', async () => {
    const prefix = `${uniqueName('p')}:`;
    const { limiter } = await instance(prefix, { limit: 1_000_000 });
    const zaddBefore = await redis.commandCount('zadd');
    const started = Date.now();
    for (let i = 0; i < 300; i++) await limiter.consume(`k${i % 7}`);
    const elapsed = Date.now() - started;
    const zadds = (await redis.commandCount('zadd')) - zaddBefore;
    expect(zadds).toBeLessThanOrEqual(Math.ceil(elapsed / REGISTRY_REFRESH_MS) + 1);
  });

  it('keeps deciding in Redis, without a 5xx or a wait, when every registry write fails', async () => {
    const prefix = `${uniqueName('p')}:`;
    // A string where the ZSET should be: every registry write gets WRONGTYPE.
    await redis.command('SET', registryKey(prefix, HORIZON_MS), 'not a zset');
    const c = await client();
    const logger = recordingLogger();
    const middleware = rateLimit({
      name: uniqueName('wrongtype'),
      limit: 30,
      window: '1h',
      redis: c,
      fallbackLimit: 'share',
      instanceHorizon: HORIZON_MS,
      prefix,
      timeout: 100,
      logger,
      key: () => 'tenant-1',
    });
    limiters.push(middleware.limiter);
    const registry = findInstanceRegistry(c, prefix, HORIZON_MS) as InstanceRegistry;
    await registry.refresh();
    expect(registry.hasSeenRedis).toBe(false);

    const app = express();
    app.post('/tenants', middleware, (_req, res) => {
      res.status(201).end();
    });
    const samples = [];
    for (let i = 0; i < 40; i++) {
      const started = performance.now();
      const response = await request(app).post('/tenants');
      samples.push({
        status: response.status,
        source: response.headers['x-ratelimit-source'],
        ms: performance.now() - started,
      });
    }
    expect(samples.filter(s => s.status >= 500)).toEqual([]);
    expect(samples.filter(s => s.status === 201)).toHaveLength(30);
    expect(samples.every(s => s.source === 'redis')).toBe(true);
    expect(Math.max(...samples.map(s => s.ms))).toBeLessThan(250);
    // Registry failures are not Redis decision failures: the breaker never heard of them.
    expect(middleware.limiter.breakerState).toBe('closed');
    expect(middleware.limiter.liveInstances).toBe(1);
    const warnings = logger.warn.mock.calls.map(call => String(call[0]));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/could not refresh the instance registry .*WRONGTYPE/);
  });

  it('waits for its client to connect, without a warning, and registers once it has', async () => {
    const prefix = `${uniqueName('p')}:`;
    const c = failFastClient(redis.port); // still connecting
    clients.push(c);
    const logger = recordingLogger();
    const limiter = new RateLimiter({
      name: uniqueName('registry'),
      limit: 30,
      window: '1h',
      redis: c,
      fallbackLimit: 'share',
      instanceHorizon: HORIZON_MS,
      prefix,
      logger,
    });
    limiters.push(limiter);
    const key = registryKey(prefix, HORIZON_MS);
    await eventually(async () => (await redis.command('ZCARD', key)) === '1', 2000);
    expect(limiter.liveInstances).toBe(1);
    expect(logger.warn).not.toHaveBeenCalled();
  });

  it('shares one registry and timer among limiters on one client and prefix', async () => {
    const prefix = `${uniqueName('p')}:`;
    const a = await instance(prefix);
    const second = new RateLimiter({
      name: uniqueName('registry'),
      limit: 7,
      window: '1m',
      redis: a.client,
      fallbackLimit: 'share',
      instanceHorizon: HORIZON_MS,
      prefix,
    });
    limiters.push(second);
    expect(findInstanceRegistry(a.client, prefix, HORIZON_MS)).toBe(a.registry);
    await second.close();
    // The first limiter still uses it.
    expect(findInstanceRegistry(a.client, prefix, HORIZON_MS)).toBe(a.registry);
    await a.limiter.close();
    expect(findInstanceRegistry(a.client, prefix, HORIZON_MS)).toBeUndefined();
  });
});
