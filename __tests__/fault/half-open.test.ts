import { circuitBreaker, ConsecutiveBreaker, handleAll } from 'cockatiel';
import type { Redis } from 'ioredis';
import { MemoryStore, RateLimiter } from '../../lib/index.js';
import type { AlgorithmName } from '../../lib/types.js';
import { RedisProcess } from '../helpers/redis-process.js';
import {
  eventually,
  failFastClient,
  ready,
  recordingLogger,
  uniqueName,
} from '../helpers/redis.js';

/*
 * The half-open probe races memory: while the probe's decision is out to
 * Redis (which will count it), memory decides the key's other requests. If
 * memory did not count the probe's units, one instance would admit the
 * limit plus the probe (found by an attack: 13 of 12, every algorithm,
 * with and without policies). Memory now counts units still out to Redis.
 * CLIENT PAUSE makes the calls time out (the breaker opens) without losing
 * data, then holds the probe in flight.
 */

let redis: RedisProcess;
let admin: Redis;

beforeAll(async () => {
  redis = await RedisProcess.start();
  admin = failFastClient(redis.port);
  await ready(admin);
});

afterAll(async () => {
  admin.disconnect();
  await redis.stop();
});

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

describe.each(['fixed-window', 'sliding-window', 'token-bucket'] as AlgorithmName[])(
  'the half-open probe and memory (%s)',
  algorithm => {
    it.each([false, true])(
      'one instance admits at most the limit around a probe (policies: %s)',
      async withPolicies => {
        const client = failFastClient(redis.port);
        await ready(client);
        const memory = new MemoryStore();
        const name = uniqueName('probe');
        const limiter = new RateLimiter({
          name,
          algorithm,
          redis: client,
          memory,
          timeout: 100,
          breaker: { threshold: 1, halfOpenAfter: 300 },
          logger: recordingLogger(),
          ...(withPolicies
            ? {
                policies: [
                  { name: 'slow', limit: 12, window: '1h' },
                  { name: 'other', limit: 1000, window: '1h' },
                ],
              }
            : { limit: 12, window: '1h' }),
        });
        let admitted = 0;
        const note = (result: { allowed: boolean }) => {
          if (result.allowed) admitted++;
        };
        try {
          for (let i = 0; i < 5; i++) note(await limiter.consume('k'));
          // Calls time out: the breaker opens and memory decides.
          await admin.call('CLIENT', 'PAUSE', '400', 'ALL');
          await sleep(20);
          for (let i = 0; i < 4; i++) note(await limiter.consume('k'));
          // Half-open while Redis is still paused: the probe waits in
          // flight while three more requests are decided from memory.
          await sleep(350);
          (await Promise.all(Array.from({ length: 4 }, () => limiter.consume('k')))).forEach(note);
          await sleep(600);
          await limiter.reconcile();
          for (let i = 0; i < 4; i++) note(await limiter.consume('k'));
          expect(admitted).toBeLessThanOrEqual(12);
        } finally {
          await limiter.close();
          memory.close();
          client.disconnect();
        }
      },
      15_000,
    );
  },
);

describe('write-back that fails', () => {
  it('is tried again by itself, with no further request for the key', async () => {
    const client = failFastClient(redis.port);
    await ready(client);
    const memory = new MemoryStore();
    const breaker = circuitBreaker(handleAll, {
      halfOpenAfter: 60_000,
      breaker: new ConsecutiveBreaker(1000),
    });
    const name = uniqueName('retry-write-back');
    const limiter = new RateLimiter({
      name,
      limit: 5,
      window: '1h',
      redis: client,
      memory,
      breaker,
      logger: recordingLogger(),
    });
    limiter.on('storeError', () => undefined);
    try {
      const isolation = breaker.isolate();
      expect((await limiter.consume('k')).source).toBe('memory');
      expect(limiter.pendingReconciliation).toBe(1);
      // Redis stalls past the write-back's 1 s budget when the breaker
      // closes, and past the retry 2 s later.
      await admin.call('CLIENT', 'PAUSE', '3500', 'ALL');
      isolation.dispose();
      await limiter.reconcile();
      expect(limiter.pendingReconciliation).toBe(1);
      await eventually(() => limiter.pendingReconciliation === 0, 6000);
      // The timed-out write-back landed when Redis woke: its late answer
      // acknowledged the hit, so the retry did not send it again (2 before).
      expect(Number(await admin.hget(`rl:{${name}|k}`, 'a'))).toBe(1);
    } finally {
      await limiter.close();
      memory.close();
      client.disconnect();
    }
  }, 15_000);
});

describe('two limiters of one name around a probe', () => {
  it('memory leaves room for the probe another limiter of the name has out', async () => {
    // Found by an attack: units out were held per limiter, while limiters of
    // one name share their counters (and the memory store): 11 of 10.
    const own = await RedisProcess.start();
    const client = failFastClient(own.port);
    await ready(client);
    const memory = new MemoryStore();
    const options = {
      name: uniqueName('shared'),
      limit: 10,
      window: '1m',
      redis: client,
      memory,
      timeout: 400,
      breaker: { threshold: 1, halfOpenAfter: 300 },
      logger: recordingLogger(),
    };
    const a = new RateLimiter(options);
    const b = new RateLimiter(options);
    try {
      let admitted = 0;
      for (let i = 0; i < 5; i++) if ((await a.consume('k')).allowed) admitted++;
      // Open the breaker without counting anything: a read that times out.
      own.freeze();
      await a.get('k');
      own.resume();
      await sleep(350);
      own.freeze();
      const probe = a.consume('k');
      await sleep(20);
      const local = [];
      for (let i = 0; i < 10; i++) local.push(await b.consume('k'));
      expect(local.every(result => result.source === 'memory')).toBe(true);
      // Memory's last denial reports what is left beside the probe's unit.
      expect(local.at(-1)).toMatchObject({ allowed: false, remaining: 0 });
      own.resume();
      if ((await probe).allowed) admitted++;
      admitted += local.filter(result => result.allowed).length;
      expect(admitted).toBeLessThanOrEqual(10);
    } finally {
      own.resume();
      await a.close();
      await b.close();
      memory.close();
      client.disconnect();
      await own.stop();
    }
  }, 15_000);
});
