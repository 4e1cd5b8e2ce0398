import { inspect } from 'node:util';
import { Redis, type RedisOptions } from 'ioredis';
import * as promClient from 'prom-client';
import request from 'supertest';
import {
  RateLimiter,
  createPrometheusMetrics,
  rateLimit,
  redisAclRules,
  type RateLimitMiddleware,
} from '../../lib/index.js';
import { createApp } from '../helpers/create-app.js';
import { setAclUser } from '../helpers/redis-acl.js';
import { RedisProcess } from '../helpers/redis-process.js';
import { eventually, recordingLogger, uniqueName } from '../helpers/redis.js';

// A password must never leave the package: not in a log line, an event, an
// error (message, cause or fields), a metric label or a response. Redis
// refusing the credentials is an outage like any other, logged once per
// transition, not once per request.

const PASSWORD = 'pw-Zq9-never-print-me';
const EVENTS = [
  'breakerOpen',
  'breakerHalfOpen',
  'breakerClose',
  'fallback',
  'storeError',
  'reconciled',
] as const;

/** Everything the package said, logged, emitted, threw and exported, as text. */
class Witness {
  readonly logger = recordingLogger();
  readonly registry = new promClient.Registry();
  readonly metrics = createPrometheusMetrics(promClient, { registry: this.registry });
  private readonly seen: unknown[] = [];

  watch(limiter: RateLimiter): void {
    for (const event of EVENTS) limiter.on(event, (...args: unknown[]) => this.seen.push(args));
  }

  note(value: unknown): void {
    this.seen.push(value);
  }

  lines(): string[] {
    return (['warn', 'error', 'info'] as const).flatMap(level =>
      this.logger[level].mock.calls.map(call => `${level}: ${call.map(String).join(' ')}`),
    );
  }

  async text(): Promise<string> {
    const deep = (value: unknown) => inspect(value, { depth: Infinity, showHidden: true });
    return [
      ...(['warn', 'error', 'info'] as const).map(level => deep(this.logger[level].mock.calls)),
      deep(this.seen),
      await this.registry.metrics(),
    ].join('\n');
  }
}

let redis: RedisProcess;

beforeAll(async () => {
  redis = await RedisProcess.start();
  await setAclUser(redis, 'limiter', 'the-right-password', redisAclRules());
});

afterAll(async () => {
  await redis.stop();
});

function limiterFor(redisOption: string | Redis, witness: Witness): RateLimitMiddleware {
  const middleware = rateLimit({
    name: uniqueName('creds'),
    limit: 3,
    window: '1h',
    redis: redisOption,
    key: () => 'client',
    timeout: 200,
    breaker: { threshold: 3, halfOpenAfter: 300 },
    logger: witness.logger,
    metrics: witness.metrics,
  });
  witness.watch(middleware.limiter);
  return middleware;
}

async function flood(middleware: RateLimitMiddleware, witness: Witness, n: number): Promise<void> {
  const server = createApp('express5', middleware);
  for (let i = 0; i < n; i++) {
    const res = await request(server).get('/');
    expect(res.status === 200 || res.status === 429).toBe(true);
    expect(res.headers['x-ratelimit-source']).toBe('memory');
    witness.note({ headers: res.headers, body: res.text });
  }
  witness.note(await middleware.limiter.get('client'));
  witness.note(await middleware.limiter.reset('client').catch((error: unknown) => error));
}

const count = (lines: string[], pattern: RegExp) => lines.filter(l => pattern.test(l)).length;

describe('a redis:// URL whose password Redis rejects (WRONGPASS)', () => {
  it('falls back, logs once per transition, and never shows the password', async () => {
    const witness = new Witness();
    const url = `redis://limiter:${PASSWORD}@127.0.0.1:${redis.port}`;
    const middleware = limiterFor(url, witness);
    try {
      await eventually(() => witness.lines().some(l => /WRONGPASS/.test(l)), 3000);
      await flood(middleware, witness, 30);
      // Reconnect attempts keep failing meanwhile; none is logged again.
      await new Promise(resolve => setTimeout(resolve, 300));
      await flood(middleware, witness, 10);
      let lines = witness.lines();
      expect(
        count(
          lines,
          /cannot use Redis at 127\.0\.0\.1:\d+: Redis rejected the username or password \(WRONGPASS/,
        ),
      ).toBe(1);
      expect(count(lines, /cannot decide in Redis/)).toBe(1);
      expect(lines.length).toBeLessThan(10);

      // The operator fixes the credentials: Redis decides again.
      await setAclUser(redis, 'limiter', PASSWORD, redisAclRules());
      await eventually(
        async () => (await middleware.limiter.consume('probe')).source === 'redis',
        8000,
        100,
      );
      // And a second outage is a second transition, logged again once.
      await setAclUser(redis, 'limiter', 'the-right-password', redisAclRules());
      await redis.command('CLIENT', 'KILL', 'USER', 'limiter');
      const rejected = /cannot use Redis at .*: Redis rejected the username/;
      await eventually(() => count(witness.lines(), rejected) === 2, 5000);
      await flood(middleware, witness, 10);
      lines = witness.lines();
      expect(count(lines, rejected)).toBe(2);
      expect(count(lines, /cannot decide in Redis/)).toBe(2);

      const text = await witness.text();
      expect(text).toContain('WRONGPASS'); // the scan saw the failures...
      expect(text).not.toContain(PASSWORD); // ...and no password in them
    } finally {
      await middleware.limiter.close();
    }
  }, 30_000);
});

describe('a passed-in client with a wrong password and its offline queue on', () => {
  it('emits the refused command as an error without its credentials', async () => {
    const witness = new Witness();
    // ioredis rejects queued commands with the failed HELLO's error, whose
    // `command.args` hold the password: what a storeError listener receives.
    const client = new Redis({
      host: '127.0.0.1',
      port: redis.port,
      username: 'limiter',
      password: PASSWORD,
      retryStrategy: () => 200,
      ...({ disconnectTimeout: 100 } as RedisOptions),
    });
    client.on('error', () => undefined);
    const middleware = limiterFor(client, witness);
    try {
      await flood(middleware, witness, 5);
      await eventually(() => witness.lines().some(l => /WRONGPASS/.test(l)), 3000);
      const text = await witness.text();
      expect(text).toMatch(/storeError|WRONGPASS/);
      expect(text).not.toContain(PASSWORD);
    } finally {
      await middleware.limiter.close();
      client.disconnect();
    }
  });
});

describe('a redis:// URL without a password for a Redis that requires one (NOAUTH)', () => {
  it('falls back and logs the cause once', async () => {
    const locked = await RedisProcess.start();
    // Set after start: the helper's readiness check sends INFO without a password.
    await locked.command('CONFIG', 'SET', 'requirepass', PASSWORD);
    const witness = new Witness();
    const middleware = limiterFor(`redis://127.0.0.1:${locked.port}`, witness);
    try {
      await eventually(() => witness.lines().some(l => /NOAUTH/.test(l)), 3000);
      await flood(middleware, witness, 20);
      await new Promise(resolve => setTimeout(resolve, 300));
      const lines = witness.lines();
      expect(count(lines, /cannot use Redis at .*: Redis requires authentication .*NOAUTH/)).toBe(
        1,
      );
      expect(count(lines, /cannot decide in Redis/)).toBe(1);
      expect(await witness.text()).not.toContain(PASSWORD);
    } finally {
      await middleware.limiter.close();
      await locked.stop();
    }
  });
});

describe('options holding a password, given where they do not belong', () => {
  it.each([
    ['a URL of another scheme', `http://limiter:${PASSWORD}@127.0.0.1:6379`],
    ['an options object instead of a client', { host: '127.0.0.1', password: PASSWORD }],
  ])('%s: the RateLimitConfigError does not repeat the password', (_what, value) => {
    let thrown: unknown;
    try {
      new RateLimiter({ limit: 1, window: '1m', redis: value as never });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(Error);
    expect(String((thrown as Error).message)).toMatch(/redis must be/);
    expect(inspect(thrown, { depth: Infinity, showHidden: true })).not.toContain(PASSWORD);
  });
});
