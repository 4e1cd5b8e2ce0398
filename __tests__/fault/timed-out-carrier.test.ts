import { circuitBreaker, ConsecutiveBreaker, handleAll } from 'cockatiel';
import type { Redis } from 'ioredis';
import type { AlgorithmName } from '../../lib/types.js';
import { DECIDE_SCRIPTS } from '../../lib/stores/redis-scripts.js';
import type { RedisProcess } from '../helpers/redis-process.js';
import { countedUnits, eventually, redisPerFile, uniqueName } from '../helpers/redis.js';
import { proxiedLimiter } from '../helpers/proxied-limiter.js';

/*
 * A call that carries a key's outage hits to Redis and times out may still
 * run there. Before, its hits stayed pending and the next call for the key
 * sent them again: a Redis slower than the timeout counted them once per
 * attempt. Now they wait for Redis's own answer: counted once when it comes,
 * pending again only if the call fails or never reached Redis.
 */

const TIMEOUT_MS = 200;
const WINDOW_MS = 86_400_000;
const LIMIT = 5;

let redis: RedisProcess;
let admin: Redis;
redisPerFile(started => ({ redis, admin } = started));

async function setUp(algorithm: AlgorithmName) {
  const name = uniqueName(`carrier-${algorithm}`);
  const built = await proxiedLimiter(redis.port, {
    name,
    algorithm,
    limit: LIMIT,
    window: WINDOW_MS,
    timeout: TIMEOUT_MS,
    // Never opens: every call in these tests goes to Redis.
    breaker: circuitBreaker(handleAll, {
      halfOpenAfter: 60_000,
      breaker: new ConsecutiveBreaker(1000),
    }),
  });
  /** The units Redis counts for the key: the count, or a bucket's debt in units. */
  const units = () => countedUnits(admin, `rl:{${name}|k}`, algorithm, WINDOW_MS, LIMIT);
  return { ...built, units };
}

describe.each(['fixed-window', 'sliding-window', 'token-bucket'] as AlgorithmName[])(
  '%s: outage hits carried by a call that timed out',
  algorithm => {
    it('are counted once when Redis answers late, however many calls follow', async () => {
      const t = await setUp(algorithm);
      try {
        t.proxy.delayMs = 2.5 * TIMEOUT_MS;
        // Each is decided by memory: the first two time out in Redis (the
        // second carrying the first one's hit), the third times out waiting
        // for the second's answer, which its own call would have to follow.
        for (let i = 0; i < 3; i++) expect((await t.limiter.consume('k')).source).toBe('memory');
        t.proxy.delayMs = 0;
        await eventually(() => t.limiter.pendingReconciliation === 0, 5000);
        // 2 timed-out decisions that Redis ran anyway (over-counted, the safe
        // side: SPEC) and the 3 fallback hits, the last two written back.
        // Sending the hits of a call that timed out again counted 8.
        expect(await t.units()).toBe(5);
      } finally {
        await t.tearDown();
      }
    }, 15_000);

    it('are sent again when the call never reached Redis', async () => {
      const t = await setUp(algorithm);
      try {
        t.proxy.blackhole = true;
        for (let i = 0; i < 2; i++) expect((await t.limiter.consume('k')).source).toBe('memory');
        // The first fallback hit waits for the answer of the second call,
        // which carries it; the second is pending.
        expect(t.limiter.pendingReconciliation).toBe(2);
        // The connection breaks: both commands fail, never having run.
        t.proxy.cutAll();
        t.proxy.blackhole = false;
        await eventually(() => t.limiter.pendingReconciliation === 0, 10_000);
        // Both fallback hits, once: none lost with the call that failed.
        expect(await t.units()).toBe(2);
      } finally {
        await t.tearDown();
      }
    }, 15_000);

    it('still count for the calls Redis runs before the late one', async () => {
      const t = await setUp(algorithm);
      const admitted = { memory: 0, redis: 0 };
      const consume = async () => {
        const result = await t.limiter.consume('k');
        if (result.allowed) admitted[result.source === 'redis' ? 'redis' : 'memory']++;
        return result;
      };
      try {
        // An outage: memory opens the key's window and admits its limit.
        t.proxy.refuse = true;
        t.proxy.cutAll();
        await eventually(() => t.client.status !== 'ready', 5000);
        for (let i = 0; i < LIMIT + 1; i++) await consume();
        expect(admitted.memory).toBe(LIMIT);
        t.proxy.refuse = false;
        await eventually(() => t.client.status === 'ready', 5000);
        await new Promise(resolve => setTimeout(resolve, 100)); // the preload's SCRIPT LOADs
        // The script cache is empty: the call carrying the outage hits meets
        // NOSCRIPT, and its EVAL leaves only when that slow reply is back,
        // after the timeout.
        await admin.script('FLUSH');
        t.proxy.delayMs = 0.75 * TIMEOUT_MS;
        expect((await consume()).source).toBe('memory');
        // Another client loads the script meanwhile: the calls sent now run
        // in Redis before that EVAL.
        await admin.script('LOAD', DECIDE_SCRIPTS[algorithm].source);
        t.proxy.delayMs = 0;
        await Promise.all(Array.from({ length: LIMIT }, () => consume()));
        // They count the outage hits they waited for, not from 0 (10 before).
        expect(admitted.memory + admitted.redis).toBe(LIMIT);
        await eventually(() => t.limiter.pendingReconciliation === 0, 5000);
      } finally {
        await t.tearDown();
      }
    }, 15_000);
  },
);
