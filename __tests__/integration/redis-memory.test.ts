import { RateLimiter, type AlgorithmName } from '../../lib/index.js';
import { whenConnected } from '../helpers/every-feature.js';
import { RedisProcess } from '../helpers/redis-process.js';
import { recordingLogger } from '../helpers/redis.js';

// What one limited key costs Redis, against the least any limiter can store
// for it: a plain counter (a string key with a TTL) of the same name. The
// README's attacker-storage bound is stated in these bytes (bench/memory.mjs
// measures them over 10 000 keys); growing a key past twice a counter would
// break it.

const ALGORITHMS: AlgorithmName[] = ['fixed-window', 'sliding-window', 'token-bucket'];
const KEY = '2001:db8:ab:cd00::/56';

let redis: RedisProcess;

beforeAll(async () => {
  redis = await RedisProcess.start();
});

afterAll(async () => {
  await redis.stop();
});

async function memoryUsage(key: string): Promise<number> {
  return Number(await redis.command('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
}

describe('Redis memory per limited key', () => {
  it.each(ALGORITHMS)('%s stores at most twice what a plain counter needs', async algorithm => {
    const url = `redis://127.0.0.1:${redis.port}`;
    const name = `mem-${algorithm}`;
    const redisKey = `rl:{${name}|${KEY}}`;
    const counterKey = `rl:{${name}|${KEY}}:counter`;
    await redis.command('SET', counterKey, '1', 'PX', '60000');
    const limiter = new RateLimiter({
      name,
      limit: 100,
      window: '1m',
      algorithm,
      redis: url,
      logger: recordingLogger(),
    });
    try {
      await whenConnected(url, async () => {
        for (let i = 0; i < 3; i++) {
          await expect(limiter.consume(KEY)).resolves.toMatchObject({ source: 'redis' });
        }
      });
      const counter = await memoryUsage(counterKey);
      const limited = await memoryUsage(redisKey);
      expect(counter).toBeGreaterThan(0);
      // The counter's name is 8 bytes longer, which only favours the limited key.
      expect(limited).toBeLessThanOrEqual(2 * counter);
      // The key expires with its window (plus slack), so a flood cannot outlive it.
      const ttl = Number(await redis.command('PTTL', redisKey));
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual((algorithm === 'sliding-window' ? 120_000 : 60_000) + 1000);
    } finally {
      await limiter.close();
    }
  });
});
