// npm run soak: steady load through two app instances (soak/app.mjs) sharing
// one redis-server, while Redis is killed, restarted, frozen and resumed on a
// schedule. At the end it checks and reports:
//   1. no 5xx, no client timeouts, no connection errors (only 200 and 429);
//   2. no request slower than the package's timeout + a margin;
//   3. per (route, client), admitted never exceeded the bound (soak/check.mjs);
//   4. heap and the memory stores stayed bounded;
//   5. totals, and every outage recovered (both instances admitting from Redis again).
// Exits 1 if any check fails.
//
//   node soak/soak.mjs [--minutes 5] [--short] [--concurrency 16]
//        [--client-timeout 2000] [--margin 250] [--sabotage fallback|limit]
//        [--dump run.ndjson]
//
// --sabotage makes the apps break a rule on purpose (a 100x fallbackLimit, or
// every limit + 1) while the driver checks the real one: check 3 must fail.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { createInterface } from 'node:readline';
import {
  ROOT,
  freePort,
  installHooks,
  killAll,
  sleep,
  startRedis,
  stopChild,
  track,
} from '../scripts/lib/processes.mjs';
import { IntervalIndex, SOURCE, SOURCE_NAMES, checkKey } from './check.mjs';
import { BREAKER, CLIENTS, ROUTES, TIMEOUT_MS } from './routes.mjs';

const INSTANCES = 2;
/** Growth of the live heap from first to last post-GC sample tolerated: max(8 MB, 25 %). */
const HEAP_SLACK_BYTES = 8 * 2 ** 20;
/** No heapUsed sample may exceed this. */
const HEAP_MAX_BYTES = 256 * 2 ** 20;

// ---------------------------------------------------------------- options

function parseArgs(argv) {
  const options = {
    minutes: 5,
    short: false,
    concurrency: 16,
    clientTimeout: 2000,
    margin: 250,
    sabotage: '',
    dump: '',
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=');
    const value = () => inline ?? argv[++i];
    if (flag === '--minutes') options.minutes = Number(value());
    else if (flag === '--short') options.short = true;
    else if (flag === '--concurrency') options.concurrency = Number(value());
    else if (flag === '--client-timeout') options.clientTimeout = Number(value());
    else if (flag === '--margin') options.margin = Number(value());
    else if (flag === '--sabotage') options.sabotage = value();
    else if (flag === '--dump') options.dump = value();
    else throw new Error(`unknown flag ${flag}`);
  }
  if (!(options.minutes > 0 && options.minutes <= 120)) throw new Error('--minutes 0..120');
  if (!(options.concurrency >= 1 && options.concurrency <= 256)) {
    throw new Error('--concurrency 1..256');
  }
  if (!['', 'fallback', 'limit'].includes(options.sabotage)) {
    throw new Error('--sabotage fallback|limit');
  }
  return options;
}

/**
 * The fault schedule in ms from the start of the load. Short: one kill and
 * one freeze in about 30 s. Otherwise cycles of kill -> restart -> healthy ->
 * SIGSTOP -> SIGCONT -> healthy with varying lengths (some outages outlast a
 * window), ending with at least 15 s healthy.
 * @returns {{ durationMs: number, steps: Array<{ at: number, action: 'kill' | 'restart' | 'stop' | 'cont' }> }}
 */
function schedule(options) {
  if (options.short) {
    return {
      durationMs: 30_000,
      steps: [
        { at: 4000, action: 'kill' },
        { at: 7000, action: 'restart' },
        { at: 13_000, action: 'stop' },
        { at: 16_000, action: 'cont' },
      ],
    };
  }
  const durationMs = Math.round(options.minutes * 60_000);
  const down = [4000, 7000, 2500];
  const frozen = [3000, 1500, 6000];
  const healthy = [8000, 12_000, 6000];
  const steps = [];
  let at = 10_000;
  for (let cycle = 0; ; cycle++) {
    const kill = down[cycle % down.length];
    const freeze = frozen[cycle % frozen.length];
    const gap = healthy[cycle % healthy.length];
    if (at + kill + gap + freeze + 15_000 > durationMs) break;
    steps.push({ at, action: 'kill' }, { at: at + kill, action: 'restart' });
    at += kill + gap;
    steps.push({ at, action: 'stop' }, { at: at + freeze, action: 'cont' });
    at += freeze + healthy[(cycle + 1) % healthy.length];
  }
  return { durationMs, steps };
}

// ------------------------------------------------------ child processes

// Shared with the benches (scripts/lib/processes.mjs): every child is tracked
// by PID and killed on exit, error, SIGINT, SIGTERM or SIGHUP; temp dirs removed.
installHooks('soak');

/** One soak/app.mjs; resolves once it is deciding in Redis and listening. */
async function startApp(index, redisPort, sabotage, onLine) {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    ['--expose-gc', join(ROOT, 'soak/app.mjs'), String(port), String(redisPort)],
    {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NODE_ENV: 'production', SOAK_SABOTAGE: sabotage },
    },
  );
  const { tail } = track(child, `app${index}`);
  const lines = createInterface({ input: /** @type {NodeJS.ReadableStream} */ (child.stdout) });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`app${index}: not ready in 20 s`)), 20_000);
    lines.on('line', text => {
      let line;
      try {
        line = JSON.parse(text);
      } catch {
        return;
      }
      onLine(line);
      if (line.type === 'ready') {
        clearTimeout(timer);
        resolve(undefined);
      }
    });
    child.once('exit', code => {
      clearTimeout(timer);
      reject(new Error(`app${index} exited (${code}): ${tail.join('')}`));
    });
  });
  return {
    port,
    pid: /** @type {number} */ (child.pid),
    stderr: tail,
    exited: () => child.exitCode !== null || child.signalCode !== null,
    stop: () => stopChild(child, 3000),
  };
}

// ------------------------------------------------------------- the log

const OUTCOME = { response: 0, timeout: 1, error: 2 };

/** Columnar request log: a few bytes per request instead of an object. */
class RequestLog {
  constructor(capacity = 1 << 16) {
    this.length = 0;
    this.allocate(capacity);
  }

  allocate(capacity) {
    const grow = (Type, old) => {
      const next = new Type(capacity);
      if (old) next.set(old.subarray(0, this.length));
      return next;
    };
    this.sent = grow(Float64Array, this.sent);
    this.received = grow(Float64Array, this.received);
    this.latency = grow(Float32Array, this.latency);
    this.instance = grow(Uint8Array, this.instance);
    this.route = grow(Uint8Array, this.route);
    this.client = grow(Int32Array, this.client);
    this.status = grow(Uint16Array, this.status);
    this.outcome = grow(Uint8Array, this.outcome);
    this.source = grow(Uint8Array, this.source);
    this.capacity = capacity;
  }

  push(sent, received, latency, instance, route, client, status, outcome, source) {
    if (this.length === this.capacity) this.allocate(this.capacity * 2);
    const i = this.length++;
    this.sent[i] = sent;
    this.received[i] = received;
    this.latency[i] = latency;
    this.instance[i] = instance;
    this.route[i] = route;
    this.client[i] = client;
    this.status[i] = status;
    this.outcome[i] = outcome;
    this.source[i] = source;
  }
}

const SOURCE_CODES = { redis: SOURCE.redis, memory: SOURCE.memory, bypass: SOURCE.bypass };

/**
 * One request with a client-side timeout; never rejects.
 * @returns {Promise<{ status: number, outcome: number, source: number }>}
 */
function send(agent, port, route, client, timeoutMs) {
  return new Promise(resolve => {
    let settled = false;
    const finish = result => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    const req = http.request(
      {
        agent,
        host: '127.0.0.1',
        port,
        method: route.method,
        path: route.path,
        headers: { 'x-client': client },
      },
      res => {
        const source = SOURCE_CODES[String(res.headers['x-ratelimit-source'])] ?? SOURCE.none;
        res.resume();
        res.on('end', () =>
          finish({ status: res.statusCode ?? 0, outcome: OUTCOME.response, source }),
        );
        res.on('error', () => finish({ status: 0, outcome: OUTCOME.error, source: SOURCE.none }));
      },
    );
    const timer = setTimeout(() => {
      finish({ status: 0, outcome: OUTCOME.timeout, source: SOURCE.none });
      req.destroy();
    }, timeoutMs);
    req.on('error', () => finish({ status: 0, outcome: OUTCOME.error, source: SOURCE.none }));
    req.end();
  });
}

// ---------------------------------------------------------------- report

const fmt = (n, digits = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : String(n);
const mb = bytes => `${fmt(bytes / 2 ** 20, 1)} MB`;

function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function table(head, rows) {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map(r => String(r[i]).length)));
  const line = cells =>
    cells
      .map((c, i) => String(c).padEnd(widths[i]))
      .join('  ')
      .trimEnd();
  return [line(head), line(widths.map(w => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

// ------------------------------------------------------------------ main

async function main() {
  const options = parseArgs(process.argv.slice(2));
  if (!existsSync(join(ROOT, 'dist/esm/index.js'))) {
    throw new Error('dist/ is missing: run `npm run build` first (npm run soak does)');
  }
  const plan = schedule(options);
  const started = Date.now();

  const redis = await startRedis(await freePort(), { tempPrefix: 'rrl-soak-redis-' });
  /** @type {Array<Array<Record<string, any>>>} */
  const stats = [[], []];
  /** @type {Array<Array<Record<string, any>>>} */
  const events = [[], []];
  const apps = [];
  for (let i = 0; i < INSTANCES; i++) {
    apps.push(
      await startApp(i, redis.port, options.sabotage, line => {
        if (line.type === 'stats') stats[i].push(line);
        else if (line.type === 'event' || line.type === 'log') events[i].push(line);
      }),
    );
  }
  console.error(
    `soak: redis ${redis.port} (pid ${redis.pid}), apps ${apps.map(a => `${a.port} (pid ${a.pid})`).join(', ')}; ` +
      `${plan.durationMs / 1000} s of load, ${plan.steps.length} fault steps` +
      (options.sabotage ? `, SABOTAGE ${options.sabotage}` : ''),
  );

  // Load: bounded concurrency, round robin over instance, route, client.
  const log = new RequestLog();
  const agents = apps.map(
    () => new http.Agent({ keepAlive: true, maxSockets: options.concurrency }),
  );
  const clientNames = Array.from({ length: CLIENTS }, (_, i) => `c${i}`);
  let sequence = 0;
  let flood = 0;
  const t0 = Date.now();
  const stopAt = t0 + plan.durationMs;
  const worker = async () => {
    while (Date.now() < stopAt) {
      const n = sequence++;
      const instance = n % INSTANCES;
      const routeIndex = Math.floor(n / INSTANCES) % ROUTES.length;
      const route = ROUTES[routeIndex];
      const clientIndex = route.flood ? -1 : Math.floor(n / (INSTANCES * ROUTES.length)) % CLIENTS;
      const client = route.flood ? `anon-${flood++}` : clientNames[clientIndex];
      const sentWall = Date.now();
      const sentMono = performance.now();
      const result = await send(
        agents[instance],
        apps[instance].port,
        route,
        client,
        options.clientTimeout,
      );
      const latency = performance.now() - sentMono;
      // Date.now() truncates: the true send time is >= sentWall, receipt < now + 1.
      log.push(
        sentWall,
        Date.now() + 1,
        latency,
        instance,
        routeIndex,
        clientIndex,
        result.status,
        result.outcome,
        result.source,
      );
    }
  };

  /** @type {Array<{ action: string, at: number, error?: string }>} */
  const faults = [];
  let stopping = false;
  const runFaults = async () => {
    for (const step of plan.steps) {
      const wait = t0 + step.at - Date.now();
      if (wait > 0) await sleep(wait);
      if (stopping) return;
      const at = Date.now();
      try {
        if (step.action === 'kill') await redis.kill();
        else if (step.action === 'restart') await redis.restart();
        else if (step.action === 'stop') redis.stop();
        else redis.cont();
        faults.push({ action: step.action, at });
      } catch (error) {
        faults.push({ action: step.action, at, error: String(error) });
      }
      console.error(`soak: ${((at - t0) / 1000).toFixed(1)} s ${step.action} redis`);
    }
  };

  const faultLoop = runFaults();
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  stopping = true;
  await faultLoop;
  redis.cont();
  // Let the apps report their final stats, then stop everything.
  await sleep(1200);
  const crashed = apps.map((app, i) => (app.exited() ? i : -1)).filter(i => i >= 0);
  await Promise.all(apps.map(app => app.stop()));
  await redis.kill();
  for (const agent of agents) agent.destroy();
  const wallSeconds = (Date.now() - started) / 1000;

  if (options.dump) dump(options.dump, { log, faults, t0, stats, events });
  const report = analyse({ options, plan, log, stats, events, faults, t0, crashed, apps });
  console.log(report.text);
  console.log(`\nsoak: ${report.ok ? 'PASS' : 'FAIL'} (${fmt(wallSeconds, 1)} s wall)`);
  killAll();
  process.exit(report.ok ? 0 : 1);
}

// --------------------------------------------------------------- analysis

/** Which package the run exercised: version, and the commit dist/ was built from. */
function describeBuild() {
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  try {
    const git = (...args) =>
      execFileSync('git', args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] })
        .toString()
        .trim();
    const dirty =
      git('status', '--porcelain', '--', 'lib') !== '' ? ' + uncommitted lib/ changes' : '';
    return `resilient-rate-limit ${version} (git ${git('rev-parse', '--short', 'HEAD')}${dirty})`;
  } catch {
    return `resilient-rate-limit ${version}`;
  }
}

function analyse({ options, plan, log, stats, events, faults, t0, crashed, apps }) {
  const out = [];
  const checks = [];
  const check = (name, ok, detail) => checks.push({ name, ok, detail });
  const n = log.length;
  const seconds = plan.durationMs / 1000;

  out.push(
    `soak of ${describeBuild()}: ${INSTANCES} app instances, 1 redis-server, ${cpus().length} CPUs, Node ${process.version}`,
    `load ${fmt(seconds)} s, concurrency ${options.concurrency}, client timeout ${options.clientTimeout} ms; ` +
      `timeout ${TIMEOUT_MS} ms, breaker ${JSON.stringify(BREAKER)}` +
      (options.sabotage ? `; SABOTAGE: ${options.sabotage}` : ''),
    `faults (s from start): ${faults.map(f => `${((f.at - t0) / 1000).toFixed(1)} ${f.action}${f.error ? ` FAILED ${f.error}` : ''}`).join(', ')}`,
  );

  // 1. status and transport failures
  const statusCounts = new Map();
  let timeouts = 0;
  let errors = 0;
  let server5xx = 0;
  let other = 0;
  const sourceCounts = [0, 0, 0, 0];
  for (let i = 0; i < n; i++) {
    if (log.outcome[i] === OUTCOME.timeout) timeouts++;
    else if (log.outcome[i] === OUTCOME.error) errors++;
    else {
      const status = log.status[i];
      statusCounts.set(status, (statusCounts.get(status) ?? 0) + 1);
      if (status >= 500) server5xx++;
      else if (status !== 200 && status !== 429) other++;
      sourceCounts[log.source[i]]++;
    }
  }
  const statusText = [...statusCounts]
    .sort((a, b) => a[0] - b[0])
    .map(([s, c]) => `${s}: ${fmt(c)}`)
    .join(', ');
  check(
    '1. no 5xx, no client timeouts, no connection errors',
    server5xx === 0 && timeouts === 0 && errors === 0 && other === 0 && crashed.length === 0,
    `${statusText}; 5xx ${server5xx}, client timeouts ${timeouts}, connection errors ${errors}, other statuses ${other}` +
      (crashed.length
        ? `; app ${crashed.join(', ')} CRASHED: ${crashed.map(i => apps[i].stderr.join('')).join(' | ')}`
        : ''),
  );

  // 2. latency
  const latencies = Float32Array.from(log.latency.subarray(0, n)).sort();
  const maxLatency = latencies[n - 1] ?? 0;
  const limitMs = TIMEOUT_MS + options.margin;
  const outageLatencies = [];
  const windowsOut = outagesFrom(faults, t0, plan);
  for (let i = 0; i < n; i++) {
    const s = log.sent[i];
    if (windowsOut.some(o => s >= o.start && s <= o.end + 3000))
      outageLatencies.push(log.latency[i]);
  }
  outageLatencies.sort((a, b) => a - b);
  let slowest = 0;
  for (let i = 1; i < n; i++) if (log.latency[i] > log.latency[slowest]) slowest = i;
  check(
    `2. every request answered within timeout + ${options.margin} ms = ${limitMs} ms`,
    maxLatency <= limitMs,
    `max ${fmt(maxLatency, 1)} ms (${ROUTES[log.route[slowest]]?.id}, source ${SOURCE_NAMES[log.source[slowest]]}, ` +
      `at ${fmt((log.sent[slowest] - t0) / 1000, 1)} s), p99 ${fmt(percentile(latencies, 99), 1)} ms, ` +
      `p99.9 ${fmt(percentile(latencies, 99.9), 1)} ms, median ${fmt(percentile(latencies, 50), 2)} ms; ` +
      `during outages (+3 s) p99 ${fmt(percentile(outageLatencies, 99), 1)} ms, max ${fmt(outageLatencies.at(-1) ?? 0, 1)} ms. ` +
      `The ${options.margin} ms margin over the ${TIMEOUT_MS} ms Redis budget covers Express + HTTP on both sides and ` +
      `scheduling: two app processes, redis-server and this driver share ${cpus().length} CPUs at full load, ` +
      `and GC pauses in either process.`,
  );

  // 3. per-key bound
  const kills = faults.filter(f => f.action === 'kill').map(f => f.at);
  /** @type {Array<Array<{ s: number, r: number }>>} */
  const nonRedis = Array.from({ length: INSTANCES }, () => []);
  /** @type {Map<string, import('./check.mjs').Decision[]>} */
  const byKey = new Map();
  for (let i = 0; i < n; i++) {
    if (log.outcome[i] !== OUTCOME.response) continue;
    const decision = {
      s: log.sent[i],
      r: log.received[i],
      inst: log.instance[i],
      src: log.source[i],
      ok: log.status[i] === 200,
      ep: -1,
    };
    if (decision.src !== SOURCE.redis) nonRedis[decision.inst].push(decision);
    if (log.client[i] < 0) continue;
    const id = `${log.route[i]}|${log.client[i]}`;
    let list = byKey.get(id);
    if (!list) byKey.set(id, (list = []));
    list.push(decision);
  }
  const outages = nonRedis.map(list => new IntervalIndex(list));
  const boundRows = [];
  const violations = [];
  let killAllowance = 0;
  ROUTES.forEach((route, routeIndex) => {
    if (route.flood) return;
    /** @type {Map<string, ReturnType<typeof emptyAggregate>>} */
    const byCheck = new Map();
    let admitted = 0;
    for (let client = 0; client < CLIENTS; client++) {
      const decisions = byKey.get(`${routeIndex}|${client}`) ?? [];
      decisions.sort((a, b) => a.s - b.s);
      admitted += decisions.filter(d => d.ok).length;
      const result = checkKey(route, decisions, { kills, outages, timeoutMs: TIMEOUT_MS });
      const parts = [[CHECK_NAMES[route.algorithm], result]];
      if (result.anchored) parts.unshift(['exact windows', result.anchored]);
      if (result.weighted) parts.push(['weighted rule', result.weighted]);
      if (result.withinWindow) parts.push(['(those <= W)', result.withinWindow]);
      for (const [name, part] of parts) {
        let agg = byCheck.get(name);
        if (!agg) byCheck.set(name, (agg = emptyAggregate()));
        merge(agg, part, client);
        killAllowance += part.killAllowanceUsed;
        for (const v of part.violations.slice(0, 3)) {
          violations.push({ route: route.id, client, ...v });
        }
      }
    }
    for (const [name, agg] of byCheck) boundRows.push({ route, name, agg, admitted });
  });
  const describeWindow = w =>
    w
      ? `${w.count} <= ${w.bound} (c${w.client}, ${w.kind}: redis ${w.redis} + memory ${w.memory}; ${w.d} kill, ${w.k} F)`
      : '-';
  const boundTable = table(
    [
      'route',
      'rule',
      'admitted',
      'check',
      'intervals',
      'max admitted in one (its bound)',
      'least headroom',
      'no-outage max / L',
      'violations',
    ],
    boundRows.map(({ route, name, agg, admitted }) => [
      `${route.method} /${route.id}`,
      `${route.algorithm} ${route.limit}/${route.windowMs / 1000}s ${route.failClosed ? `F=${route.fallbackLimit}` : 'fail-open'}`,
      fmt(admitted),
      name,
      fmt(agg.windows),
      describeWindow(agg.max),
      agg.tightest ? `${agg.tightest.count} / ${agg.tightest.bound}` : '-',
      PER_WINDOW.has(name)
        ? `${agg.healthyMax} / ${route.limit} (${fmt(agg.healthyWindows)})`
        : `n/a`,
      String(agg.violations),
    ]),
  );
  const boundOk = boundRows.every(row => row.agg.violations === 0);
  check(
    '3. admitted per (route, client) never exceeded the bound',
    boundOk,
    `${
      violations.length
        ? `${violations.length}+ violations, e.g. ${violations
            .slice(0, 6)
            .map(
              v =>
                `${v.route}/c${v.client} ${v.count} > ${v.bound} in ${v.kind} at ${fmt((v.from - t0) / 1000, 1)} s (redis ${v.redis}, memory ${v.memory}, ${v.k} F charged, ${v.d} kills)`,
            )
            .join('; ')}`
        : 'no violations'
    }; ${killAllowance} interval(s) fit only thanks to the +L per Redis kill allowance`,
  );

  // 4. heap and memory stores
  const heapLines = [];
  let heapOk = true;
  let storeOk = true;
  const storeMax = {};
  stats.forEach((samples, i) => {
    const during = samples.filter(s => s.t >= t0 && s.t <= t0 + plan.durationMs);
    if (during.length < 4) {
      heapOk = false;
      heapLines.push(`  app${i}: only ${during.length} stats samples`);
      return;
    }
    // Every 5th sample follows a full GC: the live set. Compare the first
    // and the last of those; report the peak of all samples.
    const live = during.filter(s => s.afterGc);
    if (live.length < 2) {
      heapOk = false;
      heapLines.push(`  app${i}: fewer than 2 post-GC samples (is --expose-gc on?)`);
      return;
    }
    const start = live[0].heapUsed;
    const end = live.at(-1).heapUsed;
    const liveMax = Math.max(...live.map(s => s.heapUsed));
    const max = Math.max(...during.map(s => s.heapUsed));
    const rssMax = Math.max(...during.map(s => s.rss));
    const allowed = start + Math.max(HEAP_SLACK_BYTES, start * 0.25);
    const ok = end <= allowed && max <= HEAP_MAX_BYTES;
    if (!ok) heapOk = false;
    const step = Math.max(1, Math.ceil(live.length / 12));
    const series = live
      .filter((_, j) => j % step === 0 || j === live.length - 1)
      .map(s => fmt(s.heapUsed / 2 ** 20, 1))
      .join(' ');
    heapLines.push(
      `  app${i}: live heap (after GC) start ${mb(start)}, end ${mb(end)} (allowed <= ${mb(allowed)}), ` +
        `max ${mb(liveMax)}; heapUsed peak ${mb(max)} (allowed <= ${mb(HEAP_MAX_BYTES)}), rss peak ${mb(rssMax)}; ` +
        `live MB over time: ${series}`,
    );
    for (const s of samples) {
      for (const [id, size] of Object.entries(s.stores)) {
        storeMax[id] = Math.max(storeMax[id] ?? 0, size);
        if (size > s.maxKeys[id]) storeOk = false;
      }
    }
  });
  const lastStats = stats.map(s => s.at(-1));
  check(
    '4. heap and memory stores bounded',
    heapOk && storeOk,
    `memory store max size: ${ROUTES.map(r => `${r.id} ${storeMax[r.id] ?? '?'}/${r.maxKeys}`).join(', ')}; ` +
      `evictions (search, flooded with new keys): ${lastStats.map(s => fmt(s?.evictions?.search ?? 0)).join(' + ')}\n${heapLines.join('\n')}`,
  );

  // 5. totals and recoveries
  const perInstance = [0, 0];
  for (let i = 0; i < n; i++) perInstance[log.instance[i]]++;
  const count = (i, name) => events[i].filter(e => e.event === name).length;
  const reconciledHits = events
    .flat()
    .filter(e => e.event === 'reconciled')
    .reduce((s, e) => s + e.hits, 0);
  const recoveries = windowsOut.map(o => {
    const back = [];
    for (let inst = 0; inst < INSTANCES; inst++) {
      let first = Infinity;
      for (let i = 0; i < n; i++) {
        // An admission: a denial may come from the block cache of Redis's earlier answers.
        if (
          log.instance[i] === inst &&
          log.source[i] === SOURCE.redis &&
          log.status[i] === 200 &&
          log.sent[i] >= o.end
        ) {
          first = Math.min(first, log.received[i]);
        }
      }
      back.push(first - o.end);
    }
    return { ...o, back };
  });
  const survived = recoveries.filter(o =>
    o.back.every(ms => ms <= 10_000 && o.end + ms <= o.next),
  ).length;
  const sourceText = SOURCE_NAMES.map((name, i) => `${name} ${fmt(sourceCounts[i])}`)
    .filter((_, i) => i > 0 || sourceCounts[0] > 0)
    .join(', ');
  check(
    '5. every outage recovered (both instances admitting from Redis within 10 s of Redis returning)',
    survived === recoveries.length && recoveries.length === plan.steps.length / 2,
    `requests ${fmt(n)} (${fmt(n / seconds)}/s; per instance ${perInstance.map(x => fmt(x)).join(' / ')}); ` +
      `X-RateLimit-Source: ${sourceText}; outages survived ${survived}/${recoveries.length} ` +
      `(${recoveries.filter(o => o.kind === 'kill').length} kill+restart, ${recoveries.filter(o => o.kind === 'freeze').length} SIGSTOP+SIGCONT); ` +
      `first Redis admission after Redis returned (ms, per instance): ${recoveries.map(o => `${o.kind} ${o.back.map(ms => fmt(ms)).join('/')}`).join(', ')}; ` +
      `breaker opens per instance ${[0, 1].map(i => count(i, 'breakerOpen')).join(' / ')} ` +
      `(half-open ${[0, 1].map(i => count(i, 'breakerHalfOpen')).join(' / ')}, closes ${[0, 1].map(i => count(i, 'breakerClose')).join(' / ')}); ` +
      `hits reconciled to Redis ${fmt(reconciledHits)}; store errors ${lastStats.map(s => fmt(s?.storeErrors ?? 0)).join(' / ')}`,
  );

  out.push('', 'Per-key bound (check 3):', boundTable);
  out.push(
    '',
    'The bound (check 3), per (route, client); L = limit, W = window, F = fallbackLimit, 2 instances.',
    '  SPEC: Redis decides exactly (<= L per window); during an outage each instance adds <= F per',
    '  window; warm fallback and reconciliation keep the outage from resetting quotas.',
    '  Counted: admissions whose decision certainly falls inside the interval (sent and answered inside;',
    '  driver, apps and Redis read one clock). Bounds are for the widest interval that could be.',
    "  episode: a run of one instance's memory decisions for the key with no Redis answer for that key",
    '    on that instance in between (a mirror could reset the memory count); adds <= F per window.',
    "  reconciliation: an instance's outage hits reach Redis before its next Redis decision for the key",
    '    and come back in the mirror, so fixed and sliding windows charge each instance F at most once',
    '    per window (+1 per kill) however many episodes; the token bucket is charged F per episode.',
    '  kill: Redis restarts empty (no persistence), so the hits it admitted before are gone (only',
    '    memory-admitted hits are written back) and it may grant L again: each kill inside adds L.',
    '  - fixed window, exact windows: after Redis denied y its window was full, so every later admission',
    '    is in a window opened after p_y: admitted in (p_y, s_y + W) <= L x (1 + kills) + F x charges',
    '    (+F for an instance that used memory for the key within W before). Skipped within 2 s after an',
    '    outage (a reconciliation may move a window start); one per Redis denial -> admission.',
    '  - fixed window, any interval of length W: it meets at most two windows (three if a reconciliation',
    '    moved a start): <= 2 x L x (1 + kills) + F x charges (<= 2 per instance and kill) + L x',
    '    instances recovering nearby.',
    '  - sliding window, per window aligned to W: <= L x (1 + kills) + F x charges;',
    '    and in windows with no outage or kill in it or the one before, every Redis admission obeys the',
    '    weighted rule: cur + ceil(prev x (W - elapsed) / W) + 1 <= L (with lower bounds for each term).',
    '  - token bucket, any interval of length T <= 3W (GCRA: burst plus refill, per store):',
    '    <= L x (1 + kills) + L x T_redis / W + sum over episodes (F + F x T_episode / W).',
    '  - fail-open routes: bypass admissions are unlimited by design and not counted.',
    '',
    'Checks:',
  );
  for (const c of checks)
    out.push(
      `  [${c.ok ? 'PASS' : 'FAIL'}] ${c.name}`,
      `         ${c.detail.replace(/\n/g, '\n         ')}`,
    );
  return { ok: checks.every(c => c.ok), text: out.join('\n') };
}

/** Writes the raw run (one JSON line per request, then the rest) for offline study. */
function dump(file, { log, faults, t0, stats, events }) {
  const lines = [JSON.stringify({ t0, faults, routes: ROUTES.map(r => r.id), stats, events })];
  for (let i = 0; i < log.length; i++) {
    lines.push(
      JSON.stringify([
        log.sent[i],
        log.received[i],
        Math.round(log.latency[i] * 100) / 100,
        log.instance[i],
        log.route[i],
        log.client[i],
        log.status[i],
        log.outcome[i],
        log.source[i],
      ]),
    );
  }
  writeFileSync(file, lines.join('\n') + '\n');
}

const CHECK_NAMES = {
  'fixed-window': 'any W interval',
  'sliding-window': 'aligned windows',
  'token-bucket': 'intervals <= 3W',
};
/** Checks with one bound per window, where a window without outage must hold <= L. */
const PER_WINDOW = new Set(['exact windows', 'aligned windows', 'weighted rule']);

function emptyAggregate() {
  return {
    windows: 0,
    healthyWindows: 0,
    healthyMax: 0,
    max: undefined,
    tightest: undefined,
    violations: 0,
  };
}

/** Folds one key's result of one check into the route's aggregate. */
function merge(agg, part, client) {
  agg.windows += part.windows;
  agg.healthyWindows += part.healthy.windows;
  agg.healthyMax = Math.max(agg.healthyMax, part.healthy.max);
  agg.violations += part.violations.length;
  if (part.max && (!agg.max || part.max.count > agg.max.count)) agg.max = { ...part.max, client };
  const room = w => w.bound - w.count;
  if (part.tightest && (!agg.tightest || room(part.tightest) < room(agg.tightest))) {
    agg.tightest = { ...part.tightest, client };
  }
}

/** The outages of the run: kill..restart and stop..cont, with the next fault's start. */
function outagesFrom(faults, t0, plan) {
  const result = [];
  for (let i = 0; i + 1 < faults.length; i += 2) {
    const begin = faults[i];
    const end = faults[i + 1];
    const next = faults[i + 2]?.at ?? t0 + plan.durationMs + 60_000;
    result.push({
      kind: begin.action === 'kill' ? 'kill' : 'freeze',
      start: begin.at,
      end: end.at,
      next,
    });
  }
  return result;
}

main().catch(error => {
  console.error(`soak: ${error instanceof Error ? error.stack : error}`);
  killAll();
  process.exit(1);
});
