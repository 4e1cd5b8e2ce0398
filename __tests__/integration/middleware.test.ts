import type { IncomingMessage, ServerResponse } from 'node:http';
import request from 'supertest';
import type { Response } from 'supertest';
import {
  RateLimiter,
  rateLimit,
  type RateLimitMiddleware,
  type RateLimitOptions,
  type RateLimitResult,
} from '../../lib/index.js';
import { APP_KINDS, createApp, createAppWith, type AppKind } from '../helpers/create-app.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { recordingLogger } from '../helpers/redis.js';

// Memory-only mode: no `redis` option, so every decision has source 'memory'.
// Limiters without `memory` share one process-wide store, so each gets a
// unique name.

const T0 = 1_700_000_000_000;
let counter = 0;
const created: RateLimitMiddleware[] = [];

function limit(options: RateLimitOptions): RateLimitMiddleware {
  const middleware = rateLimit({ name: `mw-test-${++counter}`, ...options });
  created.push(middleware);
  return middleware;
}

// After each test: limiters left open after serving would (rightly) trigger
// the ERR_RRL_LIMITER_PER_REQUEST warning.
afterEach(async () => {
  await Promise.all(created.splice(0).map(middleware => middleware.limiter.close()));
});

const header = (name: string) => (req: IncomingMessage) => String(req.headers[name] ?? '');
const client = header('x-client');

/** Names of the rate-limit headers on a response (X-RateLimit-*, RateLimit*). */
const rateLimitHeaders = (res: Response): string[] =>
  Object.keys(res.headers).filter(name => /^(x-)?ratelimit/i.test(name));

type Mode = 'sync' | 'async';

/** A request function that throws (or rejects) when the request has `x-fail`. */
function failingWhenAsked<T>(
  mode: Mode,
  message: string,
  value: T,
): (req: IncomingMessage) => T | Promise<T> {
  const run = (req: IncomingMessage): T => {
    if (req.headers['x-fail'] !== undefined) throw new Error(message);
    return value;
  };
  return mode === 'sync' ? run : async req => run(req);
}

describe.each(APP_KINDS)('rateLimit() under %s', kind => {
  const app = (...middlewares: RateLimitMiddleware[]) => createApp(kind, ...middlewares);

  describe('counting', () => {
    it('lets requests through until the limit, then answers 429', async () => {
      const server = app(limit({ limit: 3, window: '1m' }));
      for (const remaining of ['2', '1', '0']) {
        const res = await request(server).get('/');
        expect(res.status).toBe(200);
        expect(res.body.ok).toBe(true);
        expect(res.headers['x-ratelimit-remaining']).toBe(remaining);
      }
      const limited = await request(server).get('/');
      expect(limited.status).toBe(429);
      expect(limited.body.ok).toBeUndefined();
      expect(limited.headers['x-ratelimit-remaining']).toBe('0');
      expect(limited.headers['x-ratelimit-source']).toBe('memory');
    });

    it('answers 429 with an application/problem+json body and Retry-After in whole seconds', async () => {
      const clock = new ManualClock(T0);
      const server = app(limit({ limit: 1, window: '1m', clock }));
      await request(server).get('/').expect(200);
      clock.tick(1_500);
      const res = await request(server).get('/');
      expect(res.status).toBe(429);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.body).toEqual(
        expect.objectContaining({
          title: expect.stringMatching(/\S/),
          status: 429,
          detail: expect.stringMatching(/\S/),
        }),
      );
      // 58.5 s left in the window, rounded up.
      expect(res.headers['retry-after']).toBe('59');
    });

    it('admits again once the window has passed', async () => {
      const clock = new ManualClock(T0);
      const server = app(limit({ limit: 1, window: '1m', clock }));
      await request(server).get('/').expect(200);
      await request(server).get('/').expect(429);
      clock.tick(59_999);
      await request(server).get('/').expect(429);
      clock.tick(1);
      const res = await request(server).get('/').expect(200);
      expect(res.headers['x-ratelimit-remaining']).toBe('0');
    });

    it('sets req.rateLimit to the RateLimitResult', async () => {
      const clock = new ManualClock(T0);
      const server = app(limit({ limit: 3, window: '1m', clock, key: () => 'result-key' }));
      const res = await request(server).get('/').expect(200);
      const expected: RateLimitResult = {
        allowed: true,
        limit: 3,
        remaining: 2,
        resetAt: T0 + 60_000,
        retryAfterMs: 0,
        source: 'memory',
        key: 'result-key',
      };
      expect(res.body.rateLimit).toEqual(expected);
    });

    it('exposes its RateLimiter as .limiter, counting what the requests consumed', async () => {
      const middleware = limit({ name: `limiter-${kind}`, limit: 4, window: '1m', key: () => 'k' });
      expect(middleware.limiter).toBeInstanceOf(RateLimiter);
      expect(middleware.limiter.name).toBe(`limiter-${kind}`);
      expect(middleware.limiter.limit).toBe(4);
      await request(app(middleware)).get('/').expect(200);
      await expect(middleware.limiter.get('k')).resolves.toMatchObject({ remaining: 3 });
    });

    it('restores the quota of a key with .reset(key)', async () => {
      const middleware = limit({ limit: 1, window: '1m' });
      const server = app(middleware);
      await request(server).get('/').expect(200);
      await request(server).get('/').expect(429);
      // The default key is the client address.
      await middleware.reset('127.0.0.1');
      const res = await request(server).get('/').expect(200);
      expect(res.body.rateLimit).toMatchObject({ remaining: 0, key: '127.0.0.1' });
    });
  });

  describe('headers', () => {
    it("'legacy' sends X-RateLimit-Limit, -Remaining and -Reset (epoch seconds) only", async () => {
      const clock = new ManualClock(T0 + 250);
      const server = app(limit({ limit: 5, window: '1m', clock, headers: 'legacy' }));
      const res = await request(server).get('/').expect(200);
      expect(res.headers['x-ratelimit-limit']).toBe('5');
      expect(res.headers['x-ratelimit-remaining']).toBe('4');
      // resetAt = T0 + 60 250 ms = 1 700 000 060.25 s, rounded up.
      expect(res.headers['x-ratelimit-reset']).toBe('1700000061');
      expect(res.headers['x-ratelimit-source']).toBe('memory');
      expect(res.headers['ratelimit']).toBeUndefined();
      expect(res.headers['ratelimit-policy']).toBeUndefined();
    });

    it("'standard' sends RateLimit-Policy and RateLimit items only", async () => {
      const clock = new ManualClock(T0);
      const name = `standard-${kind}`;
      const middleware = limit({
        name,
        limit: 100,
        window: '1m',
        clock,
        headers: 'standard',
        key: () => 'std',
      });
      await middleware.limiter.consume('std', 57);
      clock.tick(30_000);
      const res = await request(app(middleware)).get('/').expect(200);
      expect(res.headers['ratelimit-policy']).toBe(`"${name}";q=100;w=60`);
      expect(res.headers['ratelimit']).toBe(`"${name}";r=42;t=30`);
      expect(res.headers['x-ratelimit-source']).toBe('memory');
      expect(res.headers['x-ratelimit-limit']).toBeUndefined();
      expect(res.headers['x-ratelimit-remaining']).toBeUndefined();
      expect(res.headers['x-ratelimit-reset']).toBeUndefined();
    });

    it.each(['both', undefined] as const)(
      'headers: %s sends legacy and standard headers',
      async headers => {
        const clock = new ManualClock(T0);
        const name = `both-${kind}-${String(headers)}`;
        const options: RateLimitOptions = { name, limit: 10, window: '1m', clock };
        if (headers !== undefined) options.headers = headers;
        const res = await request(app(limit(options)))
          .get('/')
          .expect(200);
        expect(res.headers).toMatchObject({
          'x-ratelimit-limit': '10',
          'x-ratelimit-remaining': '9',
          'x-ratelimit-reset': String((T0 + 60_000) / 1000),
          'ratelimit-policy': `"${name}";q=10;w=60`,
          ratelimit: `"${name}";r=9;t=60`,
          'x-ratelimit-source': 'memory',
        });
      },
    );

    it('headers: false sends no rate-limit headers, not even X-RateLimit-Source', async () => {
      const server = app(limit({ limit: 1, window: '1m', headers: false }));
      const allowed = await request(server).get('/').expect(200);
      expect(rateLimitHeaders(allowed)).toEqual([]);
      const limited = await request(server).get('/').expect(429);
      expect(rateLimitHeaders(limited)).toEqual([]);
    });

    it('keeps one RateLimit-Policy and RateLimit item per stacked limiter', async () => {
      const clock = new ManualClock(T0);
      const perMinute = limit({ name: `minute-${kind}`, limit: 5, window: '1m', clock });
      const perHour = limit({ name: `hour-${kind}`, limit: 10, window: '1h', clock });
      const res = await request(app(perMinute, perHour)).get('/').expect(200);
      expect(res.headers['ratelimit-policy']).toBe(
        `"minute-${kind}";q=5;w=60, "hour-${kind}";q=10;w=3600`,
      );
      expect(res.headers['ratelimit']).toBe(`"minute-${kind}";r=4;t=60, "hour-${kind}";r=9;t=3600`);
    });
  });

  describe('keys', () => {
    it.each(['sync', 'async'] as const)('separates clients by a %s key function', async mode => {
      const key =
        mode === 'sync' ? client : async (req: IncomingMessage): Promise<string> => client(req);
      const server = app(limit({ limit: 1, window: '1m', key }));
      await request(server).get('/').set('x-client', 'alice').expect(200);
      await request(server).get('/').set('x-client', 'alice').expect(429);
      const res = await request(server).get('/').set('x-client', 'bob').expect(200);
      expect(res.body.rateLimit).toMatchObject({ key: 'bob', remaining: 0 });
    });

    it('keys by client address by default and ignores a spoofed X-Forwarded-For', async () => {
      const logger = recordingLogger();
      const server = app(limit({ limit: 1, window: '1m', logger }));
      const first = await request(server)
        .get('/')
        .set('X-Forwarded-For', '203.0.113.1')
        .expect(200);
      expect(first.body.rateLimit.key).toBe('127.0.0.1');
      await request(server).get('/').set('X-Forwarded-For', '203.0.113.2').expect(429);
      // Express (not bare node:http) says once that 'trust proxy' is off.
      const warnings = logger.warn.mock.calls.map(([line]) => String(line));
      expect(warnings).toEqual(
        kind === 'http' ? [] : [expect.stringContaining("'trust proxy' is off")],
      );
    });

    it.each([
      ['an empty string', (): unknown => '', 'got ""'],
      ['undefined', (): unknown => undefined, 'got undefined'],
      ['a number', (): unknown => 42, 'got 42'],
      ['a number (async)', async (): Promise<unknown> => 42, 'got 42'],
    ])('passes a clear error to next(err) when key() returns %s', async (_label, key, got) => {
      const server = app(limit({ limit: 5, window: '1m', key: key as () => string }));
      const res = await request(server).get('/').expect(500);
      expect(res.body.error).toMatch(/key\(\) must return a non-empty string/);
      expect(res.body.error).toContain(got);
    });
  });

  describe('cost', () => {
    it('consumes a fixed cost per request', async () => {
      const server = app(limit({ limit: 5, window: '1m', cost: 2, key: () => 'k' }));
      await request(server).get('/').expect(200).expect('X-RateLimit-Remaining', '3');
      await request(server).get('/').expect(200).expect('X-RateLimit-Remaining', '1');
      // 2 units do not fit in the 1 left; the denied request consumes nothing.
      await request(server).get('/').expect(429).expect('X-RateLimit-Remaining', '1');
    });

    it.each(['sync', 'async'] as const)('consumes what a %s cost function returns', async mode => {
      const units = (req: IncomingMessage): number => Number(req.headers['x-cost'] ?? 1);
      const cost = mode === 'sync' ? units : async (req: IncomingMessage) => units(req);
      const server = app(limit({ limit: 5, window: '1m', cost, key: () => 'k' }));
      await request(server)
        .get('/')
        .set('x-cost', '4')
        .expect(200)
        .expect('X-RateLimit-Remaining', '1');
      await request(server)
        .get('/')
        .set('x-cost', '2')
        .expect(429)
        .expect('X-RateLimit-Remaining', '1');
      await request(server)
        .get('/')
        .set('x-cost', '1')
        .expect(200)
        .expect('X-RateLimit-Remaining', '0');
    });

    it.each([
      ['0', 0, 'got 0'],
      ['NaN', NaN, 'got NaN'],
      ['more than the limit', 6, 'got 6'],
      ['a fraction', 1.5, 'got 1.5'],
      ['a numeric string', '2', 'got "2"'],
    ])('passes a clear error to next(err) when cost() returns %s', async (_label, units, got) => {
      const middleware = limit({
        limit: 5,
        window: '1m',
        key: () => 'k',
        cost: () => units as number,
      });
      const res = await request(app(middleware)).get('/').expect(500);
      expect(res.body.error).toMatch(
        /cost\(\) must return a whole number from 1 to the limit \(5\)/,
      );
      expect(res.body.error).toContain(got);
      await expect(middleware.limiter.get('k')).resolves.toBeUndefined();
    });
  });

  describe('skip', () => {
    it.each(['sync', 'async'] as const)(
      'a %s skip() returning true sends no headers and counts nothing',
      async mode => {
        const skipped = (req: IncomingMessage): boolean => req.headers['x-skip'] === 'yes';
        const skip = mode === 'sync' ? skipped : async (req: IncomingMessage) => skipped(req);
        const middleware = limit({ limit: 1, window: '1m', skip });
        const server = app(middleware);
        for (let i = 0; i < 3; i++) {
          const res = await request(server).get('/').set('x-skip', 'yes').expect(200);
          expect(rateLimitHeaders(res)).toEqual([]);
          expect(res.body.rateLimit).toBeUndefined();
        }
        await expect(middleware.limiter.get('127.0.0.1')).resolves.toBeUndefined();
        await request(server).get('/').expect(200).expect('X-RateLimit-Remaining', '0');
        await request(server).get('/').expect(429);
      },
    );
  });

  describe('handler', () => {
    it('calls a custom handler with (req, res, next, result) when limited', async () => {
      const handler = jest.fn(
        (_req: IncomingMessage, res: ServerResponse, _next: unknown, result: RateLimitResult) => {
          res.statusCode = 418;
          res.setHeader('Content-Type', 'text/plain');
          res.end(`retry in ${result.retryAfterMs} ms`);
        },
      );
      const clock = new ManualClock(T0);
      const server = app(limit({ limit: 1, window: '1m', clock, key: () => 'h', handler }));
      await request(server).get('/').expect(200);
      expect(handler).not.toHaveBeenCalled();
      const res = await request(server).get('/').expect(418);
      expect(res.text).toBe('retry in 60000 ms');
      expect(res.headers['x-ratelimit-remaining']).toBe('0');
      expect(handler).toHaveBeenCalledTimes(1);
      const [req, , next, result] = handler.mock.calls[0] as unknown as [
        IncomingMessage & { rateLimit?: RateLimitResult },
        unknown,
        unknown,
        RateLimitResult,
      ];
      expect(typeof next).toBe('function');
      expect(result).toEqual({
        allowed: false,
        limit: 1,
        remaining: 0,
        resetAt: T0 + 60_000,
        retryAfterMs: 60_000,
        source: 'memory',
        key: 'h',
      });
      expect(req.rateLimit).toBe(result);
    });

    it('lets a custom handler pass the request on with next()', async () => {
      const server = app(
        limit({ limit: 1, window: '1m', key: () => 'h', handler: (_req, _res, next) => next() }),
      );
      await request(server).get('/').expect(200);
      const res = await request(server).get('/').expect(200);
      expect(res.body.rateLimit).toMatchObject({ allowed: false, remaining: 0 });
    });

    it('passes an error thrown by a custom handler to next(err)', async () => {
      const handler = (): void => {
        throw new Error('handler failed');
      };
      const server = app(limit({ limit: 1, window: '1m', key: () => 'h', handler }));
      await request(server).get('/').expect(200);
      const res = await request(server)
        .get('/')
        .timeout(1_000)
        .catch((error: Error) => error);
      expect(res).not.toBeInstanceOf(Error);
      expect((res as Response).status).toBe(500);
      expect((res as Response).body).toEqual({ error: 'handler failed' });
    });
  });

  describe('errors from request functions', () => {
    it.each([
      ['key', 'sync'],
      ['key', 'async'],
      ['cost', 'sync'],
      ['cost', 'async'],
      ['skip', 'sync'],
      ['skip', 'async'],
    ] as const)(
      'passes an error thrown by %s() (%s) to next(err) and counts nothing',
      async (option, mode) => {
        const message = `${option} failed (${mode})`;
        const options: RateLimitOptions =
          option === 'key'
            ? { limit: 2, window: '1m', key: failingWhenAsked(mode, message, 'k') }
            : option === 'cost'
              ? { limit: 2, window: '1m', key: () => 'k', cost: failingWhenAsked(mode, message, 1) }
              : {
                  limit: 2,
                  window: '1m',
                  key: () => 'k',
                  skip: failingWhenAsked(mode, message, false),
                };
        const middleware = limit(options);
        const server = app(middleware);
        for (let i = 0; i < 3; i++) {
          const res = await request(server).get('/').set('x-fail', '1').expect(500);
          expect(res.body).toEqual({ error: message });
          expect(rateLimitHeaders(res)).toEqual([]);
        }
        await expect(middleware.limiter.get('k')).resolves.toBeUndefined();
        await request(server).get('/').expect(200).expect('X-RateLimit-Remaining', '1');
      },
    );
  });

  describe('memory store full', () => {
    const full = { maxKeys: 1, whenFull: 'reject' } as const;

    it('answers 503 temporary-reduced-capacity with Retry-After on a fail-closed route', async () => {
      const server = app(limit({ limit: 5, window: '1m', key: client, memory: full }));
      await request(server).get('/').set('x-client', 'first').expect(200);
      const res = await request(server).get('/').set('x-client', 'second').expect(503);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.body).toEqual(
        expect.objectContaining({
          type: expect.stringMatching(/#temporary-reduced-capacity$/),
          title: expect.stringMatching(/\S/),
          status: 503,
          detail: expect.stringMatching(/\S/),
        }),
      );
      expect(res.headers['retry-after']).toMatch(/^[1-9]\d*$/);
      expect(res.headers['x-ratelimit-source']).toBe('memory');
      // The key already held is still decided.
      await request(server)
        .get('/')
        .set('x-client', 'first')
        .expect(200)
        .expect('X-RateLimit-Remaining', '3');
    });

    it('lets the request through with X-RateLimit-Source: bypass on a failClosed: false route', async () => {
      const server = app(
        limit({ limit: 5, window: '1m', key: client, memory: full, failClosed: false }),
      );
      await request(server)
        .get('/')
        .set('x-client', 'first')
        .expect(200)
        .expect('X-RateLimit-Source', 'memory');
      const res = await request(server).get('/').set('x-client', 'second').expect(200);
      expect(res.headers['x-ratelimit-source']).toBe('bypass');
      expect(res.headers['x-ratelimit-remaining']).toBeUndefined();
      expect(res.headers['ratelimit']).toBeUndefined();
      expect(res.body.rateLimit).toMatchObject({ allowed: true, source: 'bypass', key: 'second' });
    });
  });
});

describe.each(['express5', 'express4'] as const)('rateLimit() default key under %s', kind => {
  const app = (trustProxy: boolean, middleware: RateLimitMiddleware) =>
    createAppWith(kind as AppKind, { trustProxy }, middleware);

  it('separates clients by X-Forwarded-For when trust proxy is on', async () => {
    const logger = recordingLogger();
    const server = app(true, limit({ limit: 1, window: '1m', logger }));
    const first = await request(server).get('/').set('X-Forwarded-For', '203.0.113.1').expect(200);
    expect(first.body.rateLimit.key).toBe('203.0.113.1');
    await request(server).get('/').set('X-Forwarded-For', '203.0.113.1').expect(429);
    const other = await request(server).get('/').set('X-Forwarded-For', '203.0.113.2').expect(200);
    expect(other.body.rateLimit.key).toBe('203.0.113.2');
    const warnings = logger.warn.mock.calls.map(([line]) => String(line));
    expect(warnings).toEqual([expect.stringContaining("'trust proxy' is true")]);
  });

  it('ignores a spoofed X-Forwarded-For when trust proxy is off', async () => {
    const logger = recordingLogger();
    const server = app(false, limit({ limit: 1, window: '1m', logger }));
    const first = await request(server).get('/').set('X-Forwarded-For', '203.0.113.1').expect(200);
    expect(first.body.rateLimit.key).toBe('127.0.0.1');
    await request(server).get('/').set('X-Forwarded-For', '203.0.113.2').expect(429);
    const warnings = logger.warn.mock.calls.map(([line]) => String(line));
    expect(warnings).toEqual([expect.stringContaining("'trust proxy' is off")]);
  });
});
