// @ts-check
// One Express 5 server answering GET / with a tiny JSON, behind one variant
// of rate limiting. Started as a separate process by bench/run.mjs and
// bench/outage.mjs so its CPU time can be read from /proc/<pid>/stat.
//
//   node bench/server.mjs <variant> <port> [redisPort] [--half-open-after=<ms>]
//
// Every limit is far above what the bench can send, so every request takes
// the allow path. Each limiter uses its library's defaults otherwise (key =
// client IP, default headers), as a user following its README would.
// Prints one JSON line {"ready":true,...} once it is listening and warm.
import express from 'express';
import { Redis } from 'ioredis';
import { rateLimit as erlRateLimit } from 'express-rate-limit';
import { RedisStore as ErlRedisStore } from 'rate-limit-redis';
import { RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible';
// The built package through its own `exports` map: what ships.
import { rateLimit } from 'resilient-rate-limit';
import { buildReadmeClient } from './lib/readme-client.mjs';
import { needsRedisPort, VARIANTS } from './lib/variants.mjs';

const LIMIT = 1_000_000_000;
const WINDOW_MS = 3_600_000;

/** @param {number} ms */
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

/**
 * @param {string} variant
 * @param {number | undefined} redisPort
 * @param {{ halfOpenAfter?: number }} flags
 * @returns {Promise<{ middleware?: import('express').RequestHandler, info: Record<string, unknown>, close?: () => void }>}
 */
async function build(variant, redisPort, flags) {
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const needsRedis = needsRedisPort(variant);
  if (needsRedis && !redisPort) throw new Error(`${variant} needs a redis port`);
  const breaker = flags.halfOpenAfter ? { halfOpenAfter: flags.halfOpenAfter } : undefined;

  switch (variant) {
    case 'bare':
    case 'bare-aa':
      return { info: {} };

    case 'bare-headers':
      return {
        middleware: (_req, res, next) => {
          res.setHeader('X-RateLimit-Source', 'memory');
          res.setHeader('X-RateLimit-Limit', '1000000000');
          res.setHeader('X-RateLimit-Remaining', '999999999');
          res.setHeader('X-RateLimit-Reset', '1795720000');
          res.setHeader('RateLimit-Policy', '"bench";q=1000000000;w=3600');
          res.setHeader('RateLimit', '"bench";r=999999999;t=3600');
          next();
        },
        info: {},
      };

    case 'rrl-memory-noheaders':
      return {
        middleware: rateLimit({ name: 'bench', limit: LIMIT, window: WINDOW_MS, headers: false }),
        info: {},
      };

    case 'rrl-memory':
      return {
        middleware: rateLimit({ name: 'bench', limit: LIMIT, window: WINDOW_MS }),
        info: {},
      };

    case 'rrl-redis':
    case 'rrl-share-redis': {
      const mw = rateLimit({
        name: 'bench',
        limit: LIMIT,
        window: WINDOW_MS,
        redis: redisUrl,
        breaker,
        fallbackLimit: variant === 'rrl-share-redis' ? 'share' : undefined,
      });
      // The URL client connects in the background; give it time rather than
      // spending breaker failures on it (5 in a row would open it).
      for (let i = 0; i < 4; i++) {
        await sleep(250);
        if ((await mw.limiter.consume('bench-warmup')).source === 'redis') break;
      }
      return { middleware: mw, info: { breaker: mw.limiter.breakerState } };
    }

    case 'rrl-redis-readme':
    case 'rrl-redis-readme-aa':
    case 'rrl-redis-plain': {
      // readme: the client README "Recommended ioredis settings" builds, its
      // snippet copied verbatim (bench/lib/readme-client.mjs). plain: what a
      // user who skips those settings runs, `new Redis(url)` and an error
      // listener (the package warns once about the offline queue).
      const client =
        variant !== 'rrl-redis-plain'
          ? buildReadmeClient(redisUrl, console)
          : new Redis(redisUrl).on('error', () => undefined);
      await waitReady(client);
      const mw = rateLimit({ name: 'bench', limit: LIMIT, window: WINDOW_MS, redis: client });
      if ((await mw.limiter.consume('bench-warmup')).source !== 'redis') {
        throw new Error(`${variant}: the warm-up decision did not come from Redis`);
      }
      return {
        middleware: mw,
        info: { breaker: mw.limiter.breakerState },
        close: () => client.disconnect(),
      };
    }

    case 'rrl-breaker-open': {
      // redisPort is a port nothing listens on: every call fails at once
      // (no offline queue), the breaker opens after 5 and stays open; the
      // memory fallback decides. One probe every halfOpenAfter (30 s).
      const mw = rateLimit({
        name: 'bench',
        limit: LIMIT,
        window: WINDOW_MS,
        redis: redisUrl,
        breaker,
        logger: { warn() {}, info() {}, error() {} },
      });
      for (let i = 0; i < 100 && mw.limiter.breakerState !== 'open'; i++) {
        await mw.limiter.consume('bench-warmup');
      }
      if (mw.limiter.breakerState !== 'open') throw new Error('breaker did not open');
      return { middleware: mw, info: { breaker: mw.limiter.breakerState } };
    }

    case 'erl-memory':
      return { middleware: erlRateLimit({ windowMs: WINDOW_MS, limit: LIMIT }), info: {} };

    case 'erl-redis': {
      // rate-limit-redis README, ioredis flavour: a default client.
      const client = new Redis(redisUrl);
      client.on('error', () => undefined);
      await waitReady(client);
      const store = new ErlRedisStore({
        // @ts-expect-error ioredis `call` returns Promise<unknown>
        sendCommand: (command, ...args) => client.call(command, ...args),
      });
      return {
        middleware: erlRateLimit({ windowMs: WINDOW_MS, limit: LIMIT, store }),
        info: {},
        close: () => client.disconnect(),
      };
    }

    case 'rlf-memory':
      return {
        middleware: rlfMiddleware(
          new RateLimiterMemory({ points: LIMIT, duration: WINDOW_MS / 1000 }),
        ),
        info: {},
      };

    case 'rlf-redis': {
      // rate-limiter-flexible's docs (CONTEXT.md "Express Middleware" in its
      // package: `new Redis({ enableOfflineQueue: false })`), and its
      // "Insurance Strategy": a memory limiter that decides when Redis fails.
      const client = new Redis(redisUrl, { enableOfflineQueue: false });
      client.on('error', () => undefined);
      await waitReady(client);
      const limiter = new RateLimiterRedis({
        storeClient: client,
        points: LIMIT,
        duration: WINDOW_MS / 1000,
        insuranceLimiter: new RateLimiterMemory({ points: LIMIT, duration: WINDOW_MS / 1000 }),
      });
      return { middleware: rlfMiddleware(limiter), info: {}, close: () => client.disconnect() };
    }

    default:
      throw new Error(`unknown variant '${variant}'; one of ${VARIANTS.join(', ')}`);
  }
}

/**
 * The middleware from rate-limiter-flexible's Express example, with store
 * errors passed on instead of being reported as 429.
 * @param {import('rate-limiter-flexible').RateLimiterAbstract} limiter
 * @returns {import('express').RequestHandler}
 */
function rlfMiddleware(limiter) {
  return (req, res, next) => {
    limiter
      .consume(/** @type {string} */ (req.ip))
      .then(() => next())
      .catch(rejection => {
        if (rejection instanceof Error) next(rejection);
        else res.status(429).send('Too Many Requests');
      });
  };
}

/** @param {Redis} client */
function waitReady(client) {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('redis not ready in 5 s')), 5000);
    client.once('ready', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
  });
}

async function main() {
  const [variant, portText, redisPortText, ...rest] = process.argv.slice(2);
  if (!variant || !portText) {
    throw new Error(
      'usage: node bench/server.mjs <variant> <port> [redisPort] [--half-open-after=<ms>]',
    );
  }
  const flags = {};
  for (const arg of [redisPortText, ...rest]) {
    const match = /^--half-open-after=(\d+)$/.exec(arg ?? '');
    if (match) flags.halfOpenAfter = Number(match[1]);
  }
  const redisPort = /^\d+$/.test(redisPortText ?? '') ? Number(redisPortText) : undefined;
  const { middleware, info, close } = await build(variant, redisPort, flags);

  /** @type {import('resilient-rate-limit').RateLimiter | undefined} */
  const limiter = /** @type {any} */ (middleware)?.limiter;
  // Counted only when the fallback decides, so the allow path pays nothing.
  let fallbacks = 0;
  if (/^rrl-.*redis/.test(variant)) limiter?.on('fallback', () => fallbacks++);

  const app = express();
  // Read by the bench between runs: did the variant stay on its path?
  app.get('/__bench', (_req, res) => {
    res.json({
      variant,
      fallbacks,
      breaker: limiter?.breakerState ?? null,
      liveInstances: limiter?.liveInstances ?? null,
    });
  });
  if (middleware) app.use(middleware);
  app.get('/', (_req, res) => {
    res.json({ ok: true });
  });

  const server = app.listen(Number(portText), '127.0.0.1', () => {
    process.stdout.write(
      JSON.stringify({ ready: true, variant, port: Number(portText), pid: process.pid, ...info }) +
        '\n',
    );
  });
  server.keepAliveTimeout = 60_000;
  const stop = () => {
    close?.();
    server.closeAllConnections();
    server.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 500).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch(error => {
  console.error(`server: ${error instanceof Error ? error.stack : error}`);
  process.exit(1);
});
