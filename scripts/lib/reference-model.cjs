// @ts-check
'use strict';
// Reference models of the three algorithms, written from their definitions in
// SPEC.md (independently of lib/), shared by the conformance suite
// (__tests__/helpers/conformance.ts) and the chaos checker (chaos/check.cjs).
// CommonJS so both jest (CJS) and the .mjs scripts can load it as is.
// Types: reference-model.d.cts.

/**
 * "Would `cost` units be admitted at `now`?" (against the rule's limit, or a
 * per-call `limit` for fixed and sliding windows) without changing anything;
 * `admit` records an admission, `refund` gives units back in the live window
 * or bucket, never below zero. `slack` raises the limit the model admits up
 * to, never the token bucket's refill rate: the chaos checker's allowance for
 * hits another instance admitted and Redis has not seen yet.
 * @param {'fixed-window' | 'sliding-window' | 'token-bucket'} algorithm
 * @param {number} limit
 * @param {number} windowMs
 * @param {number} [slack] extra units allowed on top of `limit`
 */
function referenceModel(algorithm, limit, windowMs, slack = 0) {
  const ceiling = limit + slack;
  if (algorithm === 'fixed-window') {
    // The window opens at the first hit and lasts windowMs (INCR + PEXPIRE).
    /** @type {{ start: number, count: number } | undefined} */
    let open;
    // A window lives its whole length, even when refunds bring it to 0.
    /** @param {number} now */
    const live = now => (open && now < open.start + windowMs ? open : undefined);
    return {
      /** @param {number} cost @param {number} now @param {number} [max] */
      allows: (cost, now, max = limit) => (live(now)?.count ?? 0) + cost <= max + slack,
      /** @param {number} cost @param {number} now */
      admit(cost, now) {
        const current = live(now);
        if (current) current.count += cost;
        else open = { start: now, count: cost };
      },
      /** @param {number} units @param {number} now */
      refund(units, now) {
        const current = live(now);
        if (current) current.count = Math.max(0, current.count - units);
      },
    };
  }
  if (algorithm === 'sliding-window') {
    // Aligned windows; the previous window's count weighted by its overlap
    // with the sliding window [now - windowMs, now], rounded up.
    /** @type {Map<number, number>} */
    const counts = new Map();
    /** @param {number} now */
    const used = now => {
      const index = Math.floor(now / windowMs);
      const elapsed = now - index * windowMs;
      const previous = counts.get(index - 1) ?? 0;
      return (counts.get(index) ?? 0) + Math.ceil((previous * (windowMs - elapsed)) / windowMs);
    };
    return {
      /** @param {number} cost @param {number} now @param {number} [max] */
      allows: (cost, now, max = limit) => used(now) + cost <= max + slack,
      /** @param {number} cost @param {number} now */
      admit(cost, now) {
        const index = Math.floor(now / windowMs);
        counts.set(index, (counts.get(index) ?? 0) + cost);
      },
      // The current window only: the previous one has ended.
      /** @param {number} units @param {number} now */
      refund(units, now) {
        const index = Math.floor(now / windowMs);
        counts.set(index, Math.max(0, (counts.get(index) ?? 0) - units));
      },
    };
  }
  // GCRA in exact integer units of 1/limit ms: each unit moves the theoretical
  // arrival time (TAT) by windowMs/limit ms = windowMs units; a request is
  // admitted while the TAT it leads to is at most windowMs ahead of now (plus
  // `slack` units of burst).
  let tat = 0;
  /** @param {number} cost @param {number} now */
  const after = (cost, now) => Math.max(tat, now * limit) + cost * windowMs;
  return {
    /** @param {number} cost @param {number} now */
    allows: (cost, now) => after(cost, now) - now * limit <= windowMs * ceiling,
    /** @param {number} cost @param {number} now */
    admit(cost, now) {
      tat = after(cost, now);
    },
    /** @param {number} units @param {number} now */
    refund(units, now) {
      tat = Math.max(now * limit, tat - units * windowMs);
    },
  };
}

/**
 * The largest cost (0..limit) the model would admit at `now`.
 * @param {{ allows(cost: number, now: number): boolean }} model
 * @param {number} limit
 * @param {number} now
 */
function admissible(model, limit, now) {
  for (let n = limit; n >= 1; n--) if (model.allows(n, now)) return n;
  return 0;
}

/**
 * The algorithm's bound on admissions, checked over a whole history. Returns
 * a description of the first violation, or undefined.
 * @param {'fixed-window' | 'sliding-window' | 'token-bucket'} algorithm
 * @param {number} limit
 * @param {number} windowMs
 * @param {ReadonlyArray<{ at: number, cost: number }>} admitted sorted by `at`
 * @returns {string | undefined}
 */
function boundViolation(algorithm, limit, windowMs, admitted) {
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
    /** @type {Map<number, number>} */
    const perWindow = new Map();
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
    const first = /** @type {{ at: number, cost: number }} */ (admitted[i]);
    for (let j = i; j < admitted.length; j++) {
      const hit = /** @type {{ at: number, cost: number }} */ (admitted[j]);
      sum += hit.cost;
      const d = hit.at - first.at;
      if (sum * windowMs > (windowMs + d) * limit) {
        return `${sum} admitted in [${first.at}, +${d}], bound ${limit + (d * limit) / windowMs}`;
      }
    }
  }
  return undefined;
}

module.exports = { referenceModel, admissible, boundViolation };
