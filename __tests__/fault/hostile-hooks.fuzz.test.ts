import type { Redis } from 'ioredis';
import request from 'supertest';
import {
  rateLimit,
  type RateLimitMetrics,
  type RateLimitMiddleware,
  type RateLimitOptions,
} from '../../lib/index.js';
import { createApp } from '../helpers/create-app.js';
import { RedisProcess } from '../helpers/redis-process.js';
import { prng } from '../helpers/prng.js';
import { eventually, failFastClient, ready, uniqueName } from '../helpers/redis.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

// Fuzz: through a healthy phase, an outage and a recovery, every piece of
// user code (listeners, logger, metrics, key, cost, skip, handler) throws at
// random. Whatever it throws, no process-level failure may follow, no 5xx
// other than the user's own errors passed to next(), and once Redis is back
// every limiter decides in Redis again. Seeds are fixed so a failure replays.

const SEEDS = [1, 7, 42];
const THRESHOLD = 3;
const HALF_OPEN_AFTER_MS = 100;

class HookFault extends Error {}

let redis: RedisProcess;
let proxy: TcpProxy;

beforeAll(async () => {
  redis = await RedisProcess.start();
  proxy = await TcpProxy.start({ host: redis.host, port: redis.port });
});

afterAll(async () => {
  await proxy.close();
  await redis.stop();
});

/** Handles that a leaked client, timer or socket would add. */
function openHandles(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const type of process.getActiveResourcesInfo()) {
    if (type === 'TTYWrap' || type === 'FSReqCallback') continue;
    counts[type] = (counts[type] ?? 0) + 1;
  }
  return counts;
}

describe.each(SEEDS)('user hooks throwing at random (seed %i)', seed => {
  it('never crash, wedge or leak: every limiter decides in Redis after recovery', async () => {
    const random = prng(seed);
    const flaky =
      <A extends unknown[], R>(name: string, fn: (...args: A) => R, rate = 0.3) =>
      (...args: A): R => {
        if (random() < rate) throw new HookFault(`${name} (seed ${seed})`);
        return fn(...args);
      };
    const processFailures: unknown[] = [];
    const onFailure = (reason: unknown): void => {
      processFailures.push(reason);
    };
    process.on('unhandledRejection', onFailure);
    process.on('uncaughtException', onFailure);
    const handlesBefore = openHandles();

    const client: Redis = failFastClient(proxy.port);
    await ready(client);
    const noop = (): void => undefined;
    const logger = {
      warn: flaky('warn', noop),
      error: flaky('error', noop),
      info: flaky('info', noop),
    };
    const metrics: RateLimitMetrics = {
      attach: flaky('attach', () => noop),
      decision: flaky('decision', noop),
      redisLatency: flaky('redisLatency', noop),
      reconciled: flaky('reconciled', noop),
    };
    let hooksOn = true;
    const maybe = <A extends unknown[], R>(name: string, fn: (...args: A) => R) => {
      const wrapped = flaky(name, fn, 0.15);
      return (...args: A): R => (hooksOn ? wrapped(...args) : fn(...args));
    };
    const common: RateLimitOptions = {
      limit: 1000,
      window: '1h',
      redis: client,
      timeout: 200,
      breaker: { threshold: THRESHOLD, halfOpenAfter: HALF_OPEN_AFTER_MS },
      logger,
      metrics,
      memory: { maxKeys: 1000 },
      key: maybe('key', () => `client-${Math.floor(random() * 5)}`),
      cost: maybe('cost', () => 1),
      skip: maybe('skip', () => false),
      handler: maybe('handler', (_req, res) => {
        res.statusCode = 429;
        res.end();
      }),
    };
    const middlewares: RateLimitMiddleware[] = [
      rateLimit({ ...common, name: uniqueName('fuzz-closed') }),
      rateLimit({ ...common, name: uniqueName('fuzz-open'), failClosed: false }),
    ];
    const limiters = middlewares.map(m => m.limiter);
    for (const limiter of limiters) {
      for (const event of [
        'breakerOpen',
        'breakerHalfOpen',
        'breakerClose',
        'fallback',
        'storeError',
        'reconciled',
      ] as const) {
        limiter.on(event, flaky(`${event} listener`, noop, 0.5));
      }
    }
    const app = createApp('express5', ...middlewares);
    const statuses = new Set<number>();
    const traffic = async (count: number): Promise<void> => {
      for (let i = 0; i < count; i++) statuses.add((await request(app).get('/')).status);
    };

    try {
      await traffic(20);
      proxy.refuse = true;
      proxy.cutAll();
      await traffic(30);
      await eventually(() => limiters.every(l => l.breakerState === 'open'), 2000);
      proxy.refuse = false;
      await ready(client);
      // Listeners, logger and metrics keep throwing at random through recovery.
      for (const limiter of limiters) {
        await eventually(
          async () => (await limiter.consume('recovery-probe')).source === 'redis',
          5000,
          HALF_OPEN_AFTER_MS / 2,
        );
        expect(limiter.breakerState).toBe('closed');
      }
      hooksOn = false;
      await traffic(5);
      // 200, 429, and the 500 that Express gives a user error passed to next().
      expect([...statuses].filter(s => ![200, 429, 500].includes(s))).toEqual([]);
    } finally {
      await Promise.all(limiters.map(l => l.close()));
      client.disconnect();
      process.off('unhandledRejection', onFailure);
      process.off('uncaughtException', onFailure);
    }
    expect(processFailures).toEqual([]);
    await eventually(() => {
      const after = openHandles();
      return Object.keys(after).every(type => (after[type] ?? 0) <= (handlesBefore[type] ?? 0));
    }, 3000);
  });
});
