import { deepStrictEqual, equal, ok as assert } from 'node:assert/strict';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import type { RateLimiter } from '../../lib/index.js';
import type { AlgorithmName, RateLimitResult } from '../../lib/types.js';
import {
  ALGORITHMS,
  ON_BOUNDARY,
  admissible,
  boundViolation,
  checkInvariants,
  memoryLimiter,
  outcome,
  redisLimiter,
  referenceModel,
  type Admitted,
} from '../helpers/conformance.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { RedisProcess } from '../helpers/redis-process.js';
import { failFastClient, ready } from '../helpers/redis.js';

/*
 * Random hit sequences through the memory store and the Redis store (on one
 * ManualClock, RESP2 or RESP3 at random): both stores agree, neither admits
 * more than its algorithm's bound, every answer matches the algorithm's
 * definition (a reference model written from the spec), a long pause frees
 * the key, and a denied request changes nothing.
 */

const NUM_RUNS = Number(process.env.CONFORMANCE_RUNS ?? 100);

type Hit = { at: number; cost: number };
type Scenario = {
  algorithm: AlgorithmName;
  limit: number;
  window: number;
  /** Epoch ms of offset 0. */
  start: number;
  protocol: 2 | 3;
  /** Offsets from `start`, non-decreasing. */
  hits: Hit[];
  /** A pause of at least two windows after the last hit, then one request. */
  idle: number;
  finalCost: number;
};

// Gaps in per mille of the window, so they scale with it: often none or a few
// per cent (keys contend), sometimes up to 1.5 windows (windows roll over).
// Costs are mapped into 1..limit; both shrink towards 0 gap, cost 1.
const rawHit = fc.record({
  gap: fc.oneof(
    { weight: 2, arbitrary: fc.constant(0) },
    { weight: 4, arbitrary: fc.integer({ min: 0, max: 100 }) },
    { weight: 2, arbitrary: fc.integer({ min: 0, max: 1500 }) },
  ),
  jitter: fc.integer({ min: 0, max: 2 }),
  cost: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 20 })),
});

const scenarios: fc.Arbitrary<Scenario> = fc
  .record({
    algorithm: fc.constantFrom(...ALGORITHMS),
    limit: fc.integer({ min: 1, max: 20 }),
    window: fc.oneof(fc.constantFrom(1000, 60_000), fc.integer({ min: 1000, max: 60_000 })),
    // 0: the first hit lands on an aligned boundary of every window length.
    startOffset: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 59_999 })),
    protocol: fc.constantFrom(2 as const, 3 as const),
    hits: fc.array(rawHit, { minLength: 1, maxLength: 40, size: 'max' }),
    idle: fc.integer({ min: 0, max: 1000 }),
    finalCost: fc.integer({ min: 1, max: 20 }),
  })
  .map(raw => {
    const costIn = (cost: number) => ((cost - 1) % raw.limit) + 1;
    let at = 0;
    const hits = raw.hits.map(({ gap, jitter, cost }) => {
      at += Math.min(Math.floor((gap * raw.window) / 1000) + jitter, Math.floor(raw.window * 1.5));
      return { at, cost: costIn(cost) };
    });
    return {
      algorithm: raw.algorithm,
      limit: raw.limit,
      window: raw.window,
      start: ON_BOUNDARY + raw.startOffset,
      protocol: raw.protocol,
      hits,
      idle: 2 * raw.window + Math.floor((raw.idle * raw.window) / 1000),
      finalCost: costIn(raw.finalCost),
    };
  });

let redis: RedisProcess;
const clients = new Map<2 | 3, Redis>();

beforeAll(async () => {
  redis = await RedisProcess.start();
  for (const protocol of [2, 3] as const) {
    const client = failFastClient(redis.port, protocol);
    clients.set(protocol, client);
    await ready(client);
  }
});

afterAll(async () => {
  for (const client of clients.values()) client.disconnect();
  await redis?.stop();
});

type Store = { source: 'memory' | 'redis'; limiter: RateLimiter };

/** Runs `body` with a fresh memory limiter and Redis limiter (unique names), then closes them. */
async function withStores(
  scenario: Scenario,
  body: (stores: [Store, Store], clock: ManualClock) => Promise<void>,
): Promise<void> {
  const clock = new ManualClock(scenario.start);
  const client = clients.get(scenario.protocol);
  if (!client) throw new Error(`no RESP${scenario.protocol} client`);
  const spec = { ...scenario, clock };
  const stores: [Store, Store] = [
    { source: 'memory', limiter: memoryLimiter(spec) },
    { source: 'redis', limiter: redisLimiter(spec, client) },
  ];
  try {
    await body(stores, clock);
  } finally {
    await Promise.all(stores.map(s => s.limiter.close()));
  }
}

async function consume(store: Store, cost: number): Promise<RateLimitResult> {
  const result = await store.limiter.consume('k', cost);
  checkInvariants(result, store.source, store.limiter.limit, 'k');
  return result;
}

async function get(store: Store): Promise<ReturnType<typeof outcome> | undefined> {
  const result = await store.limiter.get('k');
  if (result === undefined) return undefined;
  checkInvariants(result, store.source, store.limiter.limit, 'k');
  return outcome(result);
}

const property = (body: (scenario: Scenario) => Promise<void>) =>
  fc.assert(fc.asyncProperty(scenarios, body), { numRuns: NUM_RUNS });

it('(a) memory and Redis give identical answers at every step', async () => {
  await property(scenario =>
    withStores(scenario, async ([memory, onRedis], clock) => {
      for (const [i, hit] of scenario.hits.entries()) {
        clock.set(scenario.start + hit.at);
        deepStrictEqual(await get(onRedis), await get(memory), `get() before hit #${i}`);
        const fromMemory = outcome(await consume(memory, hit.cost));
        const fromRedis = outcome(await consume(onRedis, hit.cost));
        deepStrictEqual(fromRedis, fromMemory, `consume() at hit #${i}`);
      }
    }),
  );
});

it("(b) no store admits more than its algorithm's bound in any window", async () => {
  await property(scenario =>
    withStores(scenario, async (stores, clock) => {
      const admitted: Admitted[][] = [[], []];
      for (const hit of scenario.hits) {
        clock.set(scenario.start + hit.at);
        for (const [s, store] of stores.entries()) {
          if ((await consume(store, hit.cost)).allowed) {
            admitted[s]?.push({ at: scenario.start + hit.at, cost: hit.cost });
          }
        }
      }
      for (const [s, store] of stores.entries()) {
        const { algorithm, limit, window } = scenario;
        const violation = boundViolation(algorithm, limit, window, admitted[s] ?? []);
        equal(violation, undefined, `${store.source}: ${violation}`);
      }
    }),
  );
});

it("(e) every answer matches the algorithm's definition: admission, remaining, exact retryAfterMs", async () => {
  await property(scenario =>
    withStores(scenario, async (stores, clock) => {
      const { algorithm, limit, window } = scenario;
      const models = stores.map(() => referenceModel(algorithm, limit, window));
      for (const [i, hit] of scenario.hits.entries()) {
        const now = scenario.start + hit.at;
        clock.set(now);
        for (const [s, store] of stores.entries()) {
          const model = models[s];
          if (!model) throw new Error('no model');
          const where = `${store.source}, hit #${i}`;
          const result = await consume(store, hit.cost);
          equal(result.allowed, model.allows(hit.cost, now), `${where}: allowed`);
          if (result.allowed) {
            model.admit(hit.cost, now);
          } else {
            const r = result.retryAfterMs;
            assert(model.allows(hit.cost, now + r), `${where}: still denied after ${r} ms`);
            assert(!model.allows(hit.cost, now + r - 1), `${where}: allowed after ${r - 1} ms`);
          }
          equal(result.remaining, admissible(model, limit, now), `${where}: remaining`);
        }
      }
    }),
  );
});

it('(c) after two idle windows, any cost up to the limit is admitted', async () => {
  await property(scenario =>
    withStores(scenario, async (stores, clock) => {
      for (const hit of scenario.hits) {
        clock.set(scenario.start + hit.at);
        for (const store of stores) await consume(store, hit.cost);
      }
      const last = scenario.hits.at(-1)?.at ?? 0;
      clock.set(scenario.start + last + scenario.idle);
      for (const store of stores) {
        const result = await consume(store, scenario.finalCost);
        deepStrictEqual(
          { allowed: result.allowed, remaining: result.remaining },
          { allowed: true, remaining: scenario.limit - scenario.finalCost },
          store.source,
        );
      }
    }),
  );
});

it('(d) a denied request changes nothing', async () => {
  await property(scenario =>
    withStores(scenario, async (stores, clock) => {
      for (const [i, hit] of scenario.hits.entries()) {
        clock.set(scenario.start + hit.at);
        for (const store of stores) {
          const before = await get(store);
          if ((await consume(store, hit.cost)).allowed) continue;
          deepStrictEqual(await get(store), before, `${store.source}, hit #${i}`);
        }
      }
    }),
  );
});
