import { circuitBreaker, ConsecutiveBreaker, handleAll } from 'cockatiel';
import type { Redis } from 'ioredis';
import type { AlgorithmName } from '../../lib/types.js';
import type { RedisProcess } from '../helpers/redis-process.js';
import { prng } from '../helpers/prng.js';
import { countedUnits, eventually, redisPerFile, uniqueName } from '../helpers/redis.js';
import { proxiedLimiter } from '../helpers/proxied-limiter.js';

/*
 * The class behind timed-out-carrier.test.ts, at random: a Redis whose
 * latency jumps around the timeout, several keys, concurrent requests. Every
 * decision the script ran counts one unit, and every unit
 * memory admitted after a timeout reaches Redis once, however its carrier
 * fared. So once everything has settled, each key's count in Redis is
 * exactly (decisions Redis ran) + (memory admissions): more means outage
 * units were counted twice, less that some were lost.
 */

const TIMEOUT_MS = 80;
const LIMIT = 1000;
const WINDOW_MS = 86_400_000;
const KEYS = ['a', 'b', 'c'];
const STEPS = 40;

let redis: RedisProcess;
let admin: Redis;
redisPerFile(started => ({ redis, admin } = started));

async function play(algorithm: AlgorithmName, seed: number): Promise<void> {
  const random = prng(seed);
  // Decisions sent to Redis, by key (cost 1 only). The proxy only delays,
  // so every one of them runs, once: counted when sent, awaited to the end.
  const ran = new Map<string, number>(KEYS.map(key => [key, 0]));
  let unanswered = 0;
  const name = uniqueName(`slow-${algorithm}`);
  const { proxy, limiter, tearDown } = await proxiedLimiter(
    redis.port,
    {
      name,
      algorithm,
      limit: LIMIT,
      window: WINDOW_MS,
      timeout: TIMEOUT_MS,
      // Never opens: every decision that can go to Redis goes.
      breaker: circuitBreaker(handleAll, {
        halfOpenAfter: 60_000,
        breaker: new ConsecutiveBreaker(1_000_000),
      }),
    },
    client => {
      const send = client.sendCommand.bind(client);
      client.sendCommand = ((command: Parameters<typeof send>[0], ...rest: unknown[]) => {
        const { name: verb, args } = command as unknown as { name: string; args: unknown[] };
        const match = /^rl:\{[^|]+\|(.+)\}$/.exec(String(args[2]));
        if ((verb === 'evalsha' || verb === 'eval') && match && String(args[6]) === '1') {
          ran.set(match[1]!, ran.get(match[1]!)! + 1);
          unanswered++;
          void (command as unknown as { promise: Promise<unknown> }).promise
            .catch(() => undefined)
            .finally(() => unanswered--);
        }
        return (send as (...all: unknown[]) => unknown)(command, ...rest);
      }) as typeof client.sendCommand;
    },
  );
  const fromMemory = new Map<string, number>(KEYS.map(key => [key, 0]));
  try {
    for (let step = 0; step < STEPS; step++) {
      proxy.delayMs = [0, 0, 0.4, 1.5, 3][Math.floor(random() * 5)]! * TIMEOUT_MS;
      const burst = 1 + Math.floor(random() * 3);
      const results = await Promise.all(
        Array.from({ length: burst }, () => {
          const key = KEYS[Math.floor(random() * KEYS.length)]!;
          return limiter.consume(key).then(result => ({ key, result }));
        }),
      );
      for (const { key, result } of results) {
        expect(result.allowed).toBe(true);
        if (result.source === 'memory') fromMemory.set(key, fromMemory.get(key)! + 1);
      }
    }
    proxy.delayMs = 0;
    // Every late answer has come and every write-back is done.
    await eventually(() => limiter.pendingReconciliation === 0 && unanswered === 0, 15_000, 50);
    for (const key of KEYS) {
      const units = await countedUnits(admin, `rl:{${name}|${key}}`, algorithm, WINDOW_MS, LIMIT);
      expect({ seed, key, units }).toEqual({
        seed,
        key,
        units: ran.get(key)! + fromMemory.get(key)!,
      });
    }
    // The run exercised what it is about: calls that timed out and landed.
    expect([...fromMemory.values()].reduce((x, y) => x + y)).toBeGreaterThan(0);
  } finally {
    await tearDown();
  }
}

describe.each(['fixed-window', 'sliding-window', 'token-bucket'] as AlgorithmName[])(
  '%s: a Redis whose latency jumps around the timeout',
  algorithm => {
    it.each([1, 2])(
      'counts every unit exactly once (seed %i)',
      async seed => {
        await play(algorithm, seed);
      },
      60_000,
    );
  },
);
