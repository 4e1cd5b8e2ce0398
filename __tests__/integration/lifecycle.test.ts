import express from 'express';
import { ConsecutiveBreaker, circuitBreaker, handleAll } from 'cockatiel';
import request from 'supertest';
import { RateLimitConfigError, RateLimiter, rateLimit } from '../../lib/index.js';
import { resetServingWatch } from '../../lib/serving-watch.js';
import { RedisProcess } from '../helpers/redis-process.js';
import {
  eventually,
  failFastClient,
  ready,
  recordingLogger,
  uniqueName,
} from '../helpers/redis.js';

let redis: RedisProcess;

beforeAll(async () => {
  redis = await RedisProcess.start();
});

afterAll(async () => {
  await redis.stop();
});

/** Clients connected to the test Redis, not counting the one asking. */
async function connectedClients(): Promise<number> {
  const info = await redis.command('INFO', 'clients');
  return Number(/connected_clients:(\d+)/.exec(info)?.[1]) - 1;
}

describe('RateLimiter lifecycle', () => {
  it('takes no URL client when its breaker options conflict, so closing the good limiter frees it', async () => {
    const baseline = await connectedClients();
    const url = redis.url;
    const good = new RateLimiter({
      name: uniqueName('good'),
      limit: 5,
      window: '1m',
      redis: url,
      logger: recordingLogger(),
    });
    await eventually(async () => (await good.consume('k')).source === 'redis');
    expect(
      () =>
        new RateLimiter({
          name: uniqueName('bad'),
          limit: 5,
          window: '1m',
          redis: url,
          breaker: { threshold: 2 },
          logger: recordingLogger(),
        }),
    ).toThrow(RateLimitConfigError);
    expect(() =>
      rateLimit({
        name: uniqueName('bad-cost'),
        redis: url,
        limit: 5,
        window: '1m',
        cost: 10,
        logger: recordingLogger(),
      }),
    ).toThrow(RateLimitConfigError);
    await good.close();
    await eventually(async () => (await connectedClients()) === baseline, 3000);
  });

  it('leaves no listener on a shared cockatiel policy after 1 000 limiters were created and closed', async () => {
    const client = failFastClient(redis.port);
    await ready(client);
    const policy = circuitBreaker(handleAll, {
      halfOpenAfter: 1000,
      breaker: new ConsecutiveBreaker(5),
    });
    const emitters = policy as unknown as Record<string, { size: number }>;
    const listeners = (): number =>
      ['breakEmitter', 'halfOpenEmitter', 'resetEmitter'].reduce(
        (sum, name) => sum + (emitters[name]?.size ?? NaN),
        0,
      );
    let readyListeners = 0;
    try {
      expect(listeners()).toBe(0);
      for (let i = 0; i < 1000; i++) {
        // The store's one script-preload listener per client stays; nothing per limiter may.
        if (i === 1) readyListeners = client.listenerCount('ready');
        const limiter = new RateLimiter({
          name: 'per-policy',
          limit: 5,
          window: '1m',
          redis: client,
          breaker: policy,
          logger: recordingLogger(),
        });
        await limiter.close();
      }
      expect(listeners()).toBe(0);
      expect(client.listenerCount('ready')).toBe(readyListeners);
    } finally {
      client.disconnect();
    }
  });

  it('disconnects the URL client once the last of many per-request limiters is closed', async () => {
    const baseline = await connectedClients();
    for (let i = 0; i < 200; i++) {
      const limiter = new RateLimiter({
        name: 'per-url',
        limit: 5,
        window: '1m',
        redis: redis.url,
        logger: recordingLogger(),
      });
      await limiter.consume('k');
      await limiter.close();
    }
    await eventually(async () => (await connectedClients()) === baseline, 3000);
  });

  it('warns once, with a code, when limiters created per request pile up open', async () => {
    resetServingWatch();
    const logger = recordingLogger();
    const created: RateLimiter[] = [];
    const app = express();
    app.use(rateLimit({ name: uniqueName('app'), limit: 1000, window: '1m', logger }));
    app.get('/', async (_req, res) => {
      // The mistake: a limiter per request, never closed.
      const limiter = new RateLimiter({ name: 'inner', limit: 5, window: '1m', logger });
      created.push(limiter);
      await limiter.consume('k');
      res.end('ok');
    });
    try {
      for (let i = 0; i < 150; i++) await request(app).get('/').expect(200);
      const warnings = logger.warn.mock.calls
        .map(c => String(c[0]))
        .filter(w => w.includes('ERR_RRL_LIMITER_PER_REQUEST'));
      expect(warnings).toHaveLength(1);
    } finally {
      await Promise.all(created.map(l => l.close()));
      resetServingWatch();
    }
  });

  it('stays quiet about limiters that are created after serving but closed again', async () => {
    resetServingWatch();
    const logger = recordingLogger();
    const app = express();
    app.use(rateLimit({ name: uniqueName('app'), limit: 1000, window: '1m', logger }));
    app.get('/', async (_req, res) => {
      const limiter = new RateLimiter({ name: 'inner', limit: 5, window: '1m', logger });
      await limiter.consume('k');
      await limiter.close();
      res.end('ok');
    });
    for (let i = 0; i < 150; i++) await request(app).get('/').expect(200);
    expect(logger.warn).not.toHaveBeenCalled();
    resetServingWatch();
  });
});
