// The soak's per-key bound check: did any client get more than the package
// promises? Pure functions over what the driver recorded, so they can be read
// (and tested) apart from the process juggling in soak/soak.mjs.
//
// What is known about one request: the driver's wall clock when it was sent
// (s) and when its answer arrived (r), the instance, and who decided
// (X-RateLimit-Source). Redis (TIME), the apps (Date.now) and the driver run on
// one host and read one clock, so the decision happened at some p in [s, r].
// Every count below is of admitted requests whose p is *certainly* inside the
// interval being checked (s and r both inside), and every bound is computed
// for the widest interval p could span: the check under-counts and
// over-bounds, so timing jitter can never make it fail; only admissions can.
//
// Per SPEC, for a key of a rule with limit L, window W, fallbackLimit F:
//   - Redis decides exactly: at most L per window (the Lua script admits only
//     while count + 1 <= L; reconciled and timed-out-but-applied hits only
//     raise the count).
//   - During an outage each instance's memory store admits at most F per
//     window. A memory store's count for a key changes only by its own
//     decisions and by mirroring a Redis answer for that key on that
//     instance, so an "episode" is a run of one instance's memory decisions
//     for one key with no Redis decision for that key on that instance in
//     between (if one may have happened in between, a new episode starts).
//     Each episode adds at most F per window (token bucket: F plus F per W of
//     the episode's span). Reconciliation (SPEC: "no double quota after
//     recovery") goes further: an instance's outage hits reach Redis before
//     or with its next Redis decision for the key, whose answer is mirrored
//     back, so a second outage in the same window continues from a count that
//     includes them. Fixed and sliding windows are therefore charged F at
//     most once per window per instance (plus once per kill), however many
//     episodes the window saw. (Not the token bucket: Redis moves its bucket by
//     W/L per reconciled hit and memory by W/F, so after a mirror the memory
//     bucket legitimately has room again; it is charged per episode.)
//   - Warm fallback and reconciliation mean an outage does not reset quotas,
//     with one exception the package does not (and per SPEC need not) cover:
//     a SIGKILLed Redis without persistence restarts empty, so the hits Redis
//     itself admitted before the kill are gone and the restarted Redis grants
//     up to L again (only memory-admitted hits are written back). Every kill
//     inside an interval therefore adds L to the bound (the report counts how
//     many windows needed it).

export const SOURCE = /** @type {const} */ ({ none: 0, redis: 1, memory: 2, bypass: 3 });
export const SOURCE_NAMES = ['none', 'redis', 'memory', 'bypass'];

/** How long after an outage a reconciliation may still rewrite a window start. */
export const RECONCILE_GUARD_MS = 2000;

/**
 * @typedef {{ s: number, r: number, inst: number, src: number, ok: boolean, ep: number }} Decision
 *   One request of one key, sorted by s. ok: 2xx. ep: episode id (memory only, else -1).
 * @typedef {{ algorithm: string, limit: number, windowMs: number, failClosed: boolean,
 *   fallbackLimit?: number }} Rule
 * @typedef {{ count: number, bound: number, from: number, to: number, d: number, k: number,
 *   redis: number, memory: number, kind: string }} Window
 * @typedef {{ windows: number, healthy: { windows: number, max: number },
 *   max: Window | undefined, tightest: Window | undefined, violations: Window[],
 *   killAllowanceUsed: number, anchored?: KeyResult, weighted?: KeyResult,
 *   withinWindow?: KeyResult }} KeyResult
 */

/**
 * Intervals [s, r] sorted by s, answering "does any of them overlap [lo, hi]?"
 * in O(log n) through a prefix maximum of r.
 */
export class IntervalIndex {
  /** @param {Array<{ s: number, r: number }>} items */
  constructor(items) {
    const sorted = [...items].sort((a, b) => a.s - b.s);
    this.starts = Float64Array.from(sorted, item => item.s);
    this.maxEnd = new Float64Array(sorted.length);
    let max = -Infinity;
    sorted.forEach((item, i) => {
      max = Math.max(max, item.r);
      this.maxEnd[i] = max;
    });
  }

  /** @param {number} lo @param {number} hi */
  overlaps(lo, hi) {
    // Last item with s <= hi.
    let low = 0;
    let high = this.starts.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.starts[mid] <= hi) low = mid + 1;
      else high = mid;
    }
    return low > 0 && this.maxEnd[low - 1] >= lo;
  }
}

/**
 * Numbers the memory episodes of one key (see the header), per instance.
 * @param {Decision[]} decisions one key's decisions, sorted by s
 */
export function assignEpisodes(decisions) {
  let next = 0;
  const instances = new Set(decisions.map(d => d.inst));
  for (const inst of instances) {
    const redis = new IntervalIndex(
      decisions.filter(d => d.inst === inst && d.src === SOURCE.redis),
    );
    /** @type {Decision | undefined} */
    let previous;
    let current = -1;
    for (const d of decisions) {
      if (d.inst !== inst || d.src !== SOURCE.memory) continue;
      // A Redis answer for this key on this instance may have been mirrored
      // between the previous memory decision and this one: new episode.
      if (previous === undefined || redis.overlaps(previous.s, d.r)) current = next++;
      d.ep = current;
      previous = d;
    }
  }
  return next;
}

/** @param {number[]} kills @param {number} from @param {number} to */
function killsIn(kills, from, to) {
  let n = 0;
  for (const at of kills) if (at >= from && at <= to) n++;
  return n;
}

/**
 * Sums a window's admissions by source and the distinct memory episodes per
 * instance among them.
 * @param {Decision[]} members
 */
function tally(members) {
  let redis = 0;
  let memory = 0;
  /** @type {Map<number, Set<number>>} */
  const episodes = new Map();
  for (const d of members) {
    if (d.src === SOURCE.redis) redis++;
    else if (d.src === SOURCE.memory) {
      memory++;
      let set = episodes.get(d.inst);
      if (!set) episodes.set(d.inst, (set = new Set()));
      set.add(d.ep);
    }
  }
  return { redis, memory, episodes };
}

/**
 * How many times F an instance's memory store may add: once per episode, but
 * at most `cap` times. Reconciliation writes an instance's outage hits to
 * Redis before (or with) its next Redis decision for the key, and that
 * decision's answer is mirrored back, so a later outage in the same window
 * continues from a count that includes them: one F per window per instance,
 * plus one per kill (a restarted Redis lost the written-back hits).
 * @param {Map<number, Set<number>>} episodes per instance
 * @param {number} cap
 */
function charged(episodes, cap) {
  let n = 0;
  for (const set of episodes.values()) n += Math.min(set.size, cap);
  return n;
}

/**
 * @param {KeyResult} result
 * @param {Window} window
 * @param {number} limit
 */
function record(result, window, limit) {
  result.windows++;
  if (window.d === 0 && window.k === 0) {
    result.healthy.windows++;
    result.healthy.max = Math.max(result.healthy.max, window.count);
  }
  if (window.d > 0 && window.count > window.bound - window.d * limit) {
    // Only fits because the restarted Redis may grant L again.
    result.killAllowanceUsed++;
  }
  if (!result.max || window.count > result.max.count) result.max = window;
  if (
    !result.tightest ||
    window.bound - window.count < result.tightest.bound - result.tightest.count
  ) {
    result.tightest = window;
  }
  if (window.count > window.bound) result.violations.push(window);
}

/** @returns {KeyResult} */
function emptyResult() {
  return {
    windows: 0,
    healthy: { windows: 0, max: 0 },
    max: undefined,
    tightest: undefined,
    violations: [],
    killAllowanceUsed: 0,
  };
}

/**
 * Fixed window, any interval [t, t + W) anchored at an admission: it meets at
 * most two of Redis's first-hit windows (three if a reconciliation moved a
 * window start back, once per instance that recovered nearby), so
 * admitted <= 2 x L x (1 + kills) + F x charges + L x recoveries, where each
 * instance is charged once per episode, at most twice per kill + 1 (two windows).
 * Loose by design (the L of the next window is allowed), but covers every
 * admission, outages included.
 * @param {Rule} rule
 * @param {Decision[]} admits sorted by s
 * @param {number[]} kills
 * @param {IntervalIndex[]} outages per instance: every non-Redis decision
 * @param {KeyResult} result
 */
function fixedSliding(rule, admits, kills, outages, result) {
  const { limit: L, windowMs: W } = rule;
  const F = rule.failClosed ? (rule.fallbackLimit ?? L) : 0;
  for (let i = 0; i < admits.length; i++) {
    const t = admits[i].s;
    const members = [];
    for (let j = i; j < admits.length && admits[j].s < t + W; j++) {
      if (admits[j].r < t + W) members.push(admits[j]);
    }
    const { redis, memory, episodes } = tally(members);
    const d = killsIn(kills, t - W, t + W);
    const k = charged(episodes, 2 * (1 + d));
    const recoveries = outages.filter(o => o.overlaps(t - W - RECONCILE_GUARD_MS, t + W)).length;
    const bound = L * 2 * (1 + d) + F * k + L * recoveries;
    record(
      result,
      { count: members.length, bound, from: t, to: t + W, d, k, redis, memory, kind: 'any W' },
      L,
    );
  }
}

/**
 * Fixed window, exact windows: Redis opens a window at the first hit after
 * the last one ended, and a window's count never drops. So when Redis denied
 * y, y's window was full, and every later Redis admission belongs to a window
 * that opened at some b > p_y >= s_y: Redis admits at most L with p in
 * (p_y, s_y + W). Counted: admissions sent after y was answered and answered
 * before s_y + W. One check per Redis denial followed by a Redis admission;
 * skipped where an instance decided outside Redis within RECONCILE_GUARD_MS
 * before (a reconciliation may move a window start). Memory stores mirror
 * Redis's window, so each instance adds at most F (per episode, at most once
 * plus once per kill: see charged()); one F more for
 * an instance that decided this key from memory within W before (an older
 * memory window may still run) or before the new window opened (its mirror
 * may still hold the old window, with a fresh memory window after it).
 * @param {Rule} rule
 * @param {Decision[]} decisions sorted by s
 * @param {Decision[]} admits sorted by s
 * @param {number[]} kills
 * @param {IntervalIndex[]} outages
 * @param {number} timeoutMs
 */
function fixedAnchored(rule, decisions, admits, kills, outages, timeoutMs) {
  const { limit: L, windowMs: W } = rule;
  const F = rule.failClosed ? (rule.fallbackLimit ?? L) : 0;
  const result = emptyResult();
  const redis = decisions.filter(d => d.src === SOURCE.redis);
  /** @type {Map<number, IntervalIndex>} */
  const memoryByInstance = new Map();
  for (const inst of new Set(decisions.map(d => d.inst))) {
    memoryByInstance.set(
      inst,
      new IntervalIndex(decisions.filter(d => d.inst === inst && d.src === SOURCE.memory)),
    );
  }
  let first = 0;
  for (let j = 1; j < redis.length; j++) {
    const y = redis[j - 1];
    const z = redis[j];
    if (y.ok || !z.ok) continue;
    if (outages.some(o => o.overlaps(y.s - RECONCILE_GUARD_MS, z.r))) continue;
    const end = y.s + W;
    const members = [];
    while (first < admits.length && admits[first].s < y.r) first++;
    for (let i = first; i < admits.length && admits[i].s < end; i++) {
      if (admits[i].r < end) members.push(admits[i]);
    }
    const { redis: fromRedis, memory, episodes } = tally(members);
    const d = killsIn(kills, y.s, end);
    let k = charged(episodes, 1 + d);
    let extra = 0;
    for (const inst of episodes.keys()) {
      const index = memoryByInstance.get(inst);
      if (index && index.overlaps(y.r - W, z.r + timeoutMs)) extra++;
    }
    k += extra;
    record(
      result,
      {
        count: members.length,
        bound: L * (1 + d) + F * k,
        from: y.s,
        to: end,
        d,
        k,
        redis: fromRedis,
        memory,
        kind: 'exact',
      },
      L,
    );
  }
  return result;
}

/**
 * Sliding window: the weighted counter's windows are aligned to multiples of
 * W on the shared clock, and both stores admit only while the current
 * window's own count stays within their limit, so per aligned window:
 * admitted <= L x (1 + kills) + F x charges (see charged()). Exact, one check
 * per window.
 * @param {Rule} rule
 * @param {Decision[]} admits
 * @param {number[]} kills
 * @param {KeyResult} result
 */
function slidingAligned(rule, admits, kills, result) {
  const { limit: L, windowMs: W } = rule;
  const F = rule.failClosed ? (rule.fallbackLimit ?? L) : 0;
  /** @type {Map<number, Decision[]>} */
  const windows = new Map();
  for (const d of admits) {
    const start = d.s - (d.s % W);
    if (d.r >= start + W) continue; // may have been decided in the next window
    let list = windows.get(start);
    if (!list) windows.set(start, (list = []));
    list.push(d);
  }
  for (const [start, members] of windows) {
    const { redis, memory, episodes } = tally(members);
    const d = killsIn(kills, start, start + W);
    const k = charged(episodes, 1 + d);
    record(
      result,
      {
        count: members.length,
        bound: L * (1 + d) + F * k,
        from: start,
        to: start + W,
        d,
        k,
        redis,
        memory,
        kind: 'aligned',
      },
      L,
    );
  }
}

/**
 * Sliding window, the weighted rule itself, where Redis alone decided: in a
 * window C with no outage and no kill in C or the window P before it, Redis
 * admitted x only if cur + ceil(prev x (W - elapsed) / W) + 1 <= L. Lower
 * bounds for each term (admissions certainly in C and answered before x was
 * sent; admissions certainly in P; elapsed at most r_x - start) give a lower
 * bound of the left side: above L is a violation. Much tighter than the
 * per-window count in steady load, where the previous window keeps cur
 * well under L. Reported as count = that lower bound + 1, bound = L.
 * @param {Rule} rule
 * @param {Decision[]} admits sorted by s
 * @param {number[]} kills
 * @param {IntervalIndex[]} outages
 */
function slidingWeighted(rule, admits, kills, outages) {
  const { limit: L, windowMs: W } = rule;
  const result = emptyResult();
  /** @type {Map<number, Decision[]>} */
  const windows = new Map();
  for (const d of admits) {
    const start = d.s - (d.s % W);
    if (d.r >= start + W) continue;
    let list = windows.get(start);
    if (!list) windows.set(start, (list = []));
    list.push(d);
  }
  for (const [start, members] of windows) {
    const previous = windows.get(start - W)?.length ?? 0;
    if (killsIn(kills, start - W, start + W) > 0) continue;
    if (outages.some(o => o.overlaps(start - W, start + W))) continue;
    const answered = Float64Array.from(members, d => d.r).sort();
    for (const x of members) {
      if (x.src !== SOURCE.redis) continue;
      // Admissions of C answered before x was sent.
      let low = 0;
      let high = answered.length;
      while (low < high) {
        const mid = (low + high) >>> 1;
        if (answered[mid] < x.s) low = mid + 1;
        else high = mid;
      }
      const elapsed = Math.min(W, x.r - start);
      const used = low + Math.ceil((previous * (W - elapsed)) / W);
      record(
        result,
        {
          count: used + 1,
          bound: L,
          from: start,
          to: start + W,
          d: 0,
          k: 0,
          redis: low + 1,
          memory: 0,
          kind: 'weighted',
        },
        L,
      );
    }
  }
  return result;
}

/**
 * Token bucket (GCRA, burst L, L per W): every admission moves the bucket's
 * theoretical arrival time W/L later and it may never run more than W ahead
 * of now, so n admissions within a span T satisfy n <= L + T x L / W. Per
 * store: Redis (again per kill), each memory episode with F. Checked for every
 * interval from an admission up to 3 W long; returns the figures of those at
 * most W long.
 * @param {Rule} rule
 * @param {Decision[]} admits
 * @param {number[]} kills
 * @param {KeyResult} result
 */
function tokenBucket(rule, admits, kills, result) {
  const { limit: L, windowMs: W } = rule;
  // The same intervals, only those at most W long: "per window" figures.
  const withinWindow = emptyResult();
  const F = rule.fallbackLimit ?? L;
  const horizon = 3 * W;
  for (let i = 0; i < admits.length; i++) {
    const t = admits[i].s;
    const candidates = [];
    for (let j = i; j < admits.length && admits[j].s <= t + horizon; j++) {
      if (admits[j].r <= t + horizon) candidates.push(admits[j]);
    }
    candidates.sort((a, b) => a.r - b.r);
    let redis = 0;
    let redisFirst = Infinity;
    /** @type {Map<number, { n: number, first: number, last: number }>} */
    const episodes = new Map();
    let memory = 0;
    for (let n = 0; n < candidates.length; n++) {
      const d = candidates[n];
      if (d.src === SOURCE.redis) {
        redis++;
        redisFirst = Math.min(redisFirst, d.s);
      } else {
        memory++;
        const e = episodes.get(d.ep);
        if (e) {
          e.n++;
          e.first = Math.min(e.first, d.s);
          e.last = Math.max(e.last, d.r);
        } else episodes.set(d.ep, { n: 1, first: d.s, last: d.r });
      }
      const end = d.r;
      // Only where the interval ends in an admission can the count peak.
      if (n + 1 < candidates.length && candidates[n + 1].r === end) continue;
      let bound = 0;
      let dKills = 0;
      if (redis > 0) {
        dKills = killsIn(kills, redisFirst, end);
        bound += L * (1 + dKills) + Math.floor(((end - redisFirst) * L) / W);
      }
      for (const e of episodes.values()) bound += F + Math.floor(((e.last - e.first) * F) / W);
      const window = {
        count: n + 1,
        bound,
        from: t,
        to: end,
        d: dKills,
        k: episodes.size,
        redis,
        memory,
        kind: `${Math.round((end - t) / 100) / 10} s`,
      };
      record(result, window, L);
      if (end - t <= W) record(withinWindow, window, L);
    }
  }
  return withinWindow;
}

/**
 * Checks one key of one rule.
 * @param {Rule} rule
 * @param {Decision[]} decisions the key's decisions, sorted by s
 * @param {{ kills: number[], outages: IntervalIndex[], timeoutMs: number }} context
 *   kills: wall-clock times Redis was SIGKILLed; outages: per instance, every
 *   decision not made by Redis (any key)
 * @returns {KeyResult}
 */
export function checkKey(rule, decisions, context) {
  assignEpisodes(decisions);
  // Bypass admissions (fail-open rules) are unlimited by design.
  const admits = decisions.filter(d => d.ok && (d.src === SOURCE.redis || d.src === SOURCE.memory));
  const result = emptyResult();
  if (rule.algorithm === 'token-bucket') {
    result.withinWindow = tokenBucket(rule, admits, context.kills, result);
  } else if (rule.algorithm === 'sliding-window') {
    slidingAligned(rule, admits, context.kills, result);
    result.weighted = slidingWeighted(rule, admits, context.kills, context.outages);
  } else {
    fixedSliding(rule, admits, context.kills, context.outages, result);
    const anchored = fixedAnchored(
      rule,
      decisions,
      admits,
      context.kills,
      context.outages,
      context.timeoutMs,
    );
    result.anchored = anchored;
  }
  return result;
}
