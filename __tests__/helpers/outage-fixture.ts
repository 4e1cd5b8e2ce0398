import express from 'express';
import type { Redis } from 'ioredis';
import request from 'supertest';
import type { RateLimiter } from '../../lib/index.js';
import { rateLimit, type RateLimitMiddleware } from '../../lib/index.js';
import { RedisProcess } from './redis-process.js';
import { failFastClient, ready, recordingLogger, uniqueName } from './redis.js';
import { TcpProxy } from './tcp-proxy.js';

export const TIMEOUT_MS = 100;
export const HALF_OPEN_AFTER_MS = 400;
export const THRESHOLD = 5;
/** What a request may take beyond `timeout` on a loaded 2-core CI machine. */
export const MARGIN_MS = 150;

export type Sample = { status: number; source: string | undefined; ms: number };

export type EventLog = Record<
  'breakerOpen' | 'breakerHalfOpen' | 'breakerClose' | 'fallback' | 'storeError',
  number
>;

/**
 * A Redis behind our TCP proxy, one client through the proxy, and an admin
 * app with a fail-closed route (/critical) and a fail-open one (/open) that
 * share the client and so one breaker.
 */
export class OutageFixture {
  readonly events: { critical: EventLog; open: EventLog } = {
    critical: emptyLog(),
    open: emptyLog(),
  };
  private constructor(
    readonly logger: ReturnType<typeof recordingLogger>,
    readonly redis: RedisProcess,
    readonly proxy: TcpProxy,
    readonly client: Redis,
    readonly critical: RateLimitMiddleware,
    readonly open: RateLimitMiddleware,
    readonly app: express.Express,
  ) {
    for (const [route, limiter] of [
      ['critical', critical.limiter],
      ['open', open.limiter],
    ] as const) {
      for (const event of Object.keys(this.events[route]) as (keyof EventLog)[]) {
        limiter.on(event, () => {
          this.events[route][event] += 1;
        });
      }
    }
  }

  static async start(
    options: { redisArgs?: string[]; limit?: number; protocol?: 2 | 3 } = {},
  ): Promise<OutageFixture> {
    const redis = await RedisProcess.start({ args: options.redisArgs });
    const proxy = await TcpProxy.start({ host: redis.host, port: redis.port });
    const client = failFastClient(proxy.port, options.protocol ?? 3);
    await ready(client);
    const logger = recordingLogger();
    const common = {
      redis: client,
      limit: options.limit ?? 1000,
      window: '1h',
      timeout: TIMEOUT_MS,
      breaker: { threshold: THRESHOLD, halfOpenAfter: HALF_OPEN_AFTER_MS },
      logger,
      key: () => 'client-1',
    };
    const critical = rateLimit({ ...common, name: uniqueName('critical'), failClosed: true });
    const open = rateLimit({ ...common, name: uniqueName('open'), failClosed: false });
    const app = express();
    app.post('/critical', critical, (_req, res) => {
      res.status(200).json({ ok: true });
    });
    app.get('/open', open, (_req, res) => {
      res.status(200).json({ ok: true });
    });
    return new OutageFixture(logger, redis, proxy, client, critical, open, app);
  }

  get limiters(): RateLimiter[] {
    return [this.critical.limiter, this.open.limiter];
  }

  /** One request to a route, timed. */
  async hit(route: 'critical' | 'open'): Promise<Sample> {
    const started = performance.now();
    const response =
      route === 'critical'
        ? await request(this.app).post('/critical')
        : await request(this.app).get('/open');
    return {
      status: response.status,
      source: response.headers['x-ratelimit-source'] as string | undefined,
      ms: performance.now() - started,
    };
  }

  /** `count` requests, one after the other, alternating routes. */
  async hitMany(count: number): Promise<Sample[]> {
    const samples: Sample[] = [];
    for (let i = 0; i < count; i++) samples.push(await this.hit(i % 2 === 0 ? 'critical' : 'open'));
    return samples;
  }

  /** Waits out the breaker's open period so the next call is the half-open probe. */
  async waitHalfOpen(): Promise<void> {
    await new Promise(resolve => setTimeout(resolve, HALF_OPEN_AFTER_MS + 20));
  }

  /** Sends requests until both routes decide in Redis again; returns how many it took. */
  async recover(maxRequests = 100): Promise<number> {
    for (let i = 1; i <= maxRequests; i++) {
      const [a, b] = [await this.hit('critical'), await this.hit('open')];
      if (a.source === 'redis' && b.source === 'redis') return i;
      if (this.critical.limiter.breakerState === 'open') await this.waitHalfOpen();
      else await new Promise(resolve => setTimeout(resolve, 20));
    }
    throw new Error('did not recover to redis');
  }

  async stop(): Promise<void> {
    await Promise.all(this.limiters.map(l => l.close()));
    this.client.disconnect();
    await this.proxy.close();
    await this.redis.stop();
  }
}

function emptyLog(): EventLog {
  return { breakerOpen: 0, breakerHalfOpen: 0, breakerClose: 0, fallback: 0, storeError: 0 };
}

/** Expect no 5xx and every request bounded by the timeout. */
export function expectBounded(samples: Sample[]): void {
  expect(samples.filter(s => s.status >= 500)).toEqual([]);
  const slowest = Math.max(...samples.map(s => s.ms));
  expect(slowest).toBeLessThan(TIMEOUT_MS + MARGIN_MS);
}

export function sources(samples: Sample[]): string[] {
  return samples.map(s => `${s.status}:${s.source}`);
}
