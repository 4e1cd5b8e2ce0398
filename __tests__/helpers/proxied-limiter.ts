import type { Redis } from 'ioredis';
import { MemoryStore, RateLimiter } from '../../lib/index.js';
import type { RateLimiterOptions } from '../../lib/options.js';
import { failFastClient, ready, recordingLogger } from './redis.js';
import { TcpProxy } from './tcp-proxy.js';

/**
 * A limiter whose fail-fast client reaches Redis (on `redisPort`) through a
 * TcpProxy, for latency, hangs and cuts; its own memory store and a
 * recording logger; `storeError` events swallowed. `tearDown()` closes all.
 */
export async function proxiedLimiter(
  redisPort: number,
  options: Omit<RateLimiterOptions, 'redis' | 'memory' | 'logger'>,
  beforeCreate?: (client: Redis) => void,
) {
  const proxy = await TcpProxy.start({ host: '127.0.0.1', port: redisPort });
  const client = failFastClient(proxy.port);
  await ready(client);
  beforeCreate?.(client);
  const memory = new MemoryStore();
  const logger = recordingLogger();
  const limiter = new RateLimiter({ ...options, redis: client, memory, logger });
  limiter.on('storeError', () => undefined);
  return {
    proxy,
    client,
    limiter,
    logger,
    async tearDown(): Promise<void> {
      await limiter.close();
      memory.close();
      client.disconnect();
      await proxy.close();
    },
  };
}
