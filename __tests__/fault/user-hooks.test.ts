import type { Redis } from 'ioredis';
import { RateLimiter, isRateLimitError, type RateLimiterOptions } from '../../lib/index.js';
import { RedisProcess } from '../helpers/redis-process.js';
import {
  eventually,
  failFastClient,
  ready,
  recordingLogger,
  uniqueName,
} from '../helpers/redis.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const THRESHOLD = 3;
const HALF_OPEN_AFTER_MS = 150;

let redis: RedisProcess;
let proxy: TcpProxy;
let client: Redis;
const limiters: RateLimiter[] = [];

beforeAll(async () => {
  redis = await RedisProcess.start();
  proxy = await TcpProxy.start({ host: redis.host, port: redis.port });
});

beforeEach(async () => {
  proxy.refuse = false;
  // A client per test: each gets a breaker of its own.
  client = failFastClient(proxy.port);
  await ready(client);
});

afterEach(async () => {
  await Promise.all(limiters.splice(0).map(l => l.close()));
  client.disconnect();
});

afterAll(async () => {
  await proxy.close();
  await redis.stop();
});

function limiter(options: Partial<RateLimiterOptions> = {}): RateLimiter {
  const created = new RateLimiter({
    name: uniqueName('hooks'),
    limit: 1000,
    window: '1h',
    redis: client,
    timeout: 200,
    breaker: { threshold: THRESHOLD, halfOpenAfter: HALF_OPEN_AFTER_MS },
    logger: recordingLogger(),
    ...options,
  });
  limiters.push(created);
  return created;
}

/** Opens the breaker through a refused connection, then lets Redis back in. */
async function outage(target: RateLimiter): Promise<void> {
  expect((await target.consume('k')).source).toBe('redis');
  proxy.refuse = true;
  proxy.cutAll();
  for (let i = 0; i < THRESHOLD + 2; i++) expect((await target.consume('k')).source).toBe('memory');
  expect(target.breakerState).toBe('open');
  proxy.refuse = false;
  await ready(client);
}

/** Decisions return to Redis within a few half-open periods once Redis is back. */
async function expectRecovery(target: RateLimiter): Promise<void> {
  // Another key than the outage's, so its hits are left for reconciliation.
  await eventually(async () => (await target.consume('probe')).source === 'redis', 5000, 25);
  expect(target.breakerState).toBe('closed');
}

describe('RateLimiter with user code that throws or is partial', () => {
  it('recovers from an outage with a logger that has no info()', async () => {
    const warn = jest.fn();
    const target = limiter({ logger: { warn, error: jest.fn() } as never });
    await outage(target);
    await expectRecovery(target);
    expect(warn.mock.calls.some(c => String(c[0]).includes('circuit breaker opened'))).toBe(true);
  });

  it('recovers from an outage when a breakerHalfOpen listener throws, and reports it once per throw', async () => {
    const target = limiter();
    const other = limiter({ failClosed: false });
    const reported: unknown[] = [];
    target.on('breakerHalfOpen', () => {
      throw new Error('listener bug');
    });
    target.on('storeError', error => {
      if (isRateLimitError(error) && error.code === 'ERR_RRL_HOOK') reported.push(error);
    });
    await outage(target);
    await expectRecovery(target);
    // Every limiter on the client's breaker recovers, not only the one with the listener.
    await eventually(async () => (await other.consume('k')).source === 'redis', 2000, 25);
    expect(reported.length).toBeGreaterThanOrEqual(1);
    expect((reported[0] as { hook: string }).hook).toBe('breakerHalfOpen listener');
  });

  it('survives a throwing reconciled listener: no unhandled rejection, one report', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      const target = limiter();
      const reconciled = jest.fn(() => {
        throw new Error('listener bug');
      });
      const hookErrors: string[] = [];
      target.on('reconciled', reconciled);
      target.on('storeError', error => {
        if (isRateLimitError(error) && error.code === 'ERR_RRL_HOOK')
          hookErrors.push((error as unknown as { hook: string }).hook);
      });
      await outage(target);
      await expectRecovery(target);
      await eventually(() => reconciled.mock.calls.length === 1, 2000);
      await new Promise(resolve => setImmediate(resolve));
      expect(hookErrors).toEqual(['reconciled listener']);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('logs a throwing storeError listener once instead of looping', async () => {
    const logger = recordingLogger();
    const target = limiter({ logger });
    target.on('fallback', () => {
      throw new Error('fallback bug');
    });
    target.on('storeError', () => {
      throw new Error('storeError bug');
    });
    await outage(target);
    await new Promise(resolve => setImmediate(resolve));
    const lines = logger.error.mock.calls.map(c => String(c[0]));
    expect(lines.filter(l => l.includes('storeError listener threw'))).toHaveLength(1);
    await expectRecovery(target);
  });
});
