import type { Redis } from 'ioredis';
import type { AlgorithmName } from '../../lib/types.js';
import type { RedisProcess } from '../helpers/redis-process.js';
import { countedUnits, eventually, ready, redisPerFile, uniqueName } from '../helpers/redis.js';
import { proxiedLimiter } from '../helpers/proxied-limiter.js';

/*
 * Outage hits reach Redis even when no request follows the outage. Before,
 * only a request could probe an open breaker, so an instance that went idle
 * kept its hits in memory until the next request, and `close()` dropped
 * them: the other instances never counted them.
 */

const WINDOW_MS = 86_400_000;
const HALF_OPEN_AFTER_MS = 100;

let redis: RedisProcess;
let admin: Redis;
redisPerFile(started => ({ redis, admin } = started));

/** A limiter whose breaker opened on a refused connection, with 3 outage hits over `keys`. */
async function afterOutage(algorithm: AlgorithmName, keys = ['k']) {
  const name = uniqueName(`idle-${algorithm}`);
  const built = await proxiedLimiter(redis.port, {
    name,
    algorithm,
    limit: 5,
    window: WINDOW_MS,
    timeout: 200,
    breaker: { threshold: 1, halfOpenAfter: HALF_OPEN_AFTER_MS },
  });
  const { proxy, client, limiter } = built;
  proxy.refuse = true;
  proxy.cutAll();
  for (let i = 0; i < 3; i++) {
    expect((await limiter.consume(keys[i % keys.length]!)).source).toBe('memory');
  }
  expect(limiter.breakerState).toBe('open');
  expect(limiter.pendingReconciliation).toBe(3);
  proxy.refuse = false;
  await ready(client);
  const units = () => countedUnits(admin, `rl:{${name}|k}`, algorithm, WINDOW_MS, 5);
  return { ...built, units };
}

describe.each(['fixed-window', 'sliding-window', 'token-bucket'] as AlgorithmName[])(
  '%s: outage hits with no request after the outage',
  algorithm => {
    it('are written back by the timer, which probes the open breaker', async () => {
      const t = await afterOutage(algorithm);
      try {
        await eventually(() => t.limiter.pendingReconciliation === 0, 8000);
        expect(await t.units()).toBe(3);
        expect(t.limiter.breakerState).toBe('closed');
      } finally {
        await t.tearDown();
      }
    }, 15_000);

    it('are written back by close() once the breaker is due for a probe', async () => {
      const t = await afterOutage(algorithm);
      await new Promise(resolve => setTimeout(resolve, HALF_OPEN_AFTER_MS + 20));
      await t.tearDown();
      expect(await t.units()).toBe(3);
      expect(t.logger.warn.mock.calls.flat().join('\n')).not.toMatch(/closed with/);
    });

    it('are reported by close() when Redis cannot take them', async () => {
      const t = await afterOutage(algorithm);
      // Still open: close() does not wait for Redis.
      await t.tearDown();
      expect(await t.units()).toBe(0);
      expect(t.logger.warn).toHaveBeenCalledWith(
        expect.stringMatching(/closed with 3 hits admitted during an outage/),
      );
    });

    it('are all written within a second of the probe closing the breaker', async () => {
      // Found by an attack: the timer's probe wrote one key and skipped the
      // rest of its batch while the breaker was open; they then waited for
      // the backed-off retry (99 of 300 hits for 30 s).
      const t = await afterOutage(algorithm, ['a', 'b', 'c']);
      try {
        let closedAt = 0;
        t.limiter.once('breakerClose', () => (closedAt = Date.now()));
        await eventually(() => closedAt > 0, 8000);
        await eventually(() => t.limiter.pendingReconciliation === 0, 1000);
      } finally {
        await t.tearDown();
      }
    }, 15_000);
  },
);
