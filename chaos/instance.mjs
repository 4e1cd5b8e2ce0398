// @ts-check
// One app instance of the chaos run, in the driver's process: its own ioredis
// client (built fail-fast like README's "Recommended ioredis settings"), its
// own MemoryStore, one RateLimiter per rule, and a clock the driver can skew.
// Only the package's public API is used, through its `exports` map (dist/).
import { performance } from 'node:perf_hooks';
import { Cluster, Redis } from 'ioredis';
import { MemoryStore, RateLimiter } from 'resilient-rate-limit';

/** Per-call Redis budget of every chaos limiter (the package default). */
export const TIMEOUT_MS = 100;
/** Opens after 3 failures, probes again after 0.5 s: many outages per minute. */
export const BREAKER = { threshold: 3, halfOpenAfter: 500 };
/** Far above the keys a run touches, so nothing it needs is evicted. */
export const MAX_KEYS = 100_000;

/**
 * @typedef {{ name: string, algorithm: 'fixed-window' | 'sliding-window' | 'token-bucket',
 *   limit: number, windowMs: number }} ChaosRule
 */

/** The rules every instance applies: all three algorithms, windows of 2-3 s. */
export const RULES = /** @type {ChaosRule[]} */ ([
  { name: 'chaos-fixed', algorithm: 'fixed-window', limit: 5, windowMs: 3000 },
  { name: 'chaos-sliding', algorithm: 'sliding-window', limit: 6, windowMs: 2000 },
  { name: 'chaos-bucket', algorithm: 'token-bucket', limit: 5, windowMs: 3000 },
]);

const FAIL_FAST = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  autoResendUnfulfilledCommands: false,
  connectTimeout: 1000,
  enableAutoPipelining: true,
  /** @param {number} times */
  retryStrategy: times => Math.min(50 * 2 ** Math.min(times, 6), 2000),
  disconnectTimeout: 200,
};

/**
 * @param {{ index: number, ports: number[], cluster: boolean }} options
 */
export function createInstance({ index, ports, cluster }) {
  /** Ms added to the reference clock (Date.now()); the driver jumps it. */
  let offsetMs = 0;
  // Only the wall clock steps, as on a real host; the monotonic one does not.
  const clock = { now: () => Date.now() + offsetMs, monotonic: () => performance.now() };
  /** @type {Redis | Cluster} */
  const client = cluster
    ? new Cluster(
        ports.map(port => ({ host: '127.0.0.1', port })),
        {
          enableOfflineQueue: false,
          enableAutoPipelining: true,
          clusterRetryStrategy: times => Math.min(100 * times, 1000),
          redisOptions: { ...FAIL_FAST },
        },
      )
    : new Redis(/** @type {number} */ (ports[0]), '127.0.0.1', FAIL_FAST);
  // Failures surface through the limiter (fallback, storeError); without a
  // listener ioredis prints every reconnect error.
  client.on('error', () => undefined);
  // The store sweeps expired entries on its own clock: the instance's clock,
  // as an app's system clock would be for both.
  const memory = new MemoryStore({ maxKeys: MAX_KEYS, clock });
  /** What the package logged: counted and shown in the report, never printed. */
  const logs = { warn: 0, error: 0, info: 0, lastWarning: '' };
  /** @param {'warn' | 'error' | 'info'} level */
  const log = level => (/** @type {string} */ message) => {
    logs[level]++;
    if (level === 'warn') logs.lastWarning = message;
  };
  const logger = { warn: log('warn'), error: log('error'), info: log('info') };
  const events = { breakerOpen: 0, breakerClose: 0, storeError: 0 };
  const limiters = RULES.map(
    rule =>
      new RateLimiter({
        name: rule.name,
        algorithm: rule.algorithm,
        limit: rule.limit,
        window: rule.windowMs,
        redis: client,
        timeout: TIMEOUT_MS,
        breaker: BREAKER,
        memory,
        clock,
        redisTime: 'redis',
        logger,
      }),
  );
  const first = /** @type {RateLimiter} */ (limiters[0]);
  // One breaker per client: every limiter emits its events; count them once.
  first.on('breakerOpen', () => events.breakerOpen++);
  first.on('breakerClose', () => events.breakerClose++);
  for (const limiter of limiters) limiter.on('storeError', () => events.storeError++);
  return {
    index,
    clock,
    limiters,
    memory,
    logs,
    events,
    get offsetMs() {
      return offsetMs;
    },
    /** @param {number} deltaMs */
    jump(deltaMs) {
      offsetMs += deltaMs;
    },
    /** Resolves once every rule decides in Redis (the client connects in the background). */
    async warmUp(timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (const limiter of limiters) {
        for (;;) {
          const result = await limiter.consume(`warmup-${index}`);
          if (result.source === 'redis') break;
          if (Date.now() > deadline) throw new Error(`instance ${index}: Redis never decided`);
          await new Promise(resolve => setTimeout(resolve, 100));
        }
      }
    },
    async close() {
      await Promise.all(limiters.map(limiter => limiter.close()));
      memory.close();
      client.disconnect();
    },
  };
}
