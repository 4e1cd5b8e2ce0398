import { equal } from 'node:assert/strict';
import { circuitBreaker, ConsecutiveBreaker, handleAll, type IDisposable } from 'cockatiel';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { MemoryStore, RateLimiter } from '../../lib/index.js';
import type { AlgorithmName } from '../../lib/types.js';
import { ALGORITHMS, ON_BOUNDARY, referenceModel } from '../helpers/conformance.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { recordingLogger, redisPerFile, uniqueName } from '../helpers/redis.js';

/*
 * The conformance suite for merged state: one instance, one key, random hits
 * on a ManualClock (with refunds and per-call limits), decided in Redis, or from memory while the breaker is
 * isolated (an outage), with Redis losing its data (FLUSHDB) at random
 * moments. Every single decision must equal the algorithm's reference model
 * fed every admitted hit, whoever decided it: the warm view carries Redis's
 * count into memory, the decision script carries memory's hits and the view
 * back into Redis. With `policies` (2 or 3 quotas of different windows) a
 * request is admitted only if every policy's model admits it, and each
 * policy's own answer in `result.policies` must equal its model's.
 * The example-based tests show single cases; this shows the
 * mechanism has no gap between the two stores.
 */

const NUM_RUNS = Number(process.env.CONFORMANCE_RUNS ?? 200);

type Step = {
  gap: number;
  cost: number;
  outage: boolean;
  flush: boolean;
  /** A refund of `cost` units instead of a request. */
  refund: boolean;
  /** A per-call limit (fixed and sliding windows), else the rule's. */
  limit?: number;
};
type Scenario = {
  algorithm: AlgorithmName;
  limit: number;
  window: number;
  /** More quotas beside limit/window: the limiter then has `policies`. */
  more: Quota[];
  start: number;
  steps: Step[];
};

type Quota = { limit: number; window: number };
const noMore: fc.Arbitrary<Quota[]> = fc.constant([]);
// Policies beside the first quota: shorter and longer windows than its.
const someMore: fc.Arbitrary<Quota[]> = fc.array(
  fc.record({
    limit: fc.integer({ min: 1, max: 12 }),
    window: fc.constantFrom(500, 3000, 60_000, 3_600_000),
  }),
  { minLength: 1, maxLength: 2 },
);

const scenarios: fc.Arbitrary<Scenario> = fc
  .record({
    algorithm: fc.constantFrom(...ALGORITHMS),
    limit: fc.integer({ min: 1, max: 10 }),
    window: fc.constantFrom(1000, 7000, 60_000),
    more: fc.oneof({ weight: 2, arbitrary: noMore }, { weight: 1, arbitrary: someMore }),
    startOffset: fc.integer({ min: 0, max: 59_999 }),
    steps: fc.array(
      fc.record({
        gap: fc.oneof(
          fc.constant(0),
          fc.integer({ min: 0, max: 120 }),
          fc.integer({ min: 0, max: 1500 }),
        ),
        cost: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 10 })),
        // Outages come in runs: a step flips the state with this chance.
        flip: fc.integer({ min: 0, max: 9 }),
        flush: fc.integer({ min: 0, max: 14 }),
        refund: fc.integer({ min: 0, max: 5 }),
        limit: fc.option(fc.integer({ min: 1, max: 10 })),
      }),
      { minLength: 1, maxLength: 40 },
    ),
  })
  .map(raw => {
    let outage = false;
    const steps: Step[] = raw.steps.map(step => {
      if (step.flip < 3) outage = !outage;
      return {
        gap: Math.floor((step.gap * raw.window) / 1000),
        cost: ((step.cost - 1) % Math.min(raw.limit, ...raw.more.map(p => p.limit))) + 1,
        outage,
        flush: step.flush === 0,
        refund: step.refund === 0,
        // A token bucket's emission interval is its limit: no per-call
        // limit; nor with policies (a per-call limit belongs to one).
        ...(step.limit !== null && raw.algorithm !== 'token-bucket' && raw.more.length === 0
          ? { limit: ((step.limit - 1) % raw.limit) + 1 }
          : {}),
      };
    });
    // A refund made from memory reaches Redis with the key's other outage
    // state; Redis losing its data during that outage or before the merge can
    // cost up to the refunded units (README, "the limits, exactly"), so such
    // outages see no FLUSHDB.
    for (let i = 0; i < steps.length;) {
      let end = i;
      while (end < steps.length && steps[end]?.outage) end++;
      if (end > i && steps.slice(i, end).some(step => step.refund)) {
        for (let k = i; k <= Math.min(end, steps.length - 1); k++) (steps[k] as Step).flush = false;
      }
      i = end + 1;
    }
    return {
      algorithm: raw.algorithm,
      limit: raw.limit,
      window: raw.window,
      more: raw.more,
      start: ON_BOUNDARY + raw.startOffset,
      steps,
    };
  });

let client: Redis;
let admin: Redis;

redisPerFile(started => ({ client, admin } = started));

async function play(scenario: Scenario): Promise<void> {
  const clock = new ManualClock(scenario.start);
  // A breaker of our own, so a test can isolate it: the limiter then decides
  // from memory exactly as in an outage, without a network fault's timing.
  const breaker = circuitBreaker(handleAll, {
    halfOpenAfter: 1000,
    breaker: new ConsecutiveBreaker(1000),
  });
  const memory = new MemoryStore({ clock });
  const quotas = [{ limit: scenario.limit, window: scenario.window }, ...scenario.more];
  const multi = scenario.more.length > 0;
  const limiter = new RateLimiter({
    name: uniqueName(scenario.algorithm),
    ...(multi
      ? { policies: quotas.map((quota, i) => ({ name: `p${i}`, ...quota })) }
      : { limit: scenario.limit, window: scenario.window }),
    algorithm: scenario.algorithm,
    redis: client,
    redisTime: 'clock',
    clock,
    memory,
    timeout: 2000,
    breaker,
    logger: recordingLogger(),
  });
  const models = quotas.map(quota => referenceModel(scenario.algorithm, quota.limit, quota.window));
  const model = {
    allows: (cost: number, now: number, limit?: number) =>
      models.every((m, i) => m.allows(cost, now, i === 0 ? limit : undefined)),
    admit: (cost: number, now: number) => models.forEach(m => m.admit(cost, now)),
    refund: (cost: number, now: number) => models.forEach(m => m.refund(cost, now)),
  };
  let isolation: IDisposable | undefined;
  try {
    for (const [i, step] of scenario.steps.entries()) {
      clock.tick(step.gap);
      if (step.outage && !isolation) isolation = breaker.isolate();
      if (!step.outage && isolation) {
        isolation.dispose();
        isolation = undefined;
        // The write-back the breaker's closing starts, before a FLUSHDB sent
        // on another connection could overtake it.
        await limiter.reconcile();
      }
      if (step.flush) await admin.flushdb();
      const now = clock.now();
      if (step.refund) {
        await limiter.refund('k', step.cost);
        model.refund(step.cost, now);
        continue;
      }
      const limit = Math.max(step.limit ?? scenario.limit, step.cost);
      const result = await limiter.consume('k', step.cost, multi ? undefined : { limit });
      equal(result.source, step.outage ? 'memory' : 'redis', `step ${i}: source`);
      if (!multi) equal(result.limit, limit, `step ${i}: limit`);
      models.forEach((m, p) => {
        equal(
          result.policies?.[p]?.allowed,
          multi ? m.allows(step.cost, now) : undefined,
          `step ${i}: policy ${p} (limit ${quotas[p]?.limit}, window ${quotas[p]?.window})`,
        );
      });
      equal(
        result.allowed,
        model.allows(step.cost, now, limit),
        `step ${i} (${step.outage ? 'memory' : 'redis'}, cost ${step.cost}, limit ${limit}, +${now - scenario.start} ms): allowed`,
      );
      if (result.allowed) model.admit(step.cost, now);
    }
    isolation?.dispose();
    isolation = undefined;
    await limiter.reconcile();
    equal(limiter.pendingReconciliation, 0, 'outage hits left unacknowledged');
    const now = clock.now();
    const after = await limiter.consume('k', 1);
    equal(after.allowed, model.allows(1, now), 'after write-back');
  } finally {
    isolation?.dispose();
    await limiter.close();
    memory.close();
  }
}

describe('continuity: memory and Redis decide as one store across outages and data loss', () => {
  it('every decision, refund and per-call limit equals the reference model, whoever decided it', async () => {
    await fc.assert(fc.asyncProperty(scenarios, play), { numRuns: NUM_RUNS });
  }, 120_000);

  it.each(ALGORITHMS)('%s: a run of outage hits, a FLUSHDB, then Redis again', async algorithm => {
    const steps: Step[] = [
      ...Array.from({ length: 3 }, () => ({
        gap: 10,
        cost: 1,
        outage: false,
        flush: false,
        refund: false,
      })),
      ...Array.from({ length: 3 }, () => ({
        gap: 10,
        cost: 1,
        outage: true,
        flush: false,
        refund: false,
      })),
      { gap: 10, cost: 1, outage: false, flush: true, refund: false },
      ...Array.from({ length: 3 }, () => ({
        gap: 10,
        cost: 1,
        outage: false,
        flush: false,
        refund: false,
      })),
    ];
    await play({ algorithm, limit: 5, window: 60_000, more: [], start: ON_BOUNDARY + 1234, steps });
    await play({
      algorithm,
      limit: 5,
      window: 60_000,
      more: [{ limit: 2, window: 1000 }],
      start: ON_BOUNDARY + 1234,
      steps,
    });
  });
});
