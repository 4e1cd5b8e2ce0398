// @ts-check
// npm run bench: every figure issue #16 asks for, in one run.
//   1. HTTP: server CPU per request of this package (README client, URL
//      client, a default `new Redis(url)` client; memory only) against bare
//      Express and the peers, each in its own process, driven by autocannon
//      in interleaved rounds against a private redis-server (with an A/A
//      control: a second bare server); Redis CPU per decision; p99.
//   2. Redis memory per limited key, ours and the peers' (bench/memory.mjs).
//   3. In-process: the full middleware beside the peers', interleaved with
//      an A/A control; 1 rule against 4 (bench/inproc.mjs, child process).
//   4. Scale figures (bench/scale.mjs, child process).
//   5. The "Goals (issue #16)" table, from 1 and 3.
// Writes each part's section of BENCHMARKS.md. About 13 minutes on a 2-core
// VM; --quick about 4 (figures not for reporting).
//
//   node bench/run.mjs [--rounds 8] [--duration 4] [--connections 20]
//                      [--warmup 1] [--variants a,b] [--quick] [--http-only]
//                      [--no-build] [--no-write]
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import http from 'node:http';
import { join } from 'node:path';
// @ts-expect-error -- autocannon ships no type declarations
import autocannon from 'autocannon';
import { Redis } from 'ioredis';
import {
  clkTck,
  cpuTicks,
  ensureBuilt,
  freePort,
  machineInfo,
  ROOT,
  sleep,
  startRedis,
  startServer,
  track,
} from '../scripts/lib/processes.mjs';
import {
  fmt,
  markdownTable,
  median,
  medianRange,
  percentile,
  range,
  textTable,
  writeSection,
} from './lib/report.mjs';
import { redisCounters } from './lib/driver.mjs';
import { readmeSnippetDrift } from './lib/readme-client.mjs';
import { DEFAULT_VARIANTS, needsRedisPort, usesRedis, VARIANTS } from './lib/variants.mjs';
import { runMemoryBench } from './memory.mjs';

const ALL_VARIANTS = VARIANTS;
// What X-RateLimit-Source must say for our variants (checked before and after each run).
/** @type {Record<string, string>} */
const EXPECTED_SOURCE = {
  'rrl-memory': 'memory',
  'rrl-redis-readme': 'redis',
  'rrl-redis-readme-aa': 'redis',
  'rrl-redis': 'redis',
  'rrl-redis-plain': 'redis',
  'rrl-share-redis': 'redis',
  'rrl-breaker-open': 'memory',
};
/** @type {Record<string, string>} */
const DESCRIPTIONS = {
  bare: 'Express 5, no limiter',
  'bare-aa': 'a second bare server (A/A control)',
  'bare-headers':
    'bare plus the six static headers our default sends (what the headers alone cost)',
  'rrl-memory': 'this package, memory only',
  'rrl-memory-noheaders':
    'this package, memory only, `headers: false` (the limiter without its headers)',
  'rrl-redis-readme':
    'this package, its own client built as README "Recommended ioredis settings" (snippet copied verbatim: bench/lib/readme-client.mjs)',
  'rrl-redis-readme-aa':
    'a second, identical rrl-redis-readme server (A/A control on the Redis path)',
  'rrl-redis': 'this package, `redis://` URL (the quick start)',
  'rrl-redis-plain':
    'this package, `new Redis(url)` + an error listener (what users who skip the recommended settings run)',
  'rrl-share-redis':
    "as rrl-redis with `fallbackLimit: 'share'` (instance registry refreshed once a second; must match rrl-redis)",
  'rrl-breaker-open': 'this package, Redis down, breaker open, memory fallback decides',
  'erl-memory': 'express-rate-limit, default MemoryStore',
  'erl-redis': 'express-rate-limit + rate-limit-redis (ioredis `call`)',
  'rlf-memory': 'rate-limiter-flexible RateLimiterMemory',
  'rlf-redis':
    'rate-limiter-flexible RateLimiterRedis + insurance RateLimiterMemory, `new Redis(url, { enableOfflineQueue: false })` as its docs build it',
};

/** @param {string[]} argv */
function parseArgs(argv) {
  const quick = argv.includes('--quick');
  const options = {
    rounds: quick ? 3 : 8,
    duration: quick ? 2 : 4,
    // 20, not the 50 of issue #16's wrk runs: on a shared 2-core machine 50
    // connections push the server's event-loop lag past the 100 ms timeout
    // often enough that our breaker opens (runs then leave the Redis path and
    // are dropped from the figures). --connections 50 to compare.
    connections: 20,
    warmup: quick ? 0.5 : 1,
    variants: DEFAULT_VARIANTS,
    build: true,
    write: true,
    quick,
    httpOnly: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=');
    const value = () => inline ?? argv[++i];
    if (flag === '--rounds') options.rounds = positive(value(), flag);
    else if (flag === '--duration') options.duration = positive(value(), flag);
    else if (flag === '--connections') options.connections = positive(value(), flag);
    else if (flag === '--warmup') options.warmup = Number(value());
    else if (flag === '--variants') options.variants = value().split(',');
    else if (flag === '--no-build') options.build = false;
    else if (flag === '--no-write') options.write = false;
    else if (flag === '--http-only') options.httpOnly = true;
    else if (flag !== '--quick') throw new Error(`unknown flag ${flag}`);
  }
  for (const variant of options.variants) {
    if (!ALL_VARIANTS.includes(variant)) throw new Error(`unknown variant ${variant}`);
  }
  if (!options.variants.includes('bare')) options.variants = ['bare', ...options.variants];
  return options;
}

/**
 * @param {string} text
 * @param {string} flag
 */
function positive(text, flag) {
  const n = Number(text);
  if (!(n > 0) || n > 3600) throw new Error(`${flag} must be a positive number, got ${text}`);
  return n;
}

/**
 * One GET; resolves with status and headers.
 * @param {string} url
 * @returns {Promise<{ status: number, headers: import('node:http').IncomingHttpHeaders, body: string }>}
 */
function get(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: 2000 }, res => {
      let body = '';
      res.on('data', chunk => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: timeout`)));
    req.on('error', reject);
  });
}

/**
 * Checks the variant answers 200 and, for ours, decides where it should:
 * throws when `strict` (at start-up), else returns the mismatch (a breaker
 * opened by a starved machine is reported with the round, not fatal).
 * @param {{ variant: string, url: string }} server
 */
async function verify(server, strict = false) {
  const res = await get(server.url);
  if (res.status !== 200) throw new Error(`${server.variant}: GET / answered ${res.status}`);
  const expected = EXPECTED_SOURCE[server.variant];
  const source = res.headers['x-ratelimit-source'];
  const wrongSource =
    expected && source !== expected
      ? `${server.variant}: X-RateLimit-Source is ${source}, expected ${expected}`
      : undefined;
  if (wrongSource && strict) throw new Error(wrongSource);
  const state = JSON.parse((await get(server.url + '__bench')).body);
  return {
    headers: Object.keys(res.headers).filter(h => /ratelimit|retry-after/i.test(h)).length,
    wrongSource,
    ...state,
  };
}

/**
 * autocannon for `seconds`; latencies are taken per response (ms, float)
 * because autocannon's own histogram has 1 ms resolution.
 * @param {string} url
 * @param {number} seconds
 * @param {number} connections
 */
async function load(url, seconds, connections) {
  /** @type {number[]} */
  const latencies = [];
  const instance = autocannon({ url, connections, duration: seconds, pipelining: 1 });
  instance.on(
    'response',
    (
      /** @type {unknown} */ _client,
      /** @type {number} */ _status,
      /** @type {number} */ _bytes,
      /** @type {number} */ responseTime,
    ) => latencies.push(responseTime),
  );
  const result = await instance;
  return { result, latencies };
}

/**
 * Runs bench/<script> in a child Node (with --expose-gc), its stderr shown
 * as it goes; resolves with the JSON summary it prints last.
 * @param {string} script
 * @param {string[]} args
 */
async function runChild(script, args) {
  const child = spawn(process.execPath, ['--expose-gc', join(ROOT, 'bench', script), ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  track(child, script);
  let out = '';
  child.stdout?.on('data', chunk => (out += chunk));
  const [code] = await once(child, 'exit');
  const lines = out.trimEnd().split('\n');
  const last = lines.pop() ?? '';
  process.stdout.write(lines.join('\n') + '\n');
  if (code !== 0) throw new Error(`${script} exited ${code}`);
  return JSON.parse(last);
}

/**
 * Per-round ratio of `a` to `b` (b a number or the min of several variants).
 * @param {Record<string, Array<Record<string, number>>>} runs
 * @param {string} a
 * @param {string[]} b
 * @param {string} field
 */
function roundRatios(runs, a, b, field) {
  if (!runs[a] || b.some(v => !runs[v])) return [];
  return runs[a].map(r => {
    const others = b.map(v => runs[v].find(x => x.round === r.round)?.[field] ?? NaN);
    return r[field] / Math.min(...others);
  });
}

async function main() {
  const argv = process.argv.slice(2);
  const options = parseArgs(argv);
  const started = Date.now();
  const command = `node bench/run.mjs ${argv.join(' ')}`.trim();
  ensureBuilt(options.build);
  const tick = clkTck();
  const usPerTick = 1e6 / tick;
  /** @type {string[]} */
  const problems = [];
  const drift = readmeSnippetDrift();
  if (drift) problems.push(drift);

  const redis = await startRedis(await freePort());
  const admin = new Redis(redis.port, '127.0.0.1');
  const deadPort = await freePort();
  /** @type {Awaited<ReturnType<typeof startServer>>[]} */
  const servers = [];
  for (const variant of options.variants) {
    const port = variant === 'rrl-breaker-open' ? deadPort : redis.port;
    servers.push(await startServer(variant, needsRedisPort(variant) ? port : undefined));
  }
  /** @type {Record<string, number>} */
  const headerCount = {};
  for (const server of servers) headerCount[server.variant] = (await verify(server, true)).headers;
  console.error(
    `bench: redis-server ${redis.version} on :${redis.port}; ${servers.length} servers up`,
  );

  if (options.warmup > 0) {
    console.error(`bench: warm-up ${options.warmup} s each`);
    for (const server of servers) await load(server.url, options.warmup, options.connections);
  }

  /** @type {Record<string, Array<Record<string, number>>>} */
  const runs = Object.fromEntries(options.variants.map(v => [v, []]));
  /** @type {number[]} */
  const redisIdle = [];
  for (let round = 1; round <= options.rounds; round++) {
    const order = shuffle([...servers]);
    console.error(
      `bench: round ${round}/${options.rounds}: ${order.map(s => s.variant).join(' ')}`,
    );
    for (const server of order) {
      const before = await verify(server);
      const s0 = cpuTicks(server.pid);
      const r0 = await redisCounters(admin);
      const t0 = process.hrtime.bigint();
      const { result, latencies } = await load(server.url, options.duration, options.connections);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const s1 = cpuTicks(server.pid);
      const r1 = await redisCounters(admin);
      const after = await verify(server);
      const requests = result.requests.total;
      const fellBack = after.fallbacks - before.fallbacks;
      const bad = result.non2xx + result.errors + result.timeouts + fellBack;
      if (bad - fellBack > 0)
        problems.push(
          `${server.variant} round ${round}: ${bad - fellBack} non-2xx/errors/timeouts`,
        );
      for (const wrong of [before.wrongSource, after.wrongSource]) {
        if (wrong) problems.push(`round ${round}: ${wrong}`);
      }
      if (fellBack) {
        problems.push(
          `${server.variant} round ${round}: ${after.fallbacks - before.fallbacks} decisions fell back to memory`,
        );
      }
      if (server.variant === 'rrl-breaker-open' && after.breaker !== 'open') {
        problems.push(`rrl-breaker-open round ${round}: breaker ${after.breaker}`);
      }
      const run = {
        round,
        requests,
        rps: requests / seconds,
        p50: percentile(latencies, 50),
        p99: percentile(latencies, 99),
        serverTicks: s1 - s0,
        serverUs: ((s1 - s0) * usPerTick) / requests,
        redisCpuUs: r1.cpuUs - r0.cpuUs,
        redisUs: (r1.cpuUs - r0.cpuUs) / requests,
        perRead: requests / (r1.reads - r0.reads),
        bad,
      };
      if (!usesRedis(server.variant)) redisIdle.push((r1.cpuUs - r0.cpuUs) / seconds);
      runs[server.variant].push(run);
      console.error(
        `  ${server.variant.padEnd(17)} ${fmt(run.rps).padStart(7)} req/s  p50 ${fmt(run.p50, 2)} ms  p99 ${fmt(run.p99, 2)} ms  server ${fmt(run.serverUs, 1)} µs/req` +
          (usesRedis(server.variant) ? `  redis ${fmt(run.redisUs, 2)} µs/req` : ''),
      );
      await sleep(300);
    }
  }

  for (const server of servers) await server.stop();
  // Runs where the variant did not stay on its path (a breaker opened by a
  // starved machine, non-2xx) are left out of every figure and ratio; they
  // stay in the "Every run" table and under Problems.
  /** @type {Record<string, Array<Record<string, number>>>} */
  const stats = Object.fromEntries(
    Object.entries(runs).map(([v, list]) => [v, list.filter(r => r.bad === 0)]),
  );
  const excluded = Object.values(runs).reduce(
    (sum, list) => sum + list.filter(r => r.bad > 0).length,
    0,
  );
  const httpSeconds = (Date.now() - started) / 1000;
  // What a flood of distinct keys costs Redis, ours and the peers', on the same redis-server.
  const memoryStarted = Date.now();
  await runMemoryBench(redis.port, { keys: options.quick ? 2_000 : 10_000, write: options.write });
  const memorySeconds = (Date.now() - memoryStarted) / 1000;
  admin.disconnect();
  await redis.kill();

  /** The peer each variant is compared with: rate-limiter-flexible on the same path. */
  const peerOf = (/** @type {string} */ v) =>
    v.startsWith('bare') ? undefined : usesRedis(v) ? 'rlf-redis' : 'rlf-memory';
  // Per-round ratio to bare of the same round, then the median of those.
  const rows = options.variants.map(variant => {
    const list = stats[variant];
    const ratios = roundRatios(stats, variant, ['bare'], 'serverUs');
    const peer = peerOf(variant);
    const vsPeer = peer && stats[peer] ? roundRatios(stats, variant, [peer], 'serverUs') : [];
    const overBare = list.map(
      r => r.serverUs - (stats.bare.find(b => b.round === r.round)?.serverUs ?? NaN),
    );
    return {
      variant,
      ratios,
      cells: [
        variant,
        medianRange(list.map(r => r.rps)),
        medianRange(
          list.map(r => r.p50),
          2,
        ),
        medianRange(
          list.map(r => r.p99),
          2,
        ),
        medianRange(
          list.map(r => r.serverUs),
          1,
        ),
        variant === 'bare' ? '1.00' : medianRange(ratios, 2),
        variant === 'bare' ? '–' : medianRange(overBare, 1),
        vsPeer.length && variant !== peer
          ? medianRange(vsPeer, 2)
          : variant === peer
            ? '1.00'
            : '–',
        usesRedis(variant)
          ? medianRange(
              list.map(r => r.redisUs),
              2,
            )
          : '–',
        usesRedis(variant)
          ? medianRange(
              list.map(r => r.perRead),
              2,
            )
          : '–',
        headerCount[variant],
        list.reduce((sum, r) => sum + r.bad, 0),
      ],
    };
  });
  const head = [
    'variant',
    'req/s',
    'p50 ms',
    'p99 ms',
    'server CPU µs/req',
    '× bare (CPU)',
    'µs/req over bare',
    '× rlf same path (CPU)',
    'redis CPU µs/req',
    'decisions per redis read()',
    'RL headers',
    'non-2xx + fallbacks',
  ];
  const aa = rows.find(r => r.variant === 'bare-aa');
  const [aaLo, aaHi] = aa ? range(aa.ratios) : [NaN, NaN];
  const info = machineInfo();
  const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z');

  console.log(
    '\n' +
      textTable(
        head,
        rows.map(r => r.cells.map(String)),
      ),
  );
  console.log(
    `\nA/A: bare-aa / bare CPU ratio ${aa ? `${fmt(median(aa.ratios), 2)} (${fmt(aaLo, 2)}–${fmt(aaHi, 2)})` : 'not run'}; ` +
      `redis-server CPU during non-Redis runs: ${fmt(median(redisIdle), 0)} µs/s; HTTP part ${fmt(httpSeconds)} s`,
  );
  if (problems.length) console.log('\nproblems:\n  ' + problems.join('\n  '));

  if (options.write) {
    const rawRows = [];
    for (const variant of options.variants) {
      for (const r of runs[variant]) {
        rawRows.push([
          variant,
          r.round,
          fmt(r.requests),
          fmt(r.rps),
          fmt(r.p50, 2),
          fmt(r.p99, 2),
          r.serverTicks,
          fmt(r.serverUs, 1),
          fmt(r.serverUs / (stats.bare.find(b => b.round === r.round)?.serverUs ?? NaN), 3),
          usesRedis(variant)
            ? `${fmt(r.redisCpuUs)} / ${fmt(r.redisUs, 2)}`
            : `${fmt(r.redisCpuUs)} / –`,
        ]);
      }
    }
    const body = `## HTTP: server CPU per request (\`npm run bench\`, part 1)

- Date: ${date}
- Machine: ${info.nproc} × ${info.model}, Linux ${info.kernel}; Node ${info.node}; redis-server ${redis.version}; CLK_TCK ${tick}
- Command: \`${command}\` (${options.rounds} interleaved rounds × ${options.duration} s per variant, autocannon ${options.connections} connections, pipelining 1, ${options.warmup} s warm-up each; this part took ${fmt(httpSeconds)} s)
- Load generator (autocannon, in the bench process), servers and redis-server share the same ${info.nproc} CPUs, with whatever else the machine runs.

Each cell: median over rounds (min–max). Server CPU µs/req = (utime+stime
of the server process, all threads, from /proc/<pid>/stat) ÷ responses.
"× bare" and "× rlf same path" are medians of per-round ratios to bare
Express / to rate-limiter-flexible on the same path (\`rlf-redis\` for Redis
variants, \`rlf-memory\` for memory ones) in the same round; "µs/req over
bare" is the per-round difference. Redis CPU µs/req = (used_cpu_user +
used_cpu_sys from \`INFO cpu\`, µs resolution) ÷ responses; "decisions
per redis read()" = responses ÷ \`total_reads_processed\` (how many commands
redis-server got per socket read: what pipelining buys). Latency
percentiles are over every response of a round (client-side, ms). "RL
headers" counts rate-limit response headers the variant sends by default.

${markdownTable(
  head,
  rows.map(r => r.cells),
  'lrrrrrrrrrrr',
)}

A/A spread (bare-aa ÷ bare, per round): ${aa ? `median ${fmt(median(aa.ratios), 2)}, range ${fmt(aaLo, 2)}–${fmt(aaHi, 2)}` : 'not run'}.
redis-server CPU while a non-Redis variant ran (idle baseline): median ${fmt(median(redisIdle), 0)} µs per second.
${problems.length ? '\nProblems seen during the run:\n\n' + problems.map(p => `- ${p}`).join('\n') + '\n' : ''}
Variants:

${options.variants.map(v => `- \`${v}\`: ${DESCRIPTIONS[v]}`).join('\n')}

All limits are 10⁹ per hour, so every request takes the allow path; keys are
the client IP (one key). Every limiter keeps its library's defaults
otherwise (all our default headers on).

<details><summary>Every run</summary>

${markdownTable(
  [
    'variant',
    'round',
    'responses',
    'req/s',
    'p50 ms',
    'p99 ms',
    'server ticks',
    'server µs/req',
    '× bare',
    'redis CPU µs / µs/req',
  ],
  rawRows,
  'lrrrrrrrrr',
)}

</details>
`;
    console.log(`\nwrote ${writeSection('run', body)}`);
  }
  if (options.httpOnly) return;

  const childArgs = [
    '--json',
    '--no-build',
    '--parent',
    command,
    ...(options.quick ? ['--quick'] : []),
    ...(options.write ? [] : ['--no-write']),
  ];
  const inprocStarted = Date.now();
  const inproc = await runChild('inproc.mjs', childArgs);
  const inprocSeconds = (Date.now() - inprocStarted) / 1000;
  const scaleStarted = Date.now();
  const scale = await runChild('scale.mjs', childArgs);
  const scaleSeconds = (Date.now() - scaleStarted) / 1000;
  const elapsed = (Date.now() - started) / 1000;

  // The goals table: issue #16's four goals, from the HTTP rounds and the
  // in-process rounds of this run.
  // A/A of the main Redis variant: two identical servers on the README client.
  const aaReadme = (/** @type {string} */ field) =>
    stats['rrl-redis-readme-aa']
      ? medianRange(roundRatios(stats, 'rrl-redis-readme-aa', ['rrl-redis-readme'], field), 2)
      : '–';
  const aaBare = (/** @type {string} */ field) =>
    stats['bare-aa'] ? medianRange(roundRatios(stats, 'bare-aa', ['bare'], field), 2) : '–';
  const aaIn = medianRange(inproc.aaRedis, 2);
  const aaInMem = medianRange(inproc.aaMemory, 2);
  /** @param {number[]} ratios @param {number} target */
  const verdict = (ratios, target) =>
    ratios.length === 0 ? 'not measured' : median(ratios) <= target ? '**met**' : '**not met**';
  /** @param {string} v @param {string} field @param {number} digits */
  const med = (v, field, digits) =>
    stats[v] ? fmt(median(stats[v].map(r => r[field])), digits) : '–';
  const peersRedis = ['rlf-redis', 'erl-redis'].filter(v => stats[v]);
  const peersMemory = ['rlf-memory', 'erl-memory'].filter(v => stats[v]);
  /** The peer with the lower median over the run (fixed for every round, so noise in two peers does not bias the ratio). */
  const best = (/** @type {string[]} */ peers, /** @type {string} */ field) =>
    [...peers].sort(
      (a, b) => median(stats[a].map(r => r[field])) - median(stats[b].map(r => r[field])),
    )[0];
  const bestPeer = (/** @type {string[]} */ peers, /** @type {string} */ field) =>
    peers.length
      ? peers
          .map(
            p =>
              `${p === best(peers, field) ? '**' : ''}${p} ${med(p, field, 2)}${p === best(peers, field) ? '**' : ''}`,
          )
          .join(', ')
      : '–';
  /** @type {Array<Array<string | number>>} */
  const goalRows = [];
  /**
   * @param {string} goal @param {string} ours @param {string} peer
   * @param {number[]} ratios @param {number} target @param {string} aaCell @param {string} where
   */
  const goal = (goal, ours, peer, ratios, target, aaCell, where) =>
    goalRows.push([
      goal,
      where,
      ours,
      peer,
      medianRange(ratios, 2),
      `≤ ${fmt(target, 2)}`,
      aaCell,
      verdict(ratios, target),
    ]);
  for (const v of ['rrl-redis-readme', 'rrl-redis']) {
    if (!stats[v] || !stats['rlf-redis']) continue;
    const label = v === 'rrl-redis-readme' ? 'README client' : 'URL client (quick start)';
    goal(
      `1. Node CPU per request, Redis path, ${label}, default headers ≤ rate-limiter-flexible (Redis + insurance)`,
      `${med(v, 'serverUs', 1)} µs/req`,
      `${med('rlf-redis', 'serverUs', 1)} µs/req`,
      roundRatios(stats, v, ['rlf-redis'], 'serverUs'),
      1,
      aaReadme('serverUs'),
      'HTTP',
    );
  }
  goal(
    '1. Node CPU per request, Redis path, README client ≤ rate-limiter-flexible',
    `${fmt(inproc.medians['rrl-redis-readme']?.nodeUs, 2)} µs/req`,
    `${fmt(inproc.medians['rlf-redis']?.nodeUs, 2)} µs/req`,
    inproc.nodeVsRlfRedis,
    1,
    aaIn,
    'in-process',
  );
  for (const v of ['rrl-redis-readme', 'rrl-redis']) {
    if (!stats[v] || peersRedis.length === 0) continue;
    const label = v === 'rrl-redis-readme' ? 'README client' : 'URL client';
    goal(
      `2. Redis CPU per decision, ${label} ≤ 0.5 × the best peer`,
      `${med(v, 'redisUs', 2)} µs`,
      bestPeer(peersRedis, 'redisUs') + ' µs',
      roundRatios(stats, v, [best(peersRedis, 'redisUs')], 'redisUs'),
      0.5,
      aaReadme('redisUs'),
      'HTTP',
    );
  }
  goal(
    '2. Redis CPU per decision, README client ≤ 0.5 × the best peer (in process: see the note there)',
    `${fmt(inproc.medians['rrl-redis-readme']?.redisUs, 2)} µs`,
    `rlf-redis ${fmt(inproc.medians['rlf-redis']?.redisUs, 2)}, erl-redis ${fmt(inproc.medians['erl-redis']?.redisUs, 2)} µs`,
    inproc.medians['erl-redis']?.redisUs < inproc.medians['rlf-redis']?.redisUs
      ? inproc.redisVsErl
      : inproc.redisVsRlf,
    0.5,
    aaIn,
    'in-process',
  );
  if (stats['rrl-memory'] && stats['rlf-memory']) {
    goal(
      '3. Node CPU per request, memory only, default headers ≤ rate-limiter-flexible memory',
      `${med('rrl-memory', 'serverUs', 1)} µs/req`,
      `${med('rlf-memory', 'serverUs', 1)} µs/req`,
      roundRatios(stats, 'rrl-memory', ['rlf-memory'], 'serverUs'),
      1,
      aaBare('serverUs'),
      'HTTP',
    );
  }
  goal(
    '3. Node CPU per request, memory only ≤ rate-limiter-flexible memory',
    `${fmt(inproc.medians['rrl-memory']?.nodeUs, 2)} µs/req`,
    `${fmt(inproc.medians['rlf-memory']?.nodeUs, 2)} µs/req`,
    inproc.nodeVsRlfMemory,
    1,
    aaInMem,
    'in-process',
  );
  for (const [v, peers] of /** @type {const} */ ([
    ['rrl-redis-readme', peersRedis],
    ['rrl-redis', peersRedis],
    ['rrl-memory', peersMemory],
  ])) {
    if (!stats[v] || peers.length === 0) continue;
    goal(
      `4. p99 under load, ${v} ≤ the best peer on its path`,
      `${med(v, 'p99', 2)} ms`,
      bestPeer(peers, 'p99') + ' ms',
      roundRatios(stats, v, [best(peers, 'p99')], 'p99'),
      1,
      v === 'rrl-memory' ? aaBare('p99') : aaReadme('p99'),
      'HTTP',
    );
  }
  const goalHead = [
    'goal',
    'where',
    'ours (median)',
    'peer (median)',
    'ratio, median (range) of rounds',
    'target',
    'A/A spread',
    'verdict',
  ];
  console.log(
    '\n' +
      textTable(
        goalHead,
        goalRows.map(r => r.map(x => String(x).replaceAll('**', ''))),
      ),
  );
  const sat = scale.saturation
    .map(
      (/** @type {any} */ r) =>
        `${r.name} ${fmt(r.replayed.rate)}/s at ${fmt(r.replayed.redisUtil * 100)} % of a core (${fmt(r.replayed.redisUs, 2)} µs/decision, so ${fmt(1e6 / r.replayed.redisUs)}/s per core)`,
    )
    .join('; ');
  const pol = inproc.pol
    ? `\`policies: [4]\` against 4 stacked middlewares: ${inproc.pol}.`
    : `\`policies: [4]\` ÷ 4 stacked middlewares (node CPU, in-process): Redis ${medianRange(inproc.polVsStack.redis, 2)}, memory ${medianRange(inproc.polVsStack.memory, 2)}.`;
  const allProblems = [...problems, ...inproc.problems, ...scale.problems];
  const goalsBody = `## Goals (issue #16)

- Date: ${date}; machine: ${info.nproc} × ${info.model}, Node ${info.node}, redis-server ${redis.version}
- Command: \`${command}\` — took ${fmt(elapsed)} s: HTTP rounds ${fmt(httpSeconds)} s, Redis memory per key ${fmt(memorySeconds)} s, in-process rounds ${fmt(inprocSeconds)} s, scale figures ${fmt(scaleSeconds)} s.
- Load generator, servers and redis-server share the same ${info.nproc} CPUs (and the machine with other work): compare ratios from the same round, never absolute times across runs.

Every ratio is the median (min–max) of per-round ratios, ours ÷ the peer
in the same round; "best peer" is the peer with the lower median over the
run (in bold), the same one for every round. A goal is met when the median
ratio is at or under its target. The A/A spread is the same ratio between two
identical variants (HTTP: two servers on the README client for Redis goals,
two bare Express servers for memory ones; in-process: two copies of this
package): a ratio inside it cannot be told from noise. HTTP runs in which a
variant left its path (fallbacks, non-2xx) are left out of every figure
(${excluded} of ${options.rounds * options.variants.length} this run; listed under Problems). HTTP: ${options.rounds} rounds,
in-process: ${inproc.aaRedis.length} rounds. Sections below hold every round.

${markdownTable(goalHead, goalRows, 'llllrrll')}

5. Scale figures (no pass/fail; [scale section](#scale-figures-benchscalemjs), [Redis memory per key](#redis-memory-per-limited-key-npm-run-bench-node-benchmemorymjs)):
decisions/s one Redis core sustains (the decision command replayed by redis-benchmark):
${sat}. ${pol}
${allProblems.length ? '\nProblems seen during the run (details in each section):\n\n' + allProblems.map(p => `- ${p}`).join('\n') + '\n' : ''}`;
  if (options.write) console.log(`\nwrote ${writeSection('goals', goalsBody)}`);
  console.log(`\nbench: total ${fmt(elapsed)} s`);
}

/**
 * @template T
 * @param {T[]} list
 */
function shuffle(list) {
  for (let i = list.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [list[i], list[j]] = [list[j], list[i]];
  }
  return list;
}

main().catch(error => {
  console.error(`bench: ${error instanceof Error ? error.stack : error}`);
  process.exitCode = 1;
  process.exit(1);
});
