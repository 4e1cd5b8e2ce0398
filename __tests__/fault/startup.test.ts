import type { Redis } from 'ioredis';
import { RateLimiter, type FallbackEvent } from '../../lib/index.js';
import { RedisProcess } from '../helpers/redis-process.js';
import {
  eventually,
  failFastClient,
  ready,
  recordingLogger,
  uniqueName,
} from '../helpers/redis.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

let redis: RedisProcess;
let proxy: TcpProxy;
let client: Redis | undefined;
let limiter: RateLimiter | undefined;

beforeAll(async () => {
  redis = await RedisProcess.start();
  proxy = await TcpProxy.start({ host: redis.host, port: redis.port });
});

afterEach(async () => {
  await limiter?.close();
  client?.disconnect();
});

afterAll(async () => {
  await proxy.close();
  await redis.stop();
});

describe('RateLimiter before its Redis client first connects', () => {
  it('decides locally as not-connected without opening the breaker, then uses Redis from the first ready', async () => {
    proxy.refuse = true;
    client = failFastClient(proxy.port);
    const logger = recordingLogger();
    limiter = new RateLimiter({
      name: uniqueName('startup'),
      limit: 100,
      window: '1h',
      redis: client,
      timeout: 200,
      // A long open period: opening the breaker here would keep Redis out for the whole test.
      breaker: { threshold: 5, halfOpenAfter: 60_000 },
      logger,
    });
    const fallbacks: FallbackEvent[] = [];
    limiter.on('fallback', event => fallbacks.push(event));
    const storeErrors = jest.fn();
    limiter.on('storeError', storeErrors);

    for (let i = 0; i < 10; i++) expect((await limiter.consume('alice')).source).toBe('memory');
    await new Promise(resolve => setImmediate(resolve));
    expect(limiter.breakerState).toBe('closed');
    expect(fallbacks.map(f => f.reason)).toEqual(Array(10).fill('not-connected'));
    expect(storeErrors).not.toHaveBeenCalled();
    expect(logger.warn.mock.calls.map(c => String(c[0]))).toEqual([
      expect.stringContaining('cannot decide in Redis (Redis is not connected)'),
    ]);

    proxy.refuse = false;
    await ready(client);
    const first = await limiter.consume('bob');
    expect(first.source).toBe('redis');
    // What memory admitted before the connection is written back to Redis.
    await eventually(() => limiter?.pendingReconciliation === 0, 2000);
    expect((await limiter.get('alice'))?.remaining).toBe(90);
  });
});
