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

// ---------------------------------------------------------------------------
// Reference models, from the definitions in SPEC.md and the issue: not from
// lib/. Each answers "would `cost` units be admitted at `now`?" without
// changing anything, and `admit` records an admission.

export interface ReferenceModel {
  /** Whether `cost` units fit at `now`, judged against `limit` (default: the rule's). */
  allows(cost: number, now: number, limit?: number): boolean;
  admit(cost: number, now: number): void;
  /** Gives back `units` counted in the live window or bucket, never below zero. */
  refund(units: number, now: number): void;
}

export function referenceModel(
  algorithm: AlgorithmName,
  ruleLimit: number,
  windowMs: number,
): ReferenceModel {
  if (algorithm === 'fixed-window') {
    // The window opens at the first hit and lasts windowMs (INCR + PEXPIRE),
    // even when refunds bring its count back to 0.
    let open: { start: number; count: number } | undefined;
    const live = (now: number) => (open && now < open.start + windowMs ? open : undefined);
    return {
      allows: (cost, now, limit = ruleLimit) => (live(now)?.count ?? 0) + cost <= limit,
      admit(cost, now) {
        const current = live(now);
        if (current) current.count += cost;
        else open = { start: now, count: cost };
      },
      refund(units, now) {
        const current = live(now);
        if (current) current.count = Math.max(0, current.count - units);
      },
    };
  }
  if (algorithm === 'sliding-window') {
    // Aligned windows; the previous window's count weighted by its overlap
    // with the sliding window [now - windowMs, now], rounded up.
    const counts = new Map<number, number>();
    const used = (now: number): number => {
      const index = Math.floor(now / windowMs);
      const elapsed = now - index * windowMs;
      const previous = counts.get(index - 1) ?? 0;
      return (counts.get(index) ?? 0) + Math.ceil((previous * (windowMs - elapsed)) / windowMs);
    };
    return {
      allows: (cost, now, limit = ruleLimit) => used(now) + cost <= limit,
      admit(cost, now) {
        const index = Math.floor(now / windowMs);
        counts.set(index, (counts.get(index) ?? 0) + cost);
      },
      refund(units, now) {
        // The current window only: the previous one has ended.
        const index = Math.floor(now / windowMs);
        counts.set(index, Math.max(0, (counts.get(index) ?? 0) - units));
      },
    };
  }
  // GCRA in exact integer units of 1/limit ms: each unit moves the theoretical
  // arrival time (TAT) by windowMs/limit ms = windowMs units; a request is
  // admitted while the TAT it leads to is at most windowMs ahead of now.
  let tat = 0;
  const after = (cost: number, now: number) => Math.max(tat, now * ruleLimit) + cost * windowMs;
  return {
    allows: (cost, now) => after(cost, now) - now * ruleLimit <= windowMs * ruleLimit,
    admit(cost, now) {
      tat = after(cost, now);
    },
    refund(units, now) {
      tat = Math.max(now * ruleLimit, tat - units * windowMs);
    },
  };
}

/** The largest cost (0..limit) the model would admit at `now`. */
export function admissible(model: ReferenceModel, limit: number, now: number): number {
  for (let n = limit; n >= 1; n--) if (model.allows(n, now)) return n;
  return 0;
}

export type Admitted = { at: number; cost: number };

/**
 * The algorithm's bound on admissions, checked over a whole history. Returns
 * a description of the first violation, or undefined.
 */
export function boundViolation(
  algorithm: AlgorithmName,
  limit: number,
  windowMs: number,
  admitted: readonly Admitted[],
): string | undefined {
  if (algorithm === 'fixed-window') {
    // Windows open at a first hit; the next one at the first hit after it ends.
    let start = -Infinity;
    let sum = 0;
    for (const hit of admitted) {
      if (hit.at >= start + windowMs) {
        start = hit.at;
        sum = 0;
      }
      sum += hit.cost;
      if (sum > limit) return `${sum} admitted in the window opened at ${start}`;
    }
    return undefined;
  }
  if (algorithm === 'sliding-window') {
    const perWindow = new Map<number, number>();
    for (const [i, hit] of admitted.entries()) {
      const index = Math.floor(hit.at / windowMs);
      const current = (perWindow.get(index) ?? 0) + hit.cost;
      perWindow.set(index, current);
      if (current > limit) return `${current} admitted in the aligned window #${index}`;
      // The weighted estimate at this admission, this admission included.
      const previous = perWindow.get(index - 1) ?? 0;
      const elapsed = hit.at - index * windowMs;
      const weighted = current + Math.ceil((previous * (windowMs - elapsed)) / windowMs);
      if (weighted > limit) return `weighted estimate ${weighted} at hit #${i} (${hit.at})`;
      let inInterval = 0;
      for (const other of admitted.slice(i))
        if (other.at <= hit.at + windowMs) inInterval += other.cost;
      if (inInterval > 2 * limit) return `${inInterval} admitted in [${hit.at}, +${windowMs}]`;
    }
    return undefined;
  }
  // Token bucket: in [t, t + d] at most limit + d * limit / windowMs units.
  for (let i = 0; i < admitted.length; i++) {
    let sum = 0;
    for (let j = i; j < admitted.length; j++) {
      sum += (admitted[j] as Admitted).cost;
      const d = (admitted[j] as Admitted).at - (admitted[i] as Admitted).at;
      if (sum * windowMs > (windowMs + d) * limit) {
        return `${sum} admitted in [${(admitted[i] as Admitted).at}, +${d}], bound ${limit + (d * limit) / windowMs}`;
      }
    }
  }
  return undefined;
}
