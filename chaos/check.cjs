// @ts-check
'use strict';
// The chaos run's tight checker: did any key get more than the rules allow?
// Pure functions over what the driver (chaos/chaos.mjs) recorded, so they can
// be tested with hand-made histories (__tests__/unit/chaos-check.test.ts).
// CommonJS so jest and the .mjs driver load the same file. Types: check.d.cts.
//
// One reference clock. Redis (TIME), the driver and every app instance run on
// one host, so Redis's time is the driver's Date.now(); an instance's clock is
// that plus its injected offset, which the driver knows. A decision happened
// at some p in [s, r] (the driver's clock just before consume() and just
// after it resolved). Counts are of admissions *certainly* inside a window;
// bounds are for everything that *may* be inside: timing jitter can only make
// the check weaker, never fail it.
//
// The rules, per key and per window (issue 10), L = limit:
//   - base: admitted <= L + sum(m_i) - min(m_i), m_i = what instance i
//     admitted from memory in the window (one instance: exactly L). The only
//     excess allowed is other instances' outage hits not merged yet.
//   - data loss (kill + restart empty, FLUSHDB, eviction), 2+ instances only:
//     Redis restarts from what the first instance to decide the key remembers.
//     Allowed on top: the Redis admissions of *other* instances that this
//     instance had not seen in an answer before the loss (max over instances;
//     only its admissions count as answers: a denial may be its block cache).
//     One instance has seen every answer, so it gets nothing.
//   - clock jumps (an instance's offset changes by D at J): that instance's
//     memory state and outage hits older than J are measured on the old
//     offset, which no design can undo. Allowed on top: its memory admissions
//     from the algorithm's span before J, and, for a forward jump (state looks
//     older than it is), also from twice the span after J; and for a fixed
//     window, such hits may land anywhere in Redis when merged, so they may
//     open a window there (like the late fallbacks below). Backward jumps only make
//     old state look younger (denies longer), so hits after one get nothing:
//     that is exactly where dropping outage hits as "expired" shows up.
//     A forward jump also ages the views of Redis's counts an instance keeps:
//     its Redis admissions before a data loss within the span of such a jump
//     are allowed again (ages are read off the instance's wall clock), if the
//     jump falls between its last view before the loss and the restore. And
//     memory after a forward jump may open a fixed window early (its old one
//     looked ended); merged with its age, that is the window Redis keeps, so
//     its start may begin the next window before the previous one ended.
//   - reset(key): the key starts over once reset resolved; decisions that
//     overlap the reset call count in neither epoch. A reset that failed
//     (rejected) may or may not have run in Redis: the key passes if either
//     explains it (see checkKey).
// Fixed window: windows open at the first admitted hit after the previous one
// ended (SPEC). Each boundary is known as a band [lo, hi] from the [s, r] of
// the hits that may open it; a Redis admission whose reported resetAt lies in
// the band pins it (that is the window Redis actually kept). Sliding window
// and token bucket: the shared reference model (scripts/lib/reference-model.cjs)
// fed every admission certainly decided before, with the allowance as slack.

const { referenceModel } = require('../scripts/lib/reference-model.cjs');

/**
 * @typedef {'fixed-window' | 'sliding-window' | 'token-bucket'} AlgorithmName
 * @typedef {{ algorithm: AlgorithmName, limit: number, windowMs: number }} Rule
 * @typedef {{ s: number, r: number, inst: number, cost: number, ok: boolean,
 *   src: 'redis' | 'memory' | 'bypass' | 'error', hint?: number }} Hit
 *   One decision of one key: s, r on the reference clock; hint: result.resetAt
 *   on the reference clock (admissions only).
 * @typedef {{ inst: number, at: number, deltaMs: number }} Jump
 * @typedef {{ from: number, to: number, kind: string }} Loss
 * @typedef {{ s: number, r: number, inst?: number, ok?: boolean }} Reset
 *   ok false: reset() rejected (Redis unreachable or timed out)
 * @typedef {{ from: number, to: number }} Freeze
 * @typedef {{ instances: number, timeoutMs: number, jumps: Jump[], losses: Loss[],
 *   resets?: Reset[], freezes?: Freeze[], wipes?: Reset[] }} Context
 *   wipes: failed resets taken as not run by Redis (set by checkKey)
 * @typedef {{ count: number, bound: number, from: number, to: number, kind: string,
 *   redis: number, memory: number[], allowance: { base: number, loss: number, jump: number } }} Window
 * @typedef {{ windows: number, worst: Window | undefined, violations: Window[] }} KeyResult
 */

const SOURCE_OK = new Set(['redis', 'memory']);

/** How long an algorithm's state for a key can matter after its last hit. */
function spanOf(/** @type {Rule} */ rule) {
  return rule.algorithm === 'sliding-window' ? 2 * rule.windowMs : rule.windowMs;
}

/**
 * Splits a key's decisions into reset epochs: decisions certainly after a
 * reset resolved start over; those overlapping a reset call are dropped.
 * @param {Hit[]} hits sorted by s
 * @param {Reset[]} resets
 * @returns {Hit[][]}
 */
function epochs(hits, resets) {
  const sorted = [...resets].sort((a, b) => a.s - b.s);
  /** @type {Hit[][]} */
  const out = [[]];
  let next = 0;
  for (const hit of hits) {
    while (next < sorted.length && hit.s >= /** @type {Reset} */ (sorted[next]).r) {
      out.push([]);
      next++;
    }
    const overlaps = sorted.some(reset => hit.s < reset.r && hit.r > reset.s);
    if (!overlaps) /** @type {Hit[]} */ (out[out.length - 1]).push(hit);
  }
  return out.filter(list => list.length > 0);
}

/**
 * The allowance of a window on top of L, from the admissions that may lie in
 * it (`possible`) and every decision of the key (`all`, for data loss).
 * @param {Rule} rule
 * @param {Hit[]} possible admissions possibly in the window
 * @param {Hit[]} all every decision of the key in this epoch, sorted by s
 * @param {Context} context
 * @param {number} from earliest time a member may have been decided
 * @param {number} to latest time a member may have been decided
 */
function allowance(rule, possible, all, context, from, to) {
  const span = spanOf(rule) + context.timeoutMs;
  const memory = new Array(context.instances).fill(0);
  let jump = 0;
  for (const hit of possible) {
    if (hit.src !== 'memory') continue;
    if (jumpedOver(rule, hit, context) !== undefined || wiped(rule, hit, context)) jump += hit.cost;
    else memory[hit.inst] += hit.cost;
  }
  const base = memory.reduce((a, b) => a + b, 0) - Math.min(...memory);
  let loss = 0;
  if (context.instances > 1) {
    for (const event of context.losses) {
      if (event.to < from - span || event.from > to) continue;
      let worst = 0;
      for (let inst = 0; inst < context.instances; inst++) {
        // The last Redis answer this instance certainly had for the key before
        // the loss: an admission (a denial may come from its block cache).
        let seen = -Infinity;
        for (const d of all) {
          if (d.inst === inst && d.src === 'redis' && d.ok && d.r < event.from) {
            seen = Math.max(seen, d.s);
          }
        }
        let unseen = 0;
        for (const hit of possible) {
          if (hit.inst !== inst && hit.src === 'redis' && hit.s <= event.to && hit.r >= seen) {
            unseen += hit.cost;
          }
        }
        worst = Math.max(worst, unseen);
      }
      loss += worst;
    }
  }
  // A forward jump also ages the views an instance keeps of Redis's counts:
  // if Redis loses the key, a view taken before the jump and sent after it
  // may look expired and not be restored. Allowed on top: that instance's
  // Redis admissions before such a loss, if the jump came after its last view
  // (a Redis admission answered) before the loss and before the call that
  // restored the key (at the latest its first Redis admission after the loss).
  for (const event of context.losses) {
    if (event.to < from - span || event.from > to) continue;
    for (let inst = 0; inst < context.instances; inst++) {
      let viewed = -Infinity;
      let restored = Infinity;
      for (const d of all) {
        if (d.inst !== inst || d.src !== 'redis' || !d.ok) continue;
        if (d.r < event.from) viewed = Math.max(viewed, d.s);
        else if (d.s > event.to) restored = Math.min(restored, d.r);
      }
      const aged = context.jumps.some(
        j =>
          j.inst === inst &&
          j.deltaMs > 0 &&
          j.at >= viewed &&
          j.at <= restored &&
          j.at >= event.from - span &&
          j.at <= event.to + span,
      );
      if (!aged) continue;
      for (const hit of possible) {
        if (hit.inst === inst && hit.src === 'redis' && hit.ok && hit.s <= event.to) {
          jump += hit.cost;
        }
      }
    }
  }
  return { base, loss, jump, memory, total: base + loss + jump };
}

/** A hit measured across a clock jump is merged within this long after it. */
const JUMP_MERGE_MS = 15_000;

/**
 * The clock jump of the hit's instance that the hit's state straddles, if
 * any: a memory hit from the algorithm's span before a jump (its age will be
 * measured across it), or, after a forward jump, from twice that span after
 * it (it may rest on state that only looks old; a fixed window it opened may
 * overlap the next one).
 * @param {Rule} rule
 * @param {Hit} hit
 * @param {Context} context
 * @returns {Jump | undefined}
 */
function jumpedOver(rule, hit, context) {
  if (hit.src !== 'memory' || !hit.ok) return undefined;
  const span = spanOf(rule) + context.timeoutMs;
  return context.jumps.find(
    j =>
      j.inst === hit.inst &&
      ((hit.s <= j.at && hit.r >= j.at - span) ||
        (j.deltaMs > 0 && hit.r >= j.at && hit.s <= j.at + 2 * span)),
  );
}

/**
 * Whether a memory admission's state straddles a reset that failed and that
 * Redis did not run (see checkKey): that instance's memory and outage hits
 * were dropped, so its admissions from the span before it (never merged) and
 * after it (a fresh local quota) may come on top of Redis's count.
 * @param {Rule} rule
 * @param {Hit} hit
 * @param {Context} context
 */
function wiped(rule, hit, context) {
  if (hit.src !== 'memory' || !hit.ok) return false;
  const span = spanOf(rule) + context.timeoutMs;
  return (context.wipes ?? []).some(
    w => w.inst === hit.inst && hit.r >= w.s - span && hit.s <= w.r + span,
  );
}

/**
 * Whether a memory admission came soon after a forward jump of its instance's
 * clock (within twice the span, like jumpedOver): state from before the jump
 * looked older than it was, so memory may have opened a window early.
 * @param {Rule} rule
 * @param {Hit} hit
 * @param {Context} context
 */
function afterForwardJump(rule, hit, context) {
  const span = spanOf(rule) + context.timeoutMs;
  return context.jumps.some(
    j => j.inst === hit.inst && j.deltaMs > 0 && hit.r >= j.at && hit.s <= j.at + 2 * span,
  );
}

/**
 * How long after its caller gave up a command can still be applied in Redis
 * (a busy machine may not schedule redis-server for a while).
 */
const PHANTOM_SLACK_MS = 1000;

/**
 * Decisions the fallback made that Redis may have applied anyway ("a decision
 * that timed out may still have been applied in Redis", SPEC), each with the
 * latest moment that can have happened: its answer, or the end of a freeze it
 * overlaps (a SIGSTOPped Redis runs the commands queued in its socket on
 * SIGCONT), plus PHANTOM_SLACK_MS. Over-counting is allowed; these only ever
 * move a fixed window's start earlier.
 * @param {Hit[]} all
 * @param {Context} context
 */
function phantomsOf(rule, all, context) {
  return all
    .filter(d => d.src === 'memory' || d.src === 'error')
    .map(d => {
      let until = d.r;
      for (const freeze of context.freezes ?? []) {
        if (freeze.from <= d.r && freeze.to >= d.s) until = Math.max(until, freeze.to);
      }
      // A memory hit whose age is measured across a clock jump lands in Redis
      // wherever that age says, up to its merge.
      const jump = jumpedOver(rule, d, context);
      if (jump) until = Math.max(until, jump.at + JUMP_MERGE_MS);
      return { s: d.s, until: until + PHANTOM_SLACK_MS };
    });
}

/**
 * @param {KeyResult} result
 * @param {Window} window
 */
function record(result, window) {
  result.windows++;
  if (!result.worst || window.count - window.bound > result.worst.count - result.worst.bound) {
    result.worst = window;
  }
  if (window.count > window.bound) result.violations.push(window);
}

/**
 * Fixed window, one epoch: walks the windows in order, each boundary a band.
 * @param {Rule} rule
 * @param {Hit[]} admits sorted by s
 * @param {Hit[]} all
 * @param {Context} context
 * @param {KeyResult} result
 */
function fixedWindows(rule, admits, all, context, result) {
  const { limit: L, windowMs: W } = rule;
  const phantoms = phantomsOf(rule, all, context);
  // Memory admissions that opened a window in their instance's memory store
  // (it reported the window ending W after them): with 2+ instances any of
  // them (a stale mirror), with one only those soon after a forward jump of
  // its clock (the window memory held looked ended early).
  const memoryOpeners = admits.filter(
    hit =>
      hit.src === 'memory' &&
      hit.hint !== undefined &&
      hit.hint >= hit.s + W - 2 &&
      hit.hint <= hit.r + W + 2 &&
      (context.instances > 1 || afterForwardJump(rule, hit, context)),
  );
  // Redis admissions that opened a fresh window in Redis (it reported the
  // window ending W after them) soon after a data loss, by an instance with
  // nothing to restore: it admitted nothing for the key, before this hit, in
  // a window live at the loss (an admission whose reported window had ended
  // before the loss is a view of an older window: it never saw the live one),
  // or a forward jump of its clock since aged its view. With 2+
  // instances max() cannot restore what that instance never saw: Redis starts
  // over there, before the window the loss cut short ended (the window holding
  // the loss is still judged on everything in it, with the loss allowance).
  const span = W + context.timeoutMs;
  for (const hit of admits) {
    if (
      context.instances > 1 &&
      hit.src === 'redis' &&
      hit.hint !== undefined &&
      hit.hint >= hit.s + W - 2 &&
      hit.hint <= hit.r + W + 2 &&
      context.losses.some(loss => {
        if (loss.from > hit.r || loss.to < hit.s - span) return false;
        // Its views from the span before the loss up to this hit, of a window
        // that may still have been live at the loss (no hint: may be).
        const viewed = all.filter(
          d =>
            d.inst === hit.inst &&
            d.ok &&
            d.r < hit.s &&
            d.s >= loss.from - span &&
            (d.hint === undefined || d.hint >= loss.from - (d.r - d.s) - 2),
        );
        if (viewed.length === 0) return true;
        const last = Math.max(...viewed.map(d => d.s));
        return context.jumps.some(
          j => j.inst === hit.inst && j.deltaMs > 0 && j.at >= last && j.at <= hit.r,
        );
      })
    ) {
      memoryOpeners.push(hit);
    }
  }
  memoryOpeners.sort((a, b) => a.s - b.s);
  let previousOpen = -Infinity;
  // Where a hit sits in Redis's window may be later than its decision: a
  // memory hit merged with its age lands at (Redis's time on arrival - age),
  // up to one Redis call later than it happened. One that overlaps a freeze
  // may also have been applied when Redis thawed (its call timed out in the
  // socket) and opened Redis's window there; merged, memory's earlier window
  // gives way to Redis's live one. So it may sit as late as that.
  const late = (/** @type {Hit} */ hit) => {
    if (hit.src !== 'memory') return hit.r;
    let until = hit.r + context.timeoutMs;
    for (const freeze of context.freezes ?? []) {
      if (freeze.from <= hit.r && freeze.to >= hit.s) {
        until = Math.max(until, freeze.to + PHANTOM_SLACK_MS);
      }
    }
    return until;
  };
  // End of the previous window: some E in [endLo, endHi].
  let endLo = -Infinity;
  let endHi = -Infinity;
  for (;;) {
    // Admissions that may open the next window: those that may come at or after E.
    let openLo = Infinity;
    let openHi = Infinity;
    for (const hit of admits) {
      if (late(hit) >= endLo) openLo = Math.min(openLo, hit.s);
      if (hit.s >= endHi) openHi = Math.min(openHi, late(hit));
    }
    // A fallback may have been applied in Redis after all, and open a window
    // there; it can only lower the window's start, never bound it from above.
    for (const phantom of phantoms) {
      if (phantom.until >= endLo) openLo = Math.min(openLo, phantom.s);
    }
    if (openHi === Infinity) return;
    openLo = Math.max(openLo, endLo);
    // Another instance's memory may have opened its own window inside this
    // one (its mirror was stale); merged, that window can replace the one
    // Redis forgot when it expired, starting before it ended. No instance
    // could know better, so such a start counts as possible too. Likewise
    // after a forward jump: the instance's memory saw its window (or its
    // mirror of Redis's) as ended and opened one early; merged with its age,
    // it is the window Redis keeps from then on (a restored key starts at it;
    // a live one lives until the later of the two ends).
    for (const opener of memoryOpeners) {
      if (opener.s > previousOpen && opener.s < openLo) openLo = opener.s;
    }
    previousOpen = openLo;
    let lo = openLo + W;
    let hi = openHi + W;
    // Pin the band with what Redis reported for admissions certainly inside.
    for (const hit of admits) {
      if (hit.src !== 'redis' || hit.hint === undefined) continue;
      if (hit.s < endHi || hit.r >= lo) continue;
      const jitter = hit.r - hit.s + 2;
      const pinLo = Math.max(lo, hit.hint - jitter);
      const pinHi = Math.min(hi, hit.hint + jitter);
      if (pinLo <= pinHi) {
        lo = pinLo;
        hi = pinHi;
      }
    }
    // Certainly inside: after the previous window certainly ended, before
    // this one can end. (A memory hit inside the previous window may have been
    // merged into either window: in neither count, in both allowances.)
    const members = admits.filter(hit => hit.s >= endHi && late(hit) < lo);
    const possible = admits.filter(hit => late(hit) >= endLo && hit.s < hi);
    const extra = allowance(rule, possible, all, context, openLo, hi);
    record(result, {
      count: members.reduce((n, hit) => n + hit.cost, 0),
      bound: L + extra.total,
      from: openLo,
      to: hi,
      kind: 'fixed window',
      redis: members.filter(hit => hit.src === 'redis').length,
      memory: extra.memory,
      allowance: { base: extra.base, loss: extra.loss, jump: extra.jump },
    });
    endLo = lo;
    endHi = hi;
  }
}

/**
 * Sliding window and token bucket, one epoch: every admission must be one the
 * reference model admits, fed every admission certainly decided before it
 * (each at its earliest possible time, which can only lower the model's
 * count), at the latest moment it may have been decided (or the last moment
 * of its window, for one that may straddle two windows).
 * @param {Rule} rule
 * @param {Hit[]} admits sorted by s
 * @param {Hit[]} all
 * @param {Context} context
 * @param {KeyResult} result
 */
function modelled(rule, admits, all, context, result) {
  const { algorithm, limit: L, windowMs: W } = rule;
  // Older admissions cannot matter: a sliding window looks one window back, a
  // bucket refills completely within W (3 W leaves room for the allowance).
  const horizon = algorithm === 'sliding-window' ? 2 * W : 3 * W;
  let first = 0;
  for (const hit of admits) {
    const since =
      algorithm === 'sliding-window' ? (Math.floor(hit.s / W) - 1) * W : hit.s - horizon;
    while (first < admits.length && /** @type {Hit} */ (admits[first]).s < since) first++;
    /** @type {Hit[]} */
    const before = [];
    /** @type {Hit[]} */
    const possible = [];
    for (let j = first; j < admits.length; j++) {
      const other = /** @type {Hit} */ (admits[j]);
      if (other.s > hit.r) break;
      if (other !== hit && other.r < hit.s) before.push(other);
      if (other.r >= since) possible.push(other);
    }
    const moments = [hit.r];
    if (algorithm === 'sliding-window' && Math.floor(hit.s / W) !== Math.floor(hit.r / W)) {
      moments.push(Math.floor(hit.r / W) * W - 1);
    }
    const extra = allowance(rule, possible, all, context, since, hit.r);
    /** The fewest units the model counts at this admission, this one included. */
    const units = () => {
      for (let count = hit.cost; count < 100 * L; count++) {
        const slack = count - L;
        for (const at of moments) {
          const model = referenceModel(algorithm, L, W, slack);
          for (const b of before) model.admit(b.cost, b.s);
          if (model.allows(hit.cost, at)) return count;
        }
      }
      return 100 * L;
    };
    const count = units();
    record(result, {
      count,
      bound: L + extra.total,
      from: since,
      to: hit.r,
      kind: algorithm === 'sliding-window' ? 'weighted window' : 'bucket',
      redis: before.filter(b => b.src === 'redis').length + (hit.src === 'redis' ? 1 : 0),
      memory: extra.memory,
      allowance: { base: extra.base, loss: extra.loss, jump: extra.jump },
    });
  }
}

/**
 * Checks one key of one rule.
 * @param {Rule} rule
 * @param {Hit[]} decisions every decision of the key, any order
 * @param {Context} context
 * @returns {KeyResult}
 */
function checkKey(rule, decisions, context) {
  const sorted = [...decisions].sort((a, b) => a.s - b.s);
  const resets = context.resets ?? [];
  // A reset that failed (rejected: Redis unreachable or timed out) reset the
  // calling instance's memory and dropped its outage hits, and Redis may or
  // may not have run it (a timed-out call can still be applied, up to the end
  // of a freeze it overlaps). Each is checked both ways, consistently for the
  // key: applied (a reset, its call lasting until it can have been applied),
  // or not (Redis's windows go on; that instance's memory admissions around
  // it are allowed on top, like a clock jump's). The key passes if some
  // choice explains it; only the first few failed resets of a key get a choice.
  const failed = resets.filter(reset => reset.ok === false).slice(0, MAX_UNCERTAIN_RESETS);
  const certain = resets.filter(reset => !failed.includes(reset));
  /** @type {KeyResult | undefined} */
  let best;
  for (let mask = 0; mask < 2 ** failed.length; mask++) {
    const applied = [...certain];
    const wipes = [...(context.wipes ?? [])];
    failed.forEach((reset, i) => {
      if (mask & (2 ** i)) applied.push({ ...reset, r: latestApplied(reset, context) });
      else wipes.push(reset);
    });
    const result = checkEpochs(rule, sorted, { ...context, resets: applied, wipes });
    if (!best || result.violations.length < best.violations.length) best = result;
    if (best.violations.length === 0) break;
  }
  return /** @type {KeyResult} */ (best);
}

/** Failed resets of one key checked both ways (2^n runs of the key). */
const MAX_UNCERTAIN_RESETS = 4;

/**
 * The latest moment a failed reset can have been applied in Redis: when it
 * gave up, or, if it overlaps a freeze, when Redis thawed (plus slack).
 * @param {Reset} reset
 * @param {Context} context
 */
function latestApplied(reset, context) {
  let until = reset.r;
  for (const freeze of context.freezes ?? []) {
    if (freeze.from <= reset.r && freeze.to >= reset.s) {
      until = Math.max(until, freeze.to + PHANTOM_SLACK_MS);
    }
  }
  return until;
}

/**
 * @param {Rule} rule
 * @param {Hit[]} sorted every decision of the key, sorted by s
 * @param {Context} context
 * @returns {KeyResult}
 */
function checkEpochs(rule, sorted, context) {
  /** @type {KeyResult} */
  const result = { windows: 0, worst: undefined, violations: [] };
  for (const epoch of epochs(sorted, context.resets ?? [])) {
    const admits = epoch.filter(d => d.ok && SOURCE_OK.has(d.src));
    if (rule.algorithm === 'fixed-window') fixedWindows(rule, admits, epoch, context, result);
    else modelled(rule, admits, epoch, context, result);
  }
  return result;
}

/**
 * The decisions that broke the run's other rules: an exception or a bypass
 * (every chaos rule is fail-closed), or an answer slower than timeout + margin.
 * @param {Hit[]} decisions
 * @param {number} timeoutMs
 * @param {number} marginMs
 */
function badDecisions(decisions, timeoutMs, marginMs) {
  const errors = decisions.filter(d => d.src === 'error' || d.src === 'bypass');
  const slow = decisions.filter(d => d.r - d.s > timeoutMs + marginMs);
  return { errors, slow };
}

module.exports = { checkKey, badDecisions, epochs };
