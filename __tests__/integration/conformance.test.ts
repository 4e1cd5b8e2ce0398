import { deepStrictEqual } from 'node:assert/strict';
import type { Redis } from 'ioredis';
import type { RateLimiter } from '../../lib/index.js';
import {
  ALGORITHMS,
  ON_BOUNDARY,
  memoryLimiter,
  no,
  ok,
  playStep,
  playTable,
  redisLimiter,
  type Table,
} from '../helpers/conformance.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { RedisProcess } from '../helpers/redis-process.js';
import { failFastClient, ready } from '../helpers/redis.js';

/*
 * One suite, both stores: every table below runs against the memory store and
 * against Redis (RESP2 and RESP3), on a ManualClock that both follow (Redis
 * through `redisTime: 'clock'`). Every expected answer was worked out by hand
 * from the algorithm's definition (the derivation is in the comments), so a
 * regression in either store, or in both alike, fails here.
 *
 * Offsets: `at` and `resetAt` are ms after the table's start. Tables without a
 * `start` give the same answers wherever they start, and run twice: at a
 * window boundary and 500 ms into an aligned window.
 */

const STARTS = [
  { label: 'on an aligned boundary', start: ON_BOUNDARY },
  { label: 'mid-window', start: ON_BOUNDARY + 500 },
];

const TABLES: Table[] = [
  // ---------------------------------------------------------------- fixed
  {
    title: 'fixed: first hit opens the window, exact limit, rollover',
    algorithm: 'fixed-window',
    limit: 5,
    window: 1000,
    steps: [
      { at: 0, cost: 1, expect: ok(4, 1000) }, // window [0, 1000)
      { at: 100, cost: 2, expect: ok(2, 1000) },
      { at: 200, cost: 2, expect: ok(0, 1000) }, // exactly 5
      { at: 300, cost: 1, expect: no(0, 1000, 700) }, // retry = resetAt - now
      { at: 400, cost: 3, expect: no(0, 1000, 600) },
      { at: 999, cost: 1, expect: no(0, 1000, 1) },
      { at: 1000, cost: 1, expect: ok(4, 2000) }, // rollover: [1000, 2000)
      { at: 1500, cost: 4, expect: ok(0, 2000) },
      { at: 1999, cost: 5, expect: no(0, 2000, 1) },
      { at: 2500, cost: 5, expect: ok(0, 3500) }, // idle: opens at the hit, not aligned
      { at: 3400, cost: 1, expect: no(0, 3500, 100) },
    ],
  },
  {
    title: 'fixed: a denied request consumes nothing',
    algorithm: 'fixed-window',
    limit: 5,
    window: 1000,
    steps: [
      { at: 0, cost: 3, expect: ok(2, 1000) },
      { at: 10, cost: 3, expect: no(2, 1000, 990) }, // 3 + 3 > 5; 2 still left
      { at: 20, cost: 3, expect: no(2, 1000, 980) },
      { at: 30, cost: 2, expect: ok(0, 1000) }, // the denied 3s left the 2 intact
      { at: 40, cost: 1, expect: no(0, 1000, 960) },
    ],
  },
  {
    title: 'fixed: limit 3 per 1000 ms (does not divide the window)',
    algorithm: 'fixed-window',
    limit: 3,
    window: 1000,
    steps: [
      { at: 0, expect: ok(2, 1000) },
      { at: 333, expect: ok(1, 1000) },
      { at: 666, expect: ok(0, 1000) },
      { at: 999, expect: no(0, 1000, 1) },
      { at: 1000, expect: ok(2, 2000) },
      { at: 1700, cost: 2, expect: ok(0, 2000) },
      { at: 1800, expect: no(0, 2000, 200) },
      { at: 2000, cost: 3, expect: ok(0, 3000) }, // now >= start + window: new window
    ],
  },
  {
    title: 'fixed: get() and reset()',
    algorithm: 'fixed-window',
    limit: 4,
    window: 1000,
    steps: [
      { at: 0, op: 'get', expect: null }, // unseen key
      { at: 0, cost: 1, expect: ok(3, 1000) },
      { at: 100, op: 'get', expect: ok(3, 1000) }, // for one unit, nothing consumed
      { at: 100, op: 'get', expect: ok(3, 1000) },
      { at: 100, op: 'get', key: 'other', expect: null },
      { at: 200, cost: 3, expect: ok(0, 1000) },
      { at: 300, op: 'get', expect: no(0, 1000, 700) },
      { at: 400, op: 'reset' },
      { at: 400, op: 'get', expect: null },
      { at: 400, cost: 4, expect: ok(0, 1400) }, // a fresh window opens at 400
      { at: 1399, op: 'get', expect: no(0, 1400, 1) },
      { at: 1400, op: 'get', expect: null }, // its window has ended
      { at: 1400, cost: 2, expect: ok(2, 2400) },
    ],
  },
  {
    title: 'fixed: one-minute window',
    algorithm: 'fixed-window',
    limit: 2,
    window: 60_000,
    steps: [
      { at: 0, expect: ok(1, 60_000) },
      { at: 59_999, expect: ok(0, 60_000) },
      { at: 59_999, expect: no(0, 60_000, 1) },
      { at: 60_000, cost: 2, expect: ok(0, 120_000) },
    ],
  },

  // -------------------------------------------------------------- sliding
  // used = current + ceil(previous * (window - elapsed) / window); a request
  // of cost c fits if used + c <= limit. Denied: retry at the first ms where
  // it fits, either later in this window (the previous window's weight
  // decays) or in the next (this window's count becomes the decaying one).
  // A denial's resetAt is that retry time (now + retryAfterMs), so the reset
  // headers and Retry-After announce the same moment.
  {
    title: 'sliding: weighting of the previous window at 0/25/50/90 %',
    algorithm: 'sliding-window',
    limit: 10,
    window: 1000,
    start: ON_BOUNDARY, // windows [0, 1000), [1000, 2000), ...
    steps: [
      // 10 hits in window 1 on four keys.
      { at: 0, cost: 10, key: 'p25', expect: ok(0, 1000) },
      { at: 0, cost: 4, key: 'p50', expect: ok(6, 1000) },
      { at: 500, cost: 6, key: 'p50', expect: ok(0, 1000) },
      { at: 0, cost: 5, key: 'p90', expect: ok(5, 1000) },
      { at: 999, cost: 5, key: 'p90', expect: ok(0, 1000) },
      // current 10, previous 0: retry in window 2 at 2000 - floor(9 * 1000 / 10) = 1100.
      { at: 999, key: 'p90', expect: no(0, 1100, 101) },
      // 0 % into window 2: weight ceil(10 * 1000/1000) = 10, none allowed;
      // room 10 - 0 - 1 = 9 -> at 2000 - floor(9 * 1000 / 10) = 1100.
      { at: 1000, key: 'p25', expect: no(0, 1100, 100) },
      // 25 %: ceil(10 * 750/1000) = ceil(7.5) = 8 -> 2 allowed.
      { at: 1250, key: 'p25', expect: ok(1, 2000) },
      { at: 1250, key: 'p25', expect: ok(0, 2000) },
      // current 2: room 7 -> at 2000 - floor(7 * 1000 / 10) = 1300.
      { at: 1250, key: 'p25', expect: no(0, 1300, 50) },
      { at: 1299, key: 'p25', expect: no(0, 1300, 1) }, // ceil(7.01) = 8: 10 + 1 > 10
      { at: 1300, key: 'p25', expect: ok(0, 2000) }, // ceil(7) = 7: 2 + 7 + 1 = 10
      // 50 %: ceil(10 * 500/1000) = 5 -> 5 allowed.
      { at: 1500, key: 'p50', expect: ok(4, 2000) },
      { at: 1500, key: 'p50', expect: ok(3, 2000) },
      { at: 1500, key: 'p50', expect: ok(2, 2000) },
      { at: 1500, key: 'p50', expect: ok(1, 2000) },
      { at: 1500, key: 'p50', expect: ok(0, 2000) },
      // current 5: room 4 -> at 2000 - 400 = 1600.
      { at: 1500, key: 'p50', expect: no(0, 1600, 100) },
      // 90 %: ceil(10 * 100/1000) = 1 -> 9 allowed.
      { at: 1900, cost: 5, key: 'p90', expect: ok(4, 2000) },
      { at: 1900, cost: 4, key: 'p90', expect: ok(0, 2000) },
      // current 9: room 0 -> at 2000 (window 3: previous 9, 9 + 1 <= 10).
      { at: 1900, key: 'p90', expect: no(0, 2000, 100) },
      { at: 2000, key: 'p90', expect: ok(0, 3000) },
    ],
  },
  {
    title: 'sliding: start mid-window (the first aligned window is short)',
    algorithm: 'sliding-window',
    limit: 10,
    window: 1000,
    start: ON_BOUNDARY + 500, // windows [-500, 500), [500, 1500), ...
    steps: [
      { at: 0, cost: 10, expect: ok(0, 500) },
      // current 10: at -500 + 2000 - floor(9 * 1000 / 10) = 600.
      { at: 100, expect: no(0, 600, 500) },
      { at: 499, expect: no(0, 600, 101) },
      // window [500, 1500): previous 10 weighs 10; room 9 -> 1500 - 900 = 600.
      { at: 500, expect: no(0, 600, 100) },
      { at: 600, expect: ok(0, 1500) }, // ceil(10 * 900/1000) = 9
      { at: 1000, op: 'get', expect: ok(4, 1500) }, // 1 + ceil(5) = 6
      { at: 1000, cost: 4, expect: ok(0, 1500) },
      { at: 1499, op: 'get', expect: ok(4, 1500) }, // 5 + ceil(0.01) = 6
      { at: 1500, op: 'get', expect: ok(5, 2500) }, // previous 5 at full weight
      { at: 1500, cost: 5, expect: ok(0, 2500) },
      // current 5, previous 5: room 4 -> 2500 - floor(4 * 1000 / 5) = 1700.
      { at: 1500, expect: no(0, 1700, 200) },
      { at: 2500, op: 'get', expect: ok(5, 3500) },
      { at: 3499, op: 'get', expect: ok(9, 3500) }, // ceil(5 * 1/1000) = 1
      { at: 3500, op: 'get', expect: null }, // two windows on: nothing left
      { at: 3500, cost: 10, expect: ok(0, 4500) },
    ],
  },
  {
    title: 'sliding: limit 3 per 1000 ms (does not divide the window)',
    algorithm: 'sliding-window',
    limit: 3,
    window: 1000,
    start: ON_BOUNDARY,
    steps: [
      { at: 0, cost: 3, expect: ok(0, 1000) },
      // current 3: at 2000 - floor(2 * 1000 / 3) = 1334.
      { at: 500, expect: no(0, 1334, 834) },
      { at: 1333, expect: no(0, 1334, 1) }, // ceil(3 * 667/1000) = ceil(2.001) = 3
      { at: 1334, expect: ok(0, 2000) }, // ceil(3 * 666/1000) = ceil(1.998) = 2
      { at: 1667, op: 'get', expect: ok(1, 2000) }, // 1 + ceil(0.999) = 2
      { at: 1667, expect: ok(0, 2000) },
      // current 2: room 0 -> at 2000.
      { at: 1700, expect: no(0, 2000, 300) },
      { at: 2000, op: 'get', expect: ok(1, 3000) }, // previous 2 at full weight
      // cost 2: room 3 - 0 - 2 = 1 -> 3000 - floor(1 * 1000 / 2) = 2500.
      { at: 2000, cost: 2, expect: no(1, 2500, 500) },
      { at: 2499, cost: 2, expect: no(1, 2500, 1) }, // ceil(2 * 501/1000) = 2
      { at: 2500, cost: 2, expect: ok(0, 3000) }, // ceil(1) = 1: 1 + 2 = 3
    ],
  },
  {
    title: 'sliding: one-minute window, start 20 s into it',
    algorithm: 'sliding-window',
    limit: 4,
    window: 60_000,
    start: ON_BOUNDARY + 20_000, // windows [-20 000, 40 000), [40 000, 100 000)
    steps: [
      { at: 0, cost: 2, expect: ok(2, 40_000) },
      { at: 39_999, cost: 2, expect: ok(0, 40_000) },
      // current 4: at -20 000 + 120 000 - floor(3 * 60 000 / 4) = 55 000.
      { at: 39_999, expect: no(0, 55_000, 15_001) },
      // previous 4, room 3: at 100 000 - 45 000 = 55 000.
      { at: 40_000, expect: no(0, 55_000, 15_000) },
      { at: 54_999, expect: no(0, 55_000, 1) }, // ceil(4 * 45 001/60 000) = 4
      { at: 55_000, expect: ok(0, 100_000) }, // ceil(3) = 3
      { at: 70_000, op: 'get', expect: ok(1, 100_000) }, // 1 + ceil(2) = 3
      // cost 2: room 4 - 1 - 2 = 1 -> 100 000 - floor(60 000 / 4) = 85 000.
      { at: 70_000, cost: 2, expect: no(1, 85_000, 15_000) },
      { at: 85_000, cost: 2, expect: ok(0, 100_000) }, // 1 + ceil(1) + 2 = 4
    ],
  },
  {
    title: 'sliding: get() and reset()',
    algorithm: 'sliding-window',
    limit: 2,
    window: 1000,
    start: ON_BOUNDARY,
    steps: [
      { at: 0, op: 'get', expect: null },
      { at: 0, cost: 2, expect: ok(0, 1000) },
      // one unit: current 2 -> at 2000 - floor(1 * 1000 / 2) = 1500.
      { at: 10, op: 'get', expect: no(0, 1500, 1490) },
      { at: 10, op: 'get', expect: no(0, 1500, 1490) },
      { at: 20, op: 'reset' },
      { at: 20, op: 'get', expect: null },
      { at: 20, cost: 2, expect: ok(0, 1000) },
      { at: 1999, op: 'get', expect: ok(1, 2000) }, // ceil(2 * 1/1000) = 1
      { at: 2000, op: 'get', expect: null },
    ],
  },

  // --------------------------------------------------------- token bucket
  // GCRA: each unit moves the theoretical arrival time (TAT) on by
  // window/limit ms; a request fits while its TAT stays within `window` of
  // now. remaining = whole units that still fit; resetAt = ceil(TAT) when
  // allowed (bucket full again), the retry time when denied.
  {
    title: 'token: burst of limit, then one per window/limit, refill after partial time',
    algorithm: 'token-bucket',
    limit: 5,
    window: 1000, // one unit per 200 ms
    steps: [
      { at: 0, expect: ok(4, 200) },
      { at: 0, expect: ok(3, 400) },
      { at: 0, expect: ok(2, 600) },
      { at: 0, expect: ok(1, 800) },
      { at: 0, expect: ok(0, 1000) }, // burst of 5: TAT 1000
      { at: 0, expect: no(0, 200, 200) }, // would need TAT 1200 <= now + 1000
      { at: 100, expect: no(0, 200, 100) },
      { at: 199, expect: no(0, 200, 1) },
      { at: 200, expect: ok(0, 1200) },
      { at: 200, expect: no(0, 400, 200) },
      { at: 400, expect: ok(0, 1400) },
      // 300 ms later: TAT 1400 is 700 ms ahead = 3.5 units used, 1 whole unit free.
      { at: 700, op: 'get', expect: ok(1, 1400) },
      { at: 700, expect: ok(0, 1600) },
      { at: 700, expect: no(0, 800, 100) },
      { at: 2000, cost: 5, expect: ok(0, 3000) }, // idle: full bucket
      { at: 2400, op: 'get', expect: ok(2, 3000) }, // 400 ms refilled 2
      // cost 3: TAT 3600 > 2400 + 1000; fits at 3600 - 1000 = 2600.
      { at: 2400, cost: 3, expect: no(2, 2600, 200) },
      { at: 2400, cost: 2, expect: ok(0, 3400) }, // the denied 3 took nothing
    ],
  },
  {
    title: 'token: limit 3 per 1000 ms (one unit per 333⅓ ms)',
    algorithm: 'token-bucket',
    limit: 3,
    window: 1000,
    steps: [
      { at: 0, expect: ok(2, 334) }, // TAT 333⅓
      { at: 0, expect: ok(1, 667) }, // TAT 666⅔
      { at: 0, expect: ok(0, 1000) }, // TAT 1000
      // TAT would be 1333⅓: fits from 333⅓, the first whole ms is 334.
      { at: 0, expect: no(0, 334, 334) },
      { at: 333, expect: no(0, 334, 1) },
      { at: 334, expect: ok(0, 1334) }, // TAT 1333⅓
      { at: 666, expect: no(0, 667, 1) }, // TAT would be 1666⅔ > 1666
      { at: 667, expect: ok(0, 1667) },
      { at: 1000, expect: ok(0, 2000) }, // TAT 2000 exactly
      { at: 1500, op: 'get', expect: ok(1, 2000) }, // 500 ms = 1.5 units refilled
      // cost 2: TAT would be 2666⅔: fits from 1666⅔ -> 1667.
      { at: 1500, cost: 2, expect: no(1, 1667, 167) },
      { at: 1667, cost: 2, expect: ok(0, 2667) },
      { at: 2666, op: 'get', expect: ok(2, 2667) }, // ⅔ ms of the TAT left
      { at: 2667, op: 'get', expect: null }, // bucket full: nothing stored
    ],
  },
  {
    title: 'token: get() and reset()',
    algorithm: 'token-bucket',
    limit: 2,
    window: 1000,
    steps: [
      { at: 0, op: 'get', expect: null },
      { at: 0, cost: 2, expect: ok(0, 1000) },
      // one unit: TAT would be 1500; fits at 500.
      { at: 100, op: 'get', expect: no(0, 500, 400) },
      { at: 100, op: 'reset' },
      { at: 100, op: 'get', expect: null },
      { at: 100, expect: ok(1, 600) },
      { at: 599, op: 'get', expect: ok(1, 600) },
      { at: 600, op: 'get', expect: null },
    ],
  },
  {
    title: 'token: one-minute window',
    algorithm: 'token-bucket',
    limit: 4,
    window: 60_000, // one unit per 15 s
    steps: [
      { at: 0, cost: 4, expect: ok(0, 60_000) },
      { at: 14_999, expect: no(0, 15_000, 1) },
      { at: 15_000, expect: ok(0, 75_000) },
      { at: 45_000, op: 'get', expect: ok(2, 75_000) },
      { at: 45_000, cost: 2, expect: ok(0, 105_000) },
    ],
  },
];

/** Each table with each start it runs at. */
const CASES = TABLES.flatMap(table =>
  table.start !== undefined
    ? [{ ...table, start: table.start, label: table.title }]
    : STARTS.map(({ label, start }) => ({ ...table, start, label: `${table.title} (${label})` })),
);

const STORES = [
  { label: 'memory', kind: 'memory', protocol: 3 },
  { label: 'redis (RESP2)', kind: 'redis', protocol: 2 },
  { label: 'redis (RESP3)', kind: 'redis', protocol: 3 },
] as const;

let redis: RedisProcess;
const clients = new Map<2 | 3, Redis>();
const limiters: RateLimiter[] = [];

function track<T extends RateLimiter>(limiter: T): T {
  limiters.push(limiter);
  return limiter;
}

beforeAll(async () => {
  redis = await RedisProcess.start();
  for (const protocol of [2, 3] as const) {
    const client = failFastClient(redis.port, protocol);
    clients.set(protocol, client);
    await ready(client);
  }
});

afterEach(async () => {
  await Promise.all(limiters.splice(0).map(l => l.close()));
});

afterAll(async () => {
  for (const client of clients.values()) client.disconnect();
  await redis?.stop();
});

function client(protocol: 2 | 3): Redis {
  const found = clients.get(protocol);
  if (!found) throw new Error(`no RESP${protocol} client`);
  return found;
}

test('the tables cover every algorithm', () => {
  expect(new Set(TABLES.map(t => t.algorithm))).toEqual(new Set(ALGORITHMS));
});

describe.each(STORES)('$label store', store => {
  describe.each(ALGORITHMS)('%s', algorithm => {
    it.each(CASES.filter(c => c.algorithm === algorithm))('$label', async table => {
      const clock = new ManualClock(table.start);
      const spec = { algorithm: table.algorithm, limit: table.limit, window: table.window, clock };
      const limiter = track(
        store.kind === 'memory' ? memoryLimiter(spec) : redisLimiter(spec, client(store.protocol)),
      );
      const { observed, expected } = await playTable(
        limiter,
        clock,
        table.start,
        table.steps,
        store.kind,
      );
      expect(observed).toStrictEqual(expected);
    });
  });
});

describe.each([2, 3] as const)('memory and Redis (RESP%i) side by side', protocol => {
  it.each(CASES)('$label: equal answers at every step', async table => {
    const clock = new ManualClock(table.start);
    const spec = { algorithm: table.algorithm, limit: table.limit, window: table.window, clock };
    const memory = track(memoryLimiter(spec));
    const onRedis = track(redisLimiter(spec, client(protocol)));
    for (const [i, step] of table.steps.entries()) {
      const fromMemory = await playStep(memory, clock, table.start, step, 'memory');
      const fromRedis = await playStep(onRedis, clock, table.start, step, 'redis');
      deepStrictEqual(
        fromRedis,
        fromMemory,
        `step ${i} ${JSON.stringify(step)}: Redis ${JSON.stringify(fromRedis)}, memory ${JSON.stringify(fromMemory)}`,
      );
    }
  });
});
