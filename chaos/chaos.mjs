// @ts-check
// npm run chaos: a model-based chaos test of the built package (issue 10).
// K keys per rule (fixed window, sliding window, token bucket) are decided by
// 1 or 2 app instances (chaos/instance.mjs) against one redis-server or a
// 3-master Cluster, while a seeded schedule (chaos/schedule.mjs) kills and
// restarts Redis empty, freezes it (SIGSTOP/SIGCONT), flushes its scripts or
// its data, squeezes it into evicting keys, jumps an instance's clock and
// resets keys. Afterwards chaos/check.cjs checks every key and window against
// the tight bound, every decision for errors and latency, and every reset.
// Prints the worst window against its bound with the seed; exits 1 on any
// violation.
//
//   node chaos/chaos.mjs --short                       CI: fixed seeds, about 60 s
//   node chaos/chaos.mjs --seed N --minutes M          one long run
//        [--instances 1|2] [--mode single|cluster] [--keys K] [--rate R]
//        [--faults kill,stop,...] [--dump run.json]
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { Redis } from 'ioredis';
import {
  freePort,
  installHooks,
  killAll,
  sleep,
  startCluster,
  startRedis,
} from '../scripts/lib/processes.mjs';
import { checkKey, badDecisions } from './check.cjs';
import { createInstance, RULES, TIMEOUT_MS, BREAKER, MAX_KEYS } from './instance.mjs';
import { FAULT_WEIGHTS, planFaults, prng } from './schedule.mjs';

/** An answer may take the Redis budget plus this (issue 10: timeout + 50 ms). */
const LATENCY_MARGIN_MS = 50;
/** A gap this long between 10 ms ticks is a stall of the event loop. */
const STALL_MS = 50;

/** CI's runs: fixed seeds, about 60 s of load in all (plus start-up). */
// Seeds picked so that together they draw every fault kind: 11 flushdb,
// eviction, freeze, forward jumps (one during a kill) and SCRIPT FLUSH; 6
// kill, reset, flushdb and a backward jump, with two instances; 8 eviction,
// kills and flushdb on one Cluster node. One instance where the bound is
// exactly `limit`.
const SHORT = [
  { seed: 11, instances: 1, mode: 'single', seconds: 26 },
  { seed: 6, instances: 2, mode: 'single', seconds: 22 },
  { seed: 8, instances: 1, mode: 'cluster', seconds: 20 },
];

// ---------------------------------------------------------------- options

/** @param {string[]} argv */
function parseArgs(argv) {
  const options = {
    short: false,
    seed: 1,
    minutes: 5,
    instances: 2,
    mode: 'single',
    keys: 120,
    rate: 800,
    faults: /** @type {string[] | undefined} */ (undefined),
    dump: '',
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = /** @type {[string, string | undefined]} */ (argv[i]?.split('=') ?? []);
    const value = () => inline ?? argv[++i] ?? '';
    if (flag === '--short') options.short = true;
    else if (flag === '--seed') options.seed = Number(value());
    else if (flag === '--minutes') options.minutes = Number(value());
    else if (flag === '--instances') options.instances = Number(value());
    else if (flag === '--mode') options.mode = value();
    else if (flag === '--keys') options.keys = Number(value());
    else if (flag === '--rate') options.rate = Number(value());
    else if (flag === '--faults') {
      const list = value();
      options.faults = list === 'none' ? [] : list.split(',');
    } else if (flag === '--dump') options.dump = value();
    else throw new Error(`unknown flag ${flag}`);
  }
  if (!Number.isSafeInteger(options.seed)) throw new Error('--seed: an integer');
  if (!(options.minutes > 0 && options.minutes <= 240)) throw new Error('--minutes 0..240');
  if (![1, 2].includes(options.instances)) throw new Error('--instances 1|2');
  if (!['single', 'cluster'].includes(options.mode)) throw new Error('--mode single|cluster');
  if (!(options.keys >= 1 && options.keys <= 10_000)) throw new Error('--keys 1..10000');
  if (!(options.rate >= 10 && options.rate <= 20_000)) throw new Error('--rate 10..20000');
  for (const kind of options.faults ?? []) {
    // --faults none: load only (a run that must pass on any build).
    if (!(kind in FAULT_WEIGHTS)) {
      throw new Error(`--faults: one of ${Object.keys(FAULT_WEIGHTS).join(',')}`);
    }
  }
  return options;
}

// ------------------------------------------------------------------ redis

/**
 * The Redis side of a run: one server or a cluster, with an admin
 * connection per node for FLUSHDB, SCRIPT FLUSH and CONFIG SET.
 * @param {'single' | 'cluster'} mode
 */
async function startBackend(mode) {
  const nodes =
    mode === 'cluster'
      ? (await startCluster({ masters: 3, tempPrefix: 'rrl-chaos-cluster-' })).nodes
      : [await startRedis(await freePort(), { tempPrefix: 'rrl-chaos-redis-' })];
  const admins = nodes.map(node => {
    const admin = new Redis(node.port, '127.0.0.1', {
      maxRetriesPerRequest: 1,
      commandTimeout: 1000,
      retryStrategy: () => 100,
    });
    admin.on('error', () => undefined);
    return admin;
  });
  return { nodes, admins, ports: nodes.map(node => node.port) };
}

/** @param {string} info @param {string} field */
const infoField = (info, field) => Number(new RegExp(`^${field}:(\\d+)`, 'm').exec(info)?.[1] ?? 0);

// -------------------------------------------------------------- one run

/**
 * @typedef {{ rule: number, key: number, s: number, r: number, lat: number, inst: number,
 *   cost: number, ok: boolean, src: 'redis' | 'memory' | 'bypass' | 'error', hint?: number,
 *   probe?: boolean }} Decision
 */

/**
 * @param {{ seed: number, instances: number, mode: string, seconds: number, keys: number,
 *   rate: number, faults?: string[] }} scenario
 */
async function runScenario(scenario) {
  const { seed, instances: instanceCount, seconds, keys: keyCount, rate } = scenario;
  const mode = /** @type {'single' | 'cluster'} */ (scenario.mode);
  const random = prng(seed);
  const backend = await startBackend(mode);
  const instances = Array.from({ length: instanceCount }, (_, index) =>
    createInstance({ index, ports: backend.ports, cluster: mode === 'cluster' }),
  );
  await Promise.all(instances.map(instance => instance.warmUp()));
  const durationMs = seconds * 1000;
  const faults = planFaults(random, {
    durationMs,
    instances: instanceCount,
    nodes: backend.nodes.length,
    kinds: /** @type {any} */ (scenario.faults),
  });

  /** @type {Decision[]} */
  const decisions = [];
  /** @type {import('./check.cjs').Jump[]} */
  const jumps = [];
  /** @type {import('./check.cjs').Loss[]} */
  const losses = [];
  /** @type {import('./check.cjs').Freeze[]} */
  const freezes = [];
  /** @type {Array<{ rule: number, key: number, inst: number, s: number, r: number, ok: boolean }>} */
  const resets = [];
  /** @type {Array<{ at: number, kind: string, detail: string }>} */
  const faultLog = [];
  let gets = 0;
  let getErrors = 0;
  let evicted = 0;
  // Stalls of this process's event loop (GC, a loaded machine): no timer, the
  // package's timeout included, can fire during one.
  /** @type {Array<{ from: number, to: number }>} */
  const stalls = [];
  let lastTick = Date.now();
  const ticker = setInterval(() => {
    const now = Date.now();
    if (now - lastTick >= STALL_MS) stalls.push({ from: lastTick, to: now });
    lastTick = now;
  }, 10);

  /** Hot keys first: key i is drawn with probability ~ 1/sqrt(i). */
  const drawKey = () => Math.floor(keyCount * random() ** 2);

  /**
   * One consume(), recorded on the reference clock.
   * @param {number} inst @param {number} rule @param {number} key @param {number} cost
   */
  const decide = async (inst, rule, key, cost, probe = false) => {
    const instance = /** @type {ReturnType<typeof createInstance>} */ (instances[inst]);
    const limiter = /** @type {import('resilient-rate-limit').RateLimiter} */ (
      instance.limiters[rule]
    );
    const offsetBefore = instance.offsetMs;
    const s = Date.now();
    const started = performance.now();
    /** @type {Decision} */
    let decision;
    try {
      const result = await limiter.consume(`k${key}`, cost);
      const r = Date.now();
      decision = {
        rule,
        key,
        s,
        r,
        lat: performance.now() - started,
        inst,
        cost,
        ok: result.allowed,
        src: result.source,
      };
      // resetAt on the reference clock, if the clock did not jump meanwhile.
      if (result.allowed && instance.offsetMs === offsetBefore) {
        decision.hint = result.resetAt - offsetBefore;
      }
    } catch {
      decision = {
        rule,
        key,
        s,
        r: Date.now(),
        lat: performance.now() - started,
        inst,
        cost,
        ok: false,
        src: 'error',
      };
    }
    if (probe) decision.probe = true;
    decisions.push(decision);
    return decision;
  };

  // Load: `workers` loops, each pacing itself so all together send `rate`/s.
  const workers = 16;
  const t0 = Date.now();
  const stopAt = t0 + durationMs;
  const worker = async () => {
    const pace = (workers * 1000) / rate;
    while (Date.now() < stopAt) {
      const began = Date.now();
      const inst = Math.floor(random() * instanceCount);
      const rule = Math.floor(random() * RULES.length);
      const key = drawKey();
      if (random() < 0.02) {
        // get() never consumes; it must answer without throwing.
        try {
          await /** @type {any} */ (instances[inst]).limiters[rule].get(`k${key}`);
          gets++;
        } catch {
          getErrors++;
        }
      } else {
        await decide(inst, rule, key, random() < 0.1 ? 2 : 1);
      }
      const wait = pace - (Date.now() - began);
      if (wait > 0) await sleep(wait);
    }
  };

  /** Resets `count` hot keys on `inst`, then probes each at once. */
  const resetKeys = async (/** @type {number} */ inst, /** @type {number} */ count) => {
    const instance = /** @type {ReturnType<typeof createInstance>} */ (instances[inst]);
    await Promise.all(
      Array.from({ length: count }, async () => {
        const rule = Math.floor(random() * RULES.length);
        const key = Math.floor(random() * Math.min(keyCount, 10));
        const s = Date.now();
        let ok = true;
        try {
          await /** @type {any} */ (instance.limiters[rule]).reset(`k${key}`);
        } catch {
          ok = false; // Redis unreachable: memory reset, Redis not (SPEC)
        }
        resets.push({ rule, key, inst, s, r: Date.now(), ok });
        if (ok) await decide(inst, rule, key, 1, true);
      }),
    );
  };

  /** Waits (up to 3 s) for `inst`'s breaker to close after an outage. */
  const untilRecovered = async (/** @type {number} */ inst, /** @type {number} */ closes) => {
    const deadline = Date.now() + 3000;
    const instance = /** @type {ReturnType<typeof createInstance>} */ (instances[inst]);
    while (instance.events.breakerClose <= closes && Date.now() < deadline) await sleep(2);
  };

  const runFault = async (/** @type {import('./schedule.mjs').Fault} */ fault) => {
    const node = /** @type {any} */ (backend.nodes[fault.node]);
    const admin = /** @type {Redis} */ (backend.admins[fault.node]);
    const at = Date.now();
    const log = (/** @type {string} */ detail) =>
      faultLog.push({ at: at - t0, kind: fault.kind, detail });
    const closes = instances.map(instance => instance.events.breakerClose);
    // After an outage, half the time reset keys the moment a breaker closes:
    // that is when write-back is in flight.
    const resetOnRecovery = random() < 0.5;
    /** Sleeps through an outage, jumping a clock on the way if the plan says so. */
    const outage = async () => {
      if (fault.jumpAfterMs < 0) return sleep(fault.lastsMs);
      await sleep(fault.jumpAfterMs);
      jump(fault.inst, fault.deltaMs);
      await sleep(fault.lastsMs - fault.jumpAfterMs);
    };
    const jump = (/** @type {number} */ inst, /** @type {number} */ deltaMs) => {
      /** @type {ReturnType<typeof createInstance>} */ (instances[inst]).jump(deltaMs);
      jumps.push({ inst, at: Date.now(), deltaMs });
      faultLog.push({
        at: Date.now() - t0,
        kind: 'jump',
        detail: `instance ${inst} clock ${deltaMs > 0 ? '+' : ''}${deltaMs / 1000} s`,
      });
    };
    if (fault.kind === 'kill') {
      await node.kill();
      losses.push({ from: at, to: at, kind: 'kill' });
      await outage();
      await node.restart();
      log(`node ${fault.node} down ${fault.lastsMs} ms, restarted empty`);
    } else if (fault.kind === 'stop') {
      node.stop();
      await outage();
      node.cont();
      freezes.push({ from: at, to: Date.now() });
      log(`node ${fault.node} frozen ${fault.lastsMs} ms`);
    } else if (fault.kind === 'scriptFlush') {
      await admin.script('FLUSH').catch(() => undefined);
      log(`node ${fault.node}`);
    } else if (fault.kind === 'flushdb') {
      await admin.flushdb().catch(() => undefined);
      losses.push({ from: at, to: Date.now(), kind: 'flushdb' });
      log(`node ${fault.node}`);
    } else if (fault.kind === 'evict') {
      const before = String(await admin.info().catch(() => ''));
      const used = infoField(before, 'used_memory');
      const dataset = infoField(before, 'used_memory_dataset');
      const squeeze = Math.max(1, used - Math.max(32 * 1024, Math.floor(dataset * 0.6)));
      await admin.config('SET', 'maxmemory-policy', 'allkeys-lru').catch(() => undefined);
      await admin.config('SET', 'maxmemory', String(squeeze)).catch(() => undefined);
      await sleep(fault.lastsMs);
      await admin.config('SET', 'maxmemory', '0').catch(() => undefined);
      const after = String(await admin.info().catch(() => ''));
      const n = infoField(after, 'evicted_keys') - infoField(before, 'evicted_keys');
      evicted += Math.max(0, n);
      losses.push({ from: at, to: Date.now(), kind: 'evict' });
      log(`node ${fault.node}: maxmemory ${squeeze} for ${fault.lastsMs} ms, ${n} keys evicted`);
    } else if (fault.kind === 'jump') {
      jump(fault.inst, fault.deltaMs);
    } else if (fault.kind === 'reset') {
      await resetKeys(fault.inst, fault.keys);
      log(`instance ${fault.inst}: ${fault.keys} keys`);
    }
    if (resetOnRecovery && (fault.kind === 'kill' || fault.kind === 'stop')) {
      await untilRecovered(fault.inst, /** @type {number} */ (closes[fault.inst]));
      await resetKeys(fault.inst, fault.keys);
    }
  };

  const faultLoop = (async () => {
    for (const fault of faults) {
      const wait = t0 + fault.at - Date.now();
      if (wait > 0) await sleep(wait);
      if (Date.now() >= stopAt) return;
      await runFault(fault);
    }
  })();
  await Promise.all(Array.from({ length: workers }, worker));
  await faultLoop;
  clearInterval(ticker);
  for (const node of backend.nodes) node.cont();
  await Promise.all(instances.map(instance => instance.close()));
  for (const admin of backend.admins) admin.disconnect();
  for (const node of backend.nodes) await node.kill();

  return {
    scenario,
    t0,
    durationMs,
    decisions,
    jumps,
    losses,
    freezes,
    resets,
    faultLog,
    gets,
    getErrors,
    evicted,
    stalls,
    instances: instances.map(instance => ({
      offsetMs: instance.offsetMs,
      logs: instance.logs,
      events: instance.events,
    })),
  };
}

// --------------------------------------------------------------- analysis

/**
 * What a window over its bound is made of, for the log: the key's decisions
 * from 3 s before the window to 1 s after it (sent → answered, instance,
 * source, outcome, cost) and the faults around it, so a failure in CI can be
 * traced from its output alone.
 * @param {Decision[]} list
 * @param {{ from: number, to: number }} window
 * @param {Awaited<ReturnType<typeof runScenario>>} run
 */
function traceLines(list, window, run) {
  const rel = (/** @type {number} */ at) => ((at - run.t0) / 1000).toFixed(3);
  const from = window.from - 3000;
  const to = window.to + 1000;
  const out = list
    .filter(d => d.s >= from && d.s <= to)
    .sort((a, b) => a.s - b.s)
    .slice(0, 80)
    .map(
      d =>
        `        ${rel(d.s)} -> ${rel(d.r)} #${d.inst} ${d.src} ${d.ok ? 'admitted' : 'denied'} cost ${d.cost}`,
    );
  for (const l of run.losses) {
    if (l.to >= from && l.from <= to)
      out.push(`        loss ${l.kind} ${rel(l.from)}..${rel(l.to)}`);
  }
  for (const f of run.freezes) {
    if (f.to >= from && f.from <= to) out.push(`        freeze ${rel(f.from)}..${rel(f.to)}`);
  }
  for (const j of run.jumps) {
    if (j.at >= from && j.at <= to)
      out.push(`        jump #${j.inst} ${j.deltaMs} ms at ${rel(j.at)}`);
  }
  return out;
}

/** @param {number} n */
const fmt = n => n.toLocaleString('en-US');

/**
 * Checks one run: every key of every rule, every decision, every reset.
 * @param {Awaited<ReturnType<typeof runScenario>>} run
 */
function analyse(run) {
  const { scenario, decisions, t0 } = run;
  const context = {
    instances: scenario.instances,
    timeoutMs: TIMEOUT_MS,
    jumps: run.jumps,
    losses: run.losses,
    freezes: run.freezes,
  };
  /** @type {Map<string, Decision[]>} */
  const byKey = new Map();
  for (const d of decisions) {
    const id = `${d.rule}|${d.key}`;
    let list = byKey.get(id);
    if (!list) byKey.set(id, (list = []));
    list.push(d);
  }
  const rules = RULES.map(rule => ({
    rule,
    keys: 0,
    windows: 0,
    violations: 0,
    violatingKeys: 0,
    /** @type {(import('./check.cjs').Window & { key: number }) | undefined} */
    worst: undefined,
    /** @type {Array<import('./check.cjs').Window & { key: number }>} */
    examples: [],
  }));
  for (const [id, list] of byKey) {
    const [ruleText, keyText] = id.split('|');
    const index = Number(ruleText);
    const key = Number(keyText);
    const summary = /** @type {(typeof rules)[number]} */ (rules[index]);
    const resets = run.resets.filter(x => x.rule === index && x.key === key);
    const result = checkKey(summary.rule, list, { ...context, resets });
    summary.keys++;
    summary.windows += result.windows;
    summary.violations += result.violations.length;
    if (result.violations.length > 0) summary.violatingKeys++;
    const worst = result.worst;
    if (
      worst &&
      (!summary.worst || worst.count - worst.bound > summary.worst.count - summary.worst.bound)
    ) {
      summary.worst = { ...worst, key };
    }
    for (const v of result.violations.slice(0, 2)) {
      if (summary.examples.length < 4) summary.examples.push({ ...v, key });
    }
  }

  const { errors, slow } = badDecisions(
    /** @type {any} */ (decisions),
    TIMEOUT_MS,
    LATENCY_MARGIN_MS,
  );
  const maxLatency = decisions.reduce((m, d) => Math.max(m, d.lat), 0);
  // Latency from performance.now(): the reference clock's ms truncation aside.
  // An answer held up by a stall of this process's event loop is reported
  // apart: no timer can fire during one, whatever the package does.
  const stalled = (/** @type {Decision} */ d) =>
    run.stalls.some(stall => stall.from < d.r && stall.to > d.s);
  const tooSlow = (/** @type {Decision} */ d) =>
    d.lat > TIMEOUT_MS + LATENCY_MARGIN_MS || slow.includes(/** @type {any} */ (d));
  const slowAll = decisions.filter(tooSlow);
  const slowByLatency = slowAll.filter(d => !stalled(d));
  const longestStall = run.stalls.reduce((m, x) => Math.max(m, x.to - x.from), 0);

  // reset() wins: the probe right after a successful reset is admitted unless
  // the key's quota was spent again meanwhile (by anyone) or may be held by
  // another instance's outage hits from just before.
  const undone = [];
  for (const reset of run.resets.filter(x => x.ok)) {
    const rule = /** @type {import('./instance.mjs').ChaosRule} */ (RULES[reset.rule]);
    const probe = decisions.find(
      d =>
        d.probe &&
        d.rule === reset.rule &&
        d.key === reset.key &&
        d.inst === reset.inst &&
        d.s >= reset.r,
    );
    if (!probe || probe.ok) continue;
    const span = rule.algorithm === 'sliding-window' ? 2 * rule.windowMs : rule.windowMs;
    let spent = 0;
    for (const d of byKey.get(`${reset.rule}|${reset.key}`) ?? []) {
      if (d === probe || !d.ok) continue;
      if (d.r >= reset.s && d.s <= probe.s) spent += d.cost;
      else if (d.inst !== reset.inst && d.src === 'memory' && d.r >= reset.s - span)
        spent += d.cost;
    }
    if (spent + probe.cost <= rule.limit) undone.push({ reset, probe, spent });
  }

  const admitted = decisions.filter(d => d.ok);
  const bySource = (/** @type {string} */ src) => admitted.filter(d => d.src === src).length;
  const faultCounts = Object.fromEntries(
    Object.keys(FAULT_WEIGHTS).map(kind => [
      kind,
      run.faultLog.filter(f => f.kind === kind).length,
    ]),
  );
  const worstOverall = rules
    .map(r => (r.worst ? { ...r.worst, name: r.rule.name, limit: r.rule.limit } : undefined))
    .filter(w => w !== undefined)
    .sort((a, b) => b.count - b.bound - (a.count - a.bound))[0];
  const describe = (/** @type {any} */ w) =>
    `key k${w.key}: ${w.count} admitted against a bound of ${w.bound} ` +
    `(L ${w.bound - w.allowance.base - w.allowance.loss - w.allowance.jump}` +
    ` + other instances' memory ${w.allowance.base} + data loss ${w.allowance.loss} + clock jump ${w.allowance.jump};` +
    ` memory per instance ${w.memory.join('/')}, redis ${w.redis}) in ${w.kind} ` +
    `${((w.from - t0) / 1000).toFixed(2)}..${((w.to - t0) / 1000).toFixed(2)} s`;

  const lines = [];
  lines.push(
    `chaos seed ${scenario.seed}: ${scenario.instances} instance(s), ${scenario.mode === 'cluster' ? '3-master Cluster' : 'one redis-server'}, ` +
      `${scenario.seconds} s, ${scenario.keys} keys x ${RULES.length} rules, timeout ${TIMEOUT_MS} ms, breaker ${BREAKER.threshold}/${BREAKER.halfOpenAfter} ms, maxKeys ${fmt(MAX_KEYS)}, fallbackLimit default`,
    `  requests ${fmt(decisions.length)} (+ ${fmt(run.gets)} get), admitted ${fmt(admitted.length)} (redis ${fmt(bySource('redis'))}, memory ${fmt(bySource('memory'))})`,
    `  faults: ${Object.entries(faultCounts)
      .filter(([, n]) => n > 0)
      .map(([kind, n]) => `${kind} ${n}`)
      .join(
        ', ',
      )}; keys evicted ${fmt(run.evicted)}; resets ${run.resets.length} (${run.resets.filter(x => x.ok).length} ok)`,
    `  instances: ${run.instances.map((x, i) => `#${i} clock ${x.offsetMs / 1000} s, breaker opened ${x.events.breakerOpen}x, closed ${x.events.breakerClose}x, ${x.logs.warn} warnings`).join('; ')}`,
    `  last warning: ${run.instances.map(x => x.logs.lastWarning).join(' | ') || '-'}`,
  );
  for (const r of rules) {
    lines.push(
      `  ${r.rule.name} (${r.rule.algorithm} ${r.rule.limit}/${r.rule.windowMs / 1000} s): ${fmt(r.windows)} windows on ${r.keys} keys, ` +
        `${r.violations} over the bound on ${r.violatingKeys} keys; worst ${r.worst ? describe(r.worst) : '-'}`,
    );
    for (const v of r.examples) {
      lines.push(`      over: ${describe(v)}`);
      const index = RULES.indexOf(r.rule);
      lines.push(...traceLines(byKey.get(`${index}|${v.key}`) ?? [], v, run));
    }
  }
  lines.push(
    `  errors (exceptions, bypass) ${errors.length + run.getErrors}; slower than ${TIMEOUT_MS} + ${LATENCY_MARGIN_MS} ms: ${slowByLatency.length}` +
      ` (+ ${slowAll.length - slowByLatency.length} held up by event-loop stalls of this process, longest ${longestStall} ms); max ${maxLatency.toFixed(1)} ms`,
    `  resets undone (probe denied right after reset resolved, quota not spent): ${undone.length}` +
      (undone.length
        ? ` e.g. ${RULES[undone[0]?.reset.rule ?? 0]?.name} k${undone[0]?.reset.key} at ${(((undone[0]?.reset.s ?? t0) - t0) / 1000).toFixed(2)} s`
        : ''),
  );
  const violations = rules.reduce((n, r) => n + r.violations, 0);
  const ok =
    violations === 0 &&
    errors.length + run.getErrors === 0 &&
    slowByLatency.length === 0 &&
    undone.length === 0;
  lines.push(
    `  fault log: ${run.faultLog.map(f => `${(f.at / 1000).toFixed(1)} s ${f.kind} (${f.detail})`).join('; ') || 'none'}`,
  );
  lines.push(
    `  WORST WINDOW (seed ${scenario.seed}): ${worstOverall ? `${worstOverall.name} ${describe(worstOverall)}` : '-'}`,
    `  ${ok ? 'PASS' : 'FAIL'}`,
  );
  return { ok, text: lines.join('\n') };
}

// ------------------------------------------------------------------ main

async function main() {
  const options = parseArgs(process.argv.slice(2));
  installHooks('chaos');
  const scenarios = options.short
    ? SHORT.map(s => ({ ...s, keys: options.keys, rate: options.rate, faults: options.faults }))
    : [
        {
          seed: options.seed,
          instances: options.instances,
          mode: options.mode,
          seconds: Math.round(options.minutes * 60),
          keys: options.keys,
          rate: options.rate,
          faults: options.faults,
        },
      ];
  let ok = true;
  /** @type {unknown[]} */
  const dumps = [];
  for (const scenario of scenarios) {
    console.error(
      `chaos: seed ${scenario.seed}, ${scenario.instances} instance(s), ${scenario.mode}, ${scenario.seconds} s ...`,
    );
    const run = await runScenario(scenario);
    const report = analyse(run);
    console.log(report.text);
    ok &&= report.ok;
    if (options.dump) dumps.push(run);
    else run.decisions.length = 0; // let the next scenario have the memory
  }
  if (options.dump) writeFileSync(options.dump, JSON.stringify(dumps));
  console.log(
    `chaos: ${ok ? 'PASS' : 'FAIL'} (${scenarios.length} run(s), seeds ${scenarios.map(s => s.seed).join(', ')})`,
  );
  killAll();
  process.exit(ok ? 0 : 1);
}

main().catch(error => {
  console.error(`chaos: ${error instanceof Error ? error.stack : error}`);
  killAll();
  process.exit(2);
});
