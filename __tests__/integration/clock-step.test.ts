import type { Redis } from 'ioredis';
import { MemoryStore, RateLimiter } from '../../lib/index.js';
import type { AlgorithmName } from '../../lib/types.js';
import { RedisProcess } from '../helpers/redis-process.js';
import { failFastClient, ready, recordingLogger, uniqueName } from '../helpers/redis.js';

/*
 * A wall-clock step on an app instance (NTP, a VM resumed) between Redis
 * losing a key and the key's next call: the count this instance saw must
 * still be restored. Ages are read off the clock's monotonic side, which
 * never steps; Redis TIME stays the authority.
 */

let redis: RedisProcess;
let client: Redis;
let admin: Redis;

beforeAll(async () => {
  redis = await RedisProcess.start();
  client = failFastClient(redis.port);
  admin = failFastClient(redis.port);
  await Promise.all([ready(client), ready(admin)]);
});

afterAll(async () => {
  client.disconnect();
  admin.disconnect();
  await redis.stop();
});

describe.each(['fixed-window', 'sliding-window', 'token-bucket'] as AlgorithmName[])(
  '%s: a wall-clock step, then Redis data loss',
  algorithm => {
    it.each([-30_000, 30_000])('restores the count this instance saw (step %i ms)', async step => {
      let offset = 0;
      const clock = { now: () => Date.now() + offset, monotonic: () => performance.now() };
      const memory = new MemoryStore({ clock });
      const limiter = new RateLimiter({
        name: uniqueName(algorithm),
        limit: 5,
        window: '1h',
        algorithm,
        redis: client,
        clock,
        memory,
        timeout: 1000,
        logger: recordingLogger(),
      });
      try {
        for (let i = 0; i < 3; i++) {
          expect(await limiter.consume('k')).toMatchObject({ allowed: true, source: 'redis' });
        }
        offset = step;
        await admin.flushdb();
        const after = [];
        for (let i = 0; i < 4; i++) after.push((await limiter.consume('k')).allowed);
        // 3 were spent before the loss: at most 2 more, not a fresh 5. (A
        // token bucket may also refill a little meanwhile, so the order of
        // allowed and denied is not fixed; the total is.)
        expect(after[0]).toBe(true);
        expect(after.filter(Boolean).length).toBeLessThanOrEqual(2);
      } finally {
        await limiter.close();
        memory.close();
      }
    });
  },
);
