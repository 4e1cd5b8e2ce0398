import { Redis, type RedisOptions } from 'ioredis';
import { RateLimiter } from '../../lib/index.js';
import { DECIDE_SCRIPTS } from '../../lib/stores/redis-scripts.js';

const DECIDE_SHA = DECIDE_SCRIPTS['fixed-window'].sha;
import {
  MARGIN_MS,
  OutageFixture,
  THRESHOLD,
  TIMEOUT_MS,
  expectBounded,
} from '../helpers/outage-fixture.js';
import { RedisProcess } from '../helpers/redis-process.js';
import {
  eventually,
  failFastClient,
  ready,
  recordingLogger,
  uniqueName,
} from '../helpers/redis.js';

describe('RateLimiter when Redis restarts with its data lost', () => {
  it('loads the scripts again on reconnect (no EVAL) and restores the count this instance saw', async () => {
    const redis = await RedisProcess.start();
    const client = failFastClient(redis.port);
    await ready(client);
    const limiter = new RateLimiter({
      name: uniqueName(),
      limit: 2,
      window: '1h',
      redis: client,
      logger: recordingLogger(),
    });
    try {
      await limiter.consume('k');
      await redis.restart();
      await ready(client);
      await eventually(
        async () => ((await client.script('EXISTS', DECIDE_SHA)) as number[])[0] === 1,
      );
      const after = await limiter.consume('k');
      // The restart lost the counter: the count this instance saw is restored
      // by the same call, and the script was loaded again on 'ready'.
      expect(after).toMatchObject({ source: 'redis', allowed: true, remaining: 0 });
      expect(await limiter.consume('k')).toMatchObject({ source: 'redis', allowed: false });
      // The first call after the loss finds less than this instance's view and
      // asks for it (one more EVALSHA); none falls back to EVAL.
      expect(await redis.commandCount('evalsha')).toBe(3);
      expect(await redis.commandCount('eval')).toBe(0);
    } finally {
      await limiter.close();
      client.disconnect();
      await redis.stop();
    }
  });
});

describe('RateLimiter when Redis answers errors (maxmemory + noeviction: OOM)', () => {
  let fixture: OutageFixture;

  beforeAll(async () => {
    fixture = await OutageFixture.start({
      redisArgs: ['--maxmemory', '2mb', '--maxmemory-policy', 'noeviction'],
    });
  });

  afterAll(async () => {
    await fixture.stop();
  });

  it('falls back on OOM errors, opens the breaker, and recovers once memory is freed', async () => {
    const filler = new Redis({
      port: fixture.redis.port,
      host: '127.0.0.1',
      maxRetriesPerRequest: 0,
    });
    try {
      const blob = 'x'.repeat(64 * 1024);
      for (let i = 0; i < 200; i++) {
        const full = await filler.set(`fill:${i}`, blob).then(
          () => false,
          (error: Error) => /OOM/.test(error.message),
        );
        if (full) break;
      }
      const samples = await fixture.hitMany(THRESHOLD * 3);
      expectBounded(samples);
      expect(fixture.critical.limiter.breakerState).toBe('open');
      expect(fixture.events.critical.storeError + fixture.events.open.storeError).toBe(THRESHOLD);
      const errors = fixture.logger.warn.mock.calls.map(call => String(call[0])).join('\n');
      expect(errors).toMatch(/OOM/);
      // Once open, the fail-closed route (even indexes) limits from memory and
      // the fail-open route (odd indexes) lets requests through.
      const late = samples.map((s, i) => [i, s.source] as const).slice(-THRESHOLD);
      expect(late.every(([i, source]) => source === (i % 2 === 0 ? 'memory' : 'bypass'))).toBe(
        true,
      );

      await filler.flushall();
      await fixture.recover();
    } finally {
      filler.disconnect();
    }
  });
});

describe('RateLimiter with a client whose offline queue is on', () => {
  it('still bounds each decision by the timeout while Redis is down', async () => {
    const redis = await RedisProcess.start();
    // Defaults on purpose (offline queue on), but no 2 s wait on disconnect.
    const client = new Redis({
      port: redis.port,
      host: '127.0.0.1',
      ...({ disconnectTimeout: 100 } as RedisOptions),
    });
    client.on('error', () => undefined);
    await ready(client as never);
    const logger = recordingLogger();
    const limiter = new RateLimiter({
      name: uniqueName(),
      limit: 5,
      window: '1h',
      redis: client,
      logger,
    });
    try {
      await redis.kill();
      for (let i = 0; i < THRESHOLD + 3; i++) {
        const started = performance.now();
        const result = await limiter.consume('k');
        expect(performance.now() - started).toBeLessThan(TIMEOUT_MS + MARGIN_MS);
        expect(result.source).toBe('memory');
      }
      expect(limiter.breakerState).toBe('open');
    } finally {
      await limiter.close();
      client.disconnect();
      await redis.stop();
    }
  });
});
