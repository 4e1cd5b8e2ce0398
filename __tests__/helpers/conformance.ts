import { deepStrictEqual } from 'node:assert/strict';
import type { Redis } from 'ioredis';
import { RateLimiter } from '../../lib/index.js';
import type { AlgorithmName, RateLimitResult } from '../../lib/types.js';
import type { ManualClock } from './manual-clock.js';
import { recordingLogger, uniqueName } from './redis.js';

/**
 * Shared by the conformance tables and the conformance property tests: limiters
 * for either store on one ManualClock, a table player, and reference models of
 * each algorithm written from their definitions (independently of lib/).
 */

/** Epoch ms on a boundary of every aligned window used here (a multiple of 60 000). */
export const ON_BOUNDARY = 1_700_000_040_000;

export const ALGORITHMS = [
  'fixed-window',
  'sliding-window',
  'token-bucket',
] as const satisfies readonly AlgorithmName[];

/** The part of a result both stores must agree on. */
export type Outcome = Pick<RateLimitResult, 'allowed' | 'remaining' | 'resetAt' | 'retryAfterMs'>;

export function outcome(result: RateLimitResult): Outcome {
  const { allowed, remaining, resetAt, retryAfterMs } = result;
  return { allowed, remaining, resetAt, retryAfterMs };
}

/** An allowed answer; `resetAt` as an offset from the table's start. */
export const ok = (remaining: number, resetAt: number): Outcome => ({
  allowed: true,
  remaining,
  resetAt,
  retryAfterMs: 0,
});

/** A denied answer; `resetAt` as an offset from the table's start. */
export const no = (remaining: number, resetAt: number, retryAfterMs: number): Outcome => ({
  allowed: false,
  remaining,
  resetAt,
  retryAfterMs,
});

export type StoreKind = 'memory' | 'redis';

export type LimiterSpec = {
  algorithm: AlgorithmName;
  limit: number;
  window: number;
  clock: ManualClock;
  name?: string;
};

/** A limiter deciding in a private MemoryStore on `spec.clock`. */
export function memoryLimiter(spec: LimiterSpec): RateLimiter {
  return new RateLimiter({
    name: spec.name ?? uniqueName('conformance-memory'),
    limit: spec.limit,
    window: spec.window,
    algorithm: spec.algorithm,
    clock: spec.clock,
    logger: recordingLogger(),
  });
}

/** A limiter deciding in Redis with `spec.clock` as the script's time. */
export function redisLimiter(spec: LimiterSpec, client: Redis): RateLimiter {
  return new RateLimiter({
    name: spec.name ?? uniqueName('conformance-redis'),
    limit: spec.limit,
    window: spec.window,
    algorithm: spec.algorithm,
    clock: spec.clock,
    redis: client,
    redisTime: 'clock',
    // Generous: a decision that timed out would be made by memory instead,
    // and these tests are about what Redis answers.
    timeout: 5000,
    logger: recordingLogger(),
  });
}

/**
 * One row of a conformance table. `at` is ms after the table's start; `op`
 * defaults to consume; `expect.resetAt` is an offset from the start too;
 * `expect: null` means get() answers undefined.
 */
export type Step = {
  at: number;
  op?: 'consume' | 'get' | 'reset';
  cost?: number;
  key?: string;
  expect?: Outcome | null;
};

export type Table = {
  title: string;
  algorithm: AlgorithmName;
  limit: number;
  window: number;
  /** Epoch ms of offset 0. Omitted: the table runs at every start in `STARTS`. */
  start?: number;
  steps: Step[];
};

export type Observation = {
  step: number;
  at: number;
  op: string;
  key: string;
  cost?: number;
  result: Outcome | null | 'reset';
};

/** Runs one step at `start + step.at`; times in the result are offsets from `start`. */
export async function playStep(
  limiter: RateLimiter,
  clock: ManualClock,
  start: number,
  step: Step,
  source: 'memory' | 'redis',
): Promise<Outcome | null | 'reset'> {
  clock.set(start + step.at);
  const key = step.key ?? 'k';
  const op = step.op ?? 'consume';
  if (op === 'reset') {
    await limiter.reset(key);
    return 'reset';
  }
  const result = op === 'get' ? await limiter.get(key) : await limiter.consume(key, step.cost ?? 1);
  if (result === undefined) return null;
  checkInvariants(result, source, limiter.limit, key);
  return { ...outcome(result), resetAt: result.resetAt - start };
}

/** What every answer must satisfy whatever the algorithm. */
export function checkInvariants(
  result: RateLimitResult,
  source: 'memory' | 'redis',
  limit: number,
  key: string,
): void {
  deepStrictEqual(
    {
      source: result.source,
      limit: result.limit,
      key: result.key,
      remainingInRange: result.remaining >= 0 && result.remaining <= limit,
      retryIsZeroIffAllowed: result.allowed === (result.retryAfterMs === 0),
      retryNonNegative: result.retryAfterMs >= 0,
      integers: [result.remaining, result.resetAt, result.retryAfterMs].every(Number.isSafeInteger),
    },
    {
      source,
      limit,
      key,
      remainingInRange: true,
      retryIsZeroIffAllowed: true,
      retryNonNegative: true,
      integers: true,
    },
    `invariants of ${JSON.stringify(result)}`,
  );
}

/** Plays a whole table; returns what was observed, shaped like the table's expectations. */
export async function playTable(
  limiter: RateLimiter,
  clock: ManualClock,
  start: number,
  steps: readonly Step[],
  source: 'memory' | 'redis',
): Promise<{ observed: Observation[]; expected: Observation[] }> {
  const observed: Observation[] = [];
  const expected: Observation[] = [];
  for (const [i, step] of steps.entries()) {
    const result = await playStep(limiter, clock, start, step, source);
    const row = { step: i, at: step.at, op: step.op ?? 'consume', key: step.key ?? 'k' };
    const cost = (step.op ?? 'consume') === 'consume' ? { cost: step.cost ?? 1 } : {};
    observed.push({ ...row, ...cost, result });
    expected.push({
      ...row,
      ...cost,
      result: step.op === 'reset' ? 'reset' : step.expect === undefined ? result : step.expect,
    });
  }
  return { observed, expected };
}

// Reference models, from the definitions in SPEC.md and the issue: not from
// lib/. They live in scripts/lib/reference-model.cjs so the chaos checker
// (chaos/check.cjs) judges runs with the very same models.
export { admissible, boundViolation, referenceModel } from '../../scripts/lib/reference-model.cjs';
export type { Admitted, ReferenceModel } from '../../scripts/lib/reference-model.cjs';
