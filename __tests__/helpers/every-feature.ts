import { ConsecutiveBreaker, circuitBreaker, handleAll } from 'cockatiel';
import { RateLimiter, type AlgorithmName, type RedisClient } from '../../lib/index.js';
import { findInstanceRegistry, type InstanceRegistry } from '../../lib/instance-registry.js';
import { acquireUrlClient, releaseUrlClient } from '../../lib/redis-client.js';
import { ready, uniqueName } from './redis.js';

/**
 * Runs `fn` once the client the package uses for `redis` (its shared URL
 * client, or the client itself) is connected, so no decision falls back just
 * because it came first.
 */
export async function whenConnected<T>(
  redis: RedisClient | string,
  fn: () => Promise<T>,
): Promise<T> {
  const client = typeof redis === 'string' ? acquireUrlClient(redis) : redis;
  try {
    await ready(client as Parameters<typeof ready>[0]);
    return await fn();
  } finally {
    if (typeof redis === 'string') await releaseUrlClient(redis);
  }
}

const REGISTRY_HORIZON_MS = 30_000;

/** The instance registry the package keeps for `redis` and the default prefix, if any. */
function registryOf(redis: RedisClient | string): InstanceRegistry | undefined {
  const client = typeof redis === 'string' ? acquireUrlClient(redis) : redis;
  try {
    return findInstanceRegistry(client, 'rl:', REGISTRY_HORIZON_MS);
  } finally {
    if (typeof redis === 'string') releaseUrlClient(redis);
  }
}

const ALGORITHMS: readonly AlgorithmName[] = ['fixed-window', 'sliding-window', 'token-bucket'];

type Recorder = { warn: jest.Mock; error: jest.Mock; info: jest.Mock };

/** What the run saw besides its own assertions. */
export type FeatureRun = { storeErrors: unknown[] };

/**
 * Drives every feature that talks to Redis through the public API, and
 * expects each to be decided in Redis: consume (allowed and denied, every
 * algorithm), get, reset, a decision after the script cache was flushed
 * (NOSCRIPT, then EVAL), reconciliation of hits admitted during an outage,
 * and the instance registry of `fallbackLimit: 'share'` (a refresh, and the
 * removal on close). `flushScripts` runs SCRIPT FLUSH as an admin. Used by the ACL tests,
 * so a feature added to the package belongs here too.
 */
export async function exerciseEveryFeature(
  redis: RedisClient | string,
  flushScripts: () => Promise<unknown>,
  logger: Recorder,
): Promise<FeatureRun> {
  return whenConnected(redis, () => exercise(redis, flushScripts, logger, true));
}

/**
 * The same calls as exerciseEveryFeature, expecting nothing: for a Redis user
 * that lacks a right, where some calls fall back or reject.
 */
export async function touchEveryFeature(
  redis: RedisClient | string,
  flushScripts: () => Promise<unknown>,
  logger: Recorder,
): Promise<FeatureRun> {
  return whenConnected(redis, () => exercise(redis, flushScripts, logger, false));
}

async function exercise(
  redis: RedisClient | string,
  flushScripts: () => Promise<unknown>,
  logger: Recorder,
  strict: boolean,
): Promise<FeatureRun> {
  const storeErrors: unknown[] = [];
  const limiters: RateLimiter[] = [];
  const make = (options: Partial<ConstructorParameters<typeof RateLimiter>[0]> = {}) => {
    const limiter = new RateLimiter({
      name: uniqueName('feature'),
      limit: 2,
      window: '1h',
      redis,
      logger,
      timeout: 1000,
      ...options,
    });
    limiter.on('storeError', error => storeErrors.push(error));
    limiters.push(limiter);
    return limiter;
  };
  const resolves = async (promise: Promise<unknown>, shape?: object): Promise<void> => {
    if (!strict) await promise.catch(() => undefined);
    else if (shape) await expect(promise).resolves.toMatchObject(shape);
    else await promise;
  };
  const equals = (actual: unknown, expected: unknown): void => {
    if (strict) expect(actual).toEqual(expected);
  };
  try {
    // fallbackLimit 'share': the instance registry writes this instance's
    // presence and reads the live count (one EVAL, refreshed by a timer), and
    // close() removes it (ZREM, not awaited). First, so that the calls below,
    // on the same connection, return only after Redis has run the ZREM.
    const shared = make({ fallbackLimit: 'share', instanceHorizon: REGISTRY_HORIZON_MS });
    await resolves(shared.consume('k'), { source: 'redis', allowed: true });
    const registry = registryOf(redis);
    equals({ registry: registry !== undefined }, { registry: true });
    // Joins the refresh acquire() started (or starts one): no sleep.
    await registry?.refresh();
    equals({ registryRefreshed: registry?.hasSeenRedis }, { registryRefreshed: true });
    await shared.close();

    for (const algorithm of ALGORITHMS) {
      const limiter = make({ algorithm });
      await resolves(limiter.consume('k'), { source: 'redis', allowed: true });
      await resolves(limiter.consume('k'), { source: 'redis', allowed: true });
      await resolves(limiter.consume('k'), { source: 'redis', allowed: false });
      await resolves(limiter.get('k'), { source: 'redis', remaining: 0 });
      await resolves(limiter.reset('k'));
      await resolves(limiter.consume('k'), { source: 'redis', allowed: true, remaining: 1 });
    }

    await flushScripts();
    await resolves(make().consume('after-flush'), { source: 'redis' });

    // An outage on a breaker of its own (isolated by hand), then recovery:
    // the hit memory admitted is written back to Redis.
    const policy = circuitBreaker(handleAll, {
      halfOpenAfter: 60_000,
      breaker: new ConsecutiveBreaker(5),
    });
    const outage = make({ breaker: policy });
    const isolation = policy.isolate();
    await resolves(outage.consume('k'), { source: 'memory' });
    equals(outage.pendingReconciliation, 1);
    isolation.dispose();
    await outage.reconcile();
    equals(outage.pendingReconciliation, 0);
    await resolves(outage.get('k'), { source: 'redis', remaining: 1 });
  } finally {
    await Promise.all(limiters.map(limiter => limiter.close()));
  }
  return { storeErrors };
}
