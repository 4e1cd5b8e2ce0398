import { checkKey, badDecisions, epochs } from '../../chaos/check.cjs';
import type { Context, Hit, Rule } from '../../chaos/check.cjs';

// The chaos checker (chaos/check.cjs) on hand-made histories: each rule of
// issue 10 once kept and once broken by one admission. Times are ms on the
// reference clock; every decision takes 1 ms unless said otherwise.

const T0 = 1_700_000_040_000; // a multiple of every window used here
const FIXED: Rule = { algorithm: 'fixed-window', limit: 5, windowMs: 3000 };
const SLIDING: Rule = { algorithm: 'sliding-window', limit: 6, windowMs: 2000 };
const BUCKET: Rule = { algorithm: 'token-bucket', limit: 5, windowMs: 3000 };

const one: Context = { instances: 1, timeoutMs: 100, jumps: [], losses: [] };
const two: Context = { ...one, instances: 2 };

type Spec = {
  at: number;
  inst?: number;
  src?: Hit['src'];
  ok?: boolean;
  cost?: number;
  ms?: number;
};

/** Decisions at T0 + at; Redis ones report the window end a fixed window would have. */
function hits(specs: Spec[], windowEnd?: (at: number) => number): Hit[] {
  return specs.map(({ at, inst = 0, src = 'redis', ok = true, cost = 1, ms = 1 }) => {
    const hit: Hit = { s: T0 + at, r: T0 + at + ms, inst, cost, ok, src };
    if (windowEnd && ok) hit.hint = T0 + windowEnd(at);
    return hit;
  });
}

const range = (n: number, from: number, step: number, extra: Partial<Spec> = {}): Spec[] =>
  Array.from({ length: n }, (_, i) => ({ at: from + i * step, ...extra }));

const violations = (rule: Rule, list: Hit[], context: Context = one) =>
  checkKey(rule, list, context).violations.map(v => `${v.count}>${v.bound}`);

describe('checkKey, fixed window', () => {
  it('allows the limit in the window opened by the first hit, and again in the next', () => {
    const list = hits([...range(5, 0, 100), ...range(5, 3000, 100)], at =>
      at < 3000 ? 3000 : 6000,
    );
    const result = checkKey(FIXED, list, one);
    expect(result.violations).toEqual([]);
    expect(result.windows).toBe(2);
    expect(result.worst).toMatchObject({ count: 5, bound: 5 });
  });

  it('flags a sixth admission in one window, from any source', () => {
    expect(violations(FIXED, hits([...range(5, 0, 100), { at: 1500, src: 'memory' }]))).toEqual([
      '6>5',
    ]);
  });

  it('flags a second quota after Redis lost its data, with one instance', () => {
    // 4 in Redis, Redis restarts empty at 1000, 4 more in the same window: 8 of 5.
    const list = hits([...range(4, 0, 100), ...range(4, 1500, 100)]);
    const context = { ...one, losses: [{ from: T0 + 1000, to: T0 + 1000, kind: 'kill' }] };
    expect(violations(FIXED, list, context)).toEqual(['8>5']);
  });

  it("allows other instances' unmerged memory hits, and no more", () => {
    // Instance 1 admits 3 from memory during an outage; instance 0 admits 5 in Redis.
    const base = [...range(5, 0, 100), ...range(3, 50, 100, { inst: 1, src: 'memory' })];
    expect(violations(FIXED, hits(base), two)).toEqual([]);
    expect(violations(FIXED, hits([...base, { at: 2000 }]), two)).toEqual(['9>8']);
  });

  it('allows, with two instances, what one had not seen before Redis lost it', () => {
    // Instance 1 admits 3 in Redis after instance 0's last answer; Redis is flushed;
    // instance 0 re-seeds 2 and Redis admits 3 more through it.
    const list = hits([
      ...range(2, 0, 10),
      ...range(3, 100, 10, { inst: 1 }),
      ...range(3, 1500, 10),
    ]);
    const context = { ...two, losses: [{ from: T0 + 1000, to: T0 + 1001, kind: 'flushdb' }] };
    expect(violations(FIXED, list, context)).toEqual([]);
    expect(violations(FIXED, [...list, ...hits([{ at: 1600 }])], context)).toEqual(['9>8']);
    // One instance has seen every answer: no allowance at all.
    expect(
      violations(
        FIXED,
        list.map(h => ({ ...h, inst: 0 })),
        { ...context, instances: 1 },
      ),
    ).toEqual(['8>5']);
  });

  it("lets another instance's memory window, once merged, replace the one Redis forgot", () => {
    // Redis's window [0, 3000) through instance 0; instance 1's stale memory opens
    // its own window at 967; merged after 3000, Redis keeps [967, 3967) and then
    // opens [4263, 7263).
    const list = [
      ...hits([{ at: 0 }, { at: 0 }, { at: 350 }], () => 3000),
      ...hits([{ at: 967, inst: 1, src: 'memory' }], () => 3967),
      ...hits(range(2, 1600, 270, { src: 'memory' }), () => 3000),
      ...hits(range(3, 3450, 70), () => 3967),
      ...hits([...range(4, 4263, 170), { at: 6160 }], () => 7263),
    ];
    expect(violations(FIXED, list, two)).toEqual([]);
    // One instance sees every Redis answer, so its memory never opens such a window.
    expect(
      violations(
        FIXED,
        list.map(h => ({ ...h, inst: 0 })),
        one,
      ),
    ).toEqual(['6>5', '8>5']);
  });

  it('lets Redis start over after a loss, from an instance with nothing to restore', () => {
    // Redis loses the key at 1000; instance 1 never saw it, so its hit at
    // 1300 opens a fresh window there (max() has nothing to restore), which
    // ends at 4300, before the window cut short by the loss would have.
    const loss = [{ from: T0 + 1000, to: T0 + 1000, kind: 'flushdb' }];
    const specs = (seenBy1: boolean): Spec[] => [
      { at: 0 },
      ...(seenBy1 ? [{ at: 500, inst: 1 }] : []),
      { at: 1300, inst: 1 },
      { at: 3500 },
      ...range(5, 4400, 100),
    ];
    const end = (at: number) => (at < 1000 ? 3000 : at < 4300 ? 4300 : 7400);
    expect(violations(FIXED, hits(specs(false), end), { ...two, losses: loss })).toEqual([]);
    // Had instance 1 seen the key's window, it would have restored it.
    expect(violations(FIXED, hits(specs(true), end), { ...two, losses: loss })).toEqual(['6>5']);
  });

  it('lets Redis start over after a loss, from an instance that saw only an older window', () => {
    // Instance 1's last view is of the window -2050..950, which ended before
    // the loss at 1000; it never saw instance 0's window 960..3960, so its hit
    // at 1300 opens a fresh window (ends 4300), as if it had seen nothing.
    const loss = [{ from: T0 + 1000, to: T0 + 1000, kind: 'flushdb' }];
    const specs = (seenBy1: boolean): Spec[] => [
      { at: -2050, inst: 1 },
      { at: 960 },
      ...(seenBy1 ? [{ at: 980, inst: 1 }] : []),
      { at: 1300, inst: 1 },
      { at: 4000 },
      ...range(5, 4400, 100),
    ];
    const end = (at: number) => (at < 0 ? 950 : at < 1000 ? 3960 : at < 4300 ? 4300 : 7400);
    expect(violations(FIXED, hits(specs(false), end), { ...two, losses: loss })).toEqual([]);
    // Had instance 1 seen the live window, it would have restored it.
    expect(violations(FIXED, hits(specs(true), end), { ...two, losses: loss })).toEqual(['6>5']);
  });

  it('lets a fallback that Redis ran when it thawed open the window Redis reports', () => {
    // Frozen 500..1500: a request at 600 fell back (denied); Redis ran it at 1500,
    // opening its window [1500, 4500). Redis then admits 4 in it, and 5 after 4500.
    const admitted = hits([...range(4, 2000, 100), ...range(5, 4600, 100)], at =>
      at < 4500 ? 4500 : 7600,
    );
    const fallback = hits([{ at: 600, src: 'memory', ok: false, ms: 100 }]);
    const frozen = { ...one, freezes: [{ from: T0 + 500, to: T0 + 1500 }] };
    expect(violations(FIXED, [...admitted, ...fallback], frozen)).toEqual([]);
    // Without that fallback nothing but the admissions can open a window: 8 in [2000, 5000).
    expect(violations(FIXED, admitted, frozen)).toEqual(['8>5']);
  });

  it('lets a fallback admitted during a freeze sit in the window Redis opened when it thawed', () => {
    // Frozen 500..1500: a request at 600 timed out and memory admitted it; Redis
    // ran its call at 1500, opening [1500, 4500), and kept that window when the
    // memory hit (in memory's own window from 700) was merged. 4 in it, 5 after.
    const fallback = hits([{ at: 600, src: 'memory', ms: 100 }], () => 3700);
    const redis = hits([{ at: 2000 }, { at: 2100 }, { at: 4000 }], () => 4500);
    const next = hits(range(5, 4600, 100), () => 7600);
    const frozen = { ...one, freezes: [{ from: T0 + 500, to: T0 + 1500 }] };
    expect(violations(FIXED, [...fallback, ...redis, ...next], frozen)).toEqual([]);
    // Had it not overlapped a freeze, its window would have ended by 3800: 6 from 4000.
    expect(violations(FIXED, [...fallback, ...redis, ...next], one)).toEqual(['6>5']);
  });
});

describe('checkKey, sliding window', () => {
  it('allows what the weighted estimate allows', () => {
    // 6 early in window 0; at 1000 into window 1 the weight is 3: room for 3.
    const list = hits([...range(6, 0, 10), ...range(3, 3000, 10)]);
    expect(violations(SLIDING, list)).toEqual([]);
  });

  it('flags one admission past the weighted estimate', () => {
    const list = hits([...range(6, 0, 10), ...range(4, 3000, 10)]);
    expect(violations(SLIDING, list)).toEqual(['7>6']);
  });
});

describe('checkKey, token bucket', () => {
  it('allows the burst and then one per window/limit', () => {
    const list = hits([...range(5, 0, 1), { at: 600 }, { at: 1200 }]);
    expect(violations(BUCKET, list)).toEqual([]);
  });

  it('flags an admission before the bucket refilled', () => {
    expect(violations(BUCKET, hits([...range(5, 0, 1), { at: 500 }]))).toEqual(['6>5']);
  });
});

describe('checkKey, clock jumps', () => {
  // Instance 0 admits 5 in Redis; its clock jumps at 1000 during an outage and
  // memory admits 5 more in the same window.
  const list = hits([...range(5, 0, 100), ...range(5, 1200, 100, { src: 'memory' })]);

  it('excuses memory hits after a forward jump (old state looks older than it is)', () => {
    const context = { ...one, jumps: [{ inst: 0, at: T0 + 1000, deltaMs: 30_000 }] };
    expect(violations(FIXED, list, context)).toEqual([]);
  });

  it('does not excuse memory hits after a backward jump', () => {
    const context = { ...one, jumps: [{ inst: 0, at: T0 + 1000, deltaMs: -30_000 }] };
    expect(violations(FIXED, list, context)).toEqual(['10>5']);
  });

  // Redis's window [0, 3000) holds 4; memory adds 1 at 1000 during an outage
  // (Redis restarts empty at 1200); the clock jumps +30 s at 1500, so memory
  // sees its window as ended and opens [1600, 4600) with 2 hits. Merged with
  // its age after the restart, that is the window Redis keeps (3 more, ending
  // 25 ms late: the age arrives one transit late); Redis opens the next at 4700.
  const jumped = [
    ...hits(range(4, 0, 100), () => 3000),
    ...hits([{ at: 1000, src: 'memory' }], () => 3000),
    ...hits(range(2, 1600, 400, { src: 'memory' }), () => 4600),
    ...hits(range(3, 3450, 50), () => 4625),
    ...hits(range(5, 4700, 100), () => 7700),
  ];
  const kill = { from: T0 + 1200, to: T0 + 1200, kind: 'kill' };
  const forward = { inst: 0, at: T0 + 1500, deltaMs: 30_000 };

  it('lets a window memory opened after a forward jump become the one Redis keeps', () => {
    expect(violations(FIXED, jumped, { ...one, jumps: [forward], losses: [kill] })).toEqual([]);
    // Without the jump nothing excuses memory's hits (7 in [0, 3000)) or
    // explains a window opening at 1600 (8 in [3450, 6450)).
    expect(violations(FIXED, jumped, { ...one, losses: [kill] })).toEqual(['7>5', '8>5']);
  });

  it('does not let such a window hide a second quota after another loss', () => {
    // Redis keeps [1600, 4600) as above, loses it again at 4000 and hands out
    // 5 more in it: the instance's view was taken after the jump, so no aging.
    const second = [
      ...jumped.filter(h => h.s < T0 + 4700),
      ...hits(range(5, 4100, 50), () => 7100),
    ];
    const flush = { from: T0 + 4000, to: T0 + 4001, kind: 'flushdb' };
    expect(violations(FIXED, second, { ...one, jumps: [forward], losses: [kill, flush] })).toEqual([
      '8>5',
    ]);
  });
});

describe('epochs', () => {
  it('starts over after a reset resolved and drops decisions overlapping it', () => {
    const list = hits([{ at: 0 }, { at: 100, ms: 50 }, { at: 200 }]);
    const split = epochs(list, [{ s: T0 + 120, r: T0 + 150 }]);
    expect(split.map(epoch => epoch.map(h => h.s - T0))).toEqual([[0], [200]]);
  });

  it('gives a reset key a fresh limit', () => {
    const list = hits([...range(5, 0, 100), ...range(5, 1000, 100)]);
    expect(violations(FIXED, list, { ...one, resets: [{ s: T0 + 800, r: T0 + 900 }] })).toEqual([]);
    expect(violations(FIXED, list)).toEqual(['10>5']);
  });

  // reset() rejected (Redis unreachable or timed out): Redis may or may not
  // have run it. Typed wider than Reset, as the driver records it.
  const failedReset = { s: T0 + 500, r: T0 + 501, inst: 0, ok: false };

  it('lets Redis keep its window across a reset that failed', () => {
    // Redis's window [0, 3000) goes on: 2 before the failed reset, 3 after it,
    // then 5 in the next window, which a reset at 500 would have started later.
    const list = hits([...range(2, 0, 100), ...range(3, 1000, 100), ...range(5, 3100, 100)], at =>
      at < 3000 ? 3000 : 6100,
    );
    expect(violations(FIXED, list, { ...one, resets: [failedReset] })).toEqual([]);
    const succeeded = { ...failedReset, ok: true };
    expect(violations(FIXED, list, { ...one, resets: [succeeded] })).toEqual(['8>5']);
  });

  it('takes a failed reset as at most one reset', () => {
    const list = hits([...range(5, 0, 100), ...range(5, 1000, 100), ...range(5, 3100, 100)]);
    expect(violations(FIXED, list, { ...one, resets: [failedReset] })).toEqual(['10>5']);
  });
});

describe('badDecisions', () => {
  it('reports exceptions, bypasses and answers slower than timeout + margin', () => {
    const list = hits([
      { at: 0, ms: 150 },
      { at: 1, ms: 151 },
      { at: 2, src: 'error', ok: false },
      { at: 3, src: 'bypass' },
    ]);
    const { errors, slow } = badDecisions(list, 100, 50);
    expect(errors.map(h => h.src)).toEqual(['error', 'bypass']);
    expect(slow.map(h => h.s - T0)).toEqual([1]);
  });
});
