import type { Redis } from 'ioredis';
import { rateLimit } from '../../lib/index.js';
import { RedisProcess } from '../helpers/redis-process.js';
import { failFastClient, ready, recordingLogger, uniqueName } from '../helpers/redis.js';

// ioredis is a peer dependency accepting 5.x and 6.x. `npm test` runs on the
// installed 6.x; CI runs the integration tests again with RRL_IOREDIS=5,
// which maps `ioredis` to ioredis 5 (the `ioredis5` alias) everywhere.
const expectedMajor = process.env.RRL_IOREDIS ?? '6';

describe(`ioredis ${expectedMajor}`, () => {
  let redis: RedisProcess;
  let client: Redis;

  beforeAll(async () => {
    redis = await RedisProcess.start();
    client = failFastClient(redis.port);
    await ready(client);
  });

  afterAll(async () => {
    client?.disconnect();
    await redis?.stop();
  });

  it('is the version this run is meant to test', () => {
    const { version } = jest.requireActual<{ version: string }>('ioredis/package.json');
    expect(version.split('.')[0]).toBe(expectedMajor);
  });

  it('decides in Redis with a client the app built, and with one built from a URL', async () => {
    const logger = recordingLogger();
    const fromClient = rateLimit({ name: uniqueName('v'), limit: 2, window: '1m', redis: client });
    const fromUrl = rateLimit({
      name: uniqueName('v'),
      limit: 200,
      window: '1m',
      redis: redis.url,
      logger,
    });
    try {
      const first = await fromClient.limiter.consume('k');
      expect(first).toMatchObject({ allowed: true, remaining: 1, source: 'redis' });
      await fromClient.limiter.consume('k');
      expect(await fromClient.limiter.consume('k')).toMatchObject({
        allowed: false,
        source: 'redis',
      });

      // The URL client connects in the background: decided locally until then.
      let result = await fromUrl.limiter.consume('u');
      for (let i = 0; i < 100 && result.source !== 'redis'; i++) {
        await new Promise(resolve => setTimeout(resolve, 20));
        result = await fromUrl.limiter.consume('u');
      }
      expect(result.source).toBe('redis');
    } finally {
      await fromClient.limiter.close();
      await fromUrl.limiter.close();
    }
  });
});
