// @ts-check
// npm run bench: server CPU per request of this package against bare Express
// and the peers, each in its own process, driven by autocannon in interleaved
// rounds against a private redis-server, then Redis memory per limited key
// (bench/memory.mjs). See BENCHMARKS.md for a result.
//
//   node bench/run.mjs [--rounds 5] [--duration 5] [--connections 20]
//                      [--warmup 2] [--variants a,b] [--no-build] [--no-write]
import http from 'node:http';
// @ts-expect-error -- autocannon ships no type declarations
import autocannon from 'autocannon';
import {
  clkTck,
  cpuTicks,
  ensureBuilt,
  freePort,
  machineInfo,
  sleep,
  startRedis,
  startServer,
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
import { VARIANTS } from './lib/variants.mjs';
import { runMemoryBench } from './memory.mjs';

const ALL_VARIANTS = VARIANTS;
const USES_REDIS = new Set(['rrl-redis', 'rrl-share-redis', 'erl-redis', 'rlf-redis']);
// What X-RateLimit-Source must say for our variants (checked before and after each run).
/** @type {Record<string, string>} */
const EXPECTED_SOURCE = {
  'rrl-memory': 'memory',
  'rrl-redis': 'redis',
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
  'rrl-redis': 'this package, `redis://` URL',
  'rrl-share-redis':
    "as rrl-redis with `fallbackLimit: 'share'` (instance registry refreshed once a second; must match rrl-redis)",
  'rrl-breaker-open': 'this package, Redis down, breaker open, memory fallback decides',
  'erl-memory': 'express-rate-limit, default MemoryStore',
  'erl-redis': 'express-rate-limit + rate-limit-redis (ioredis `call`)',
  'rlf-memory': 'rate-limiter-flexible RateLimiterMemory',
  'rlf-redis': 'rate-limiter-flexible RateLimiterRedis + insurance RateLimiterMemory',
};

/** @param {string[]} argv */
function parseArgs(argv) {
  const options = {
    rounds: 5,
    duration: 5,
    connections: 20,
    warmup: 2,
    variants: ALL_VARIANTS,
    build: true,
    write: true,
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
    else throw new Error(`unknown flag ${flag}`);
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
 * Checks the variant answers 200 and, for ours, decides where it should.
 * @param {{ variant: string, url: string }} server
 */
async function verify(server) {
  const res = await get(server.url);
  if (res.status !== 200) throw new Error(`${server.variant}: GET / answered ${res.status}`);
  const expected = EXPECTED_SOURCE[server.variant];
  const source = res.headers['x-ratelimit-source'];
  if (expected && source !== expected) {
    throw new Error(`${server.variant}: X-RateLimit-Source is ${source}, expected ${expected}`);
  }
  const state = JSON.parse((await get(server.url + '__bench')).body);
  return {
    headers: Object.keys(res.headers).filter(h => /ratelimit|retry-after/i.test(h)).length,
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

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const started = Date.now();
  ensureBuilt(options.build);
  const tick = clkTck();
  const usPerTick = 1e6 / tick;

  const redis = await startRedis(await freePort());
  const deadPort = await freePort();
  /** @type {Awaited<ReturnType<typeof startServer>>[]} */
  const servers = [];
  for (const variant of options.variants) {
    const port = variant === 'rrl-breaker-open' ? deadPort : redis.port;
    servers.push(
      await startServer(
        variant,
        variant.endsWith('redis') || variant === 'rrl-breaker-open' ? port : undefined,
      ),
    );
  }
  /** @type {Record<string, number>} */
  const headerCount = {};
  for (const server of servers) headerCount[server.variant] = (await verify(server)).headers;
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
  /** @type {string[]} */
  const problems = [];
  for (let round = 1; round <= options.rounds; round++) {
    const order = shuffle([...servers]);
    console.error(
      `bench: round ${round}/${options.rounds}: ${order.map(s => s.variant).join(' ')}`,
    );
    for (const server of order) {
      const before = await verify(server);
      const s0 = cpuTicks(server.pid);
      const r0 = cpuTicks(redis.pid);
      const t0 = process.hrtime.bigint();
      const { result, latencies } = await load(server.url, options.duration, options.connections);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const s1 = cpuTicks(server.pid);
      const r1 = cpuTicks(redis.pid);
      const after = await verify(server);
      const requests = result.requests.total;
      const bad = result.non2xx + result.errors + result.timeouts;
      if (bad > 0)
        problems.push(`${server.variant} round ${round}: ${bad} non-2xx/errors/timeouts`);
      if (after.fallbacks !== before.fallbacks) {
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
        redisTicks: r1 - r0,
        redisUs: ((r1 - r0) * usPerTick) / requests,
        bad,
      };
      if (!USES_REDIS.has(server.variant)) redisIdle.push((r1 - r0) / seconds);
      runs[server.variant].push(run);
      console.error(
        `  ${server.variant.padEnd(17)} ${fmt(run.rps).padStart(7)} req/s  p50 ${fmt(run.p50, 2)} ms  p99 ${fmt(run.p99, 2)} ms  server ${fmt(run.serverUs, 1)} µs/req` +
          (USES_REDIS.has(server.variant) ? `  redis ${fmt(run.redisUs, 1)} µs/req` : ''),
      );
      await sleep(300);
    }
  }

  for (const server of servers) await server.stop();
  // What a flood of distinct keys costs Redis, on the same redis-server.
  await runMemoryBench(redis.port, { keys: 10_000, write: options.write });
  await redis.kill();

  // Per-round ratio to bare of the same round, then the median of those.
  const bareByRound = Object.fromEntries(runs.bare.map(r => [r.round, r.serverUs]));
  const rows = options.variants.map(variant => {
    const list = runs[variant];
    const ratios = list.map(r => r.serverUs / bareByRound[r.round]);
    const redisCell = USES_REDIS.has(variant)
      ? medianRange(
          list.map(r => r.redisUs),
          1,
        )
      : '–';
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
        redisCell,
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
    'redis CPU µs/req',
    'RL headers',
    'non-2xx',
  ];
  const aa = rows.find(r => r.variant === 'bare-aa');
  const [aaLo, aaHi] = aa ? range(aa.ratios) : [NaN, NaN];
  const info = machineInfo();
  const elapsed = (Date.now() - started) / 1000;
  const command = `node bench/run.mjs ${process.argv.slice(2).join(' ')}`.trim();
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
      `redis-server idle during non-Redis runs: ${fmt(median(redisIdle), 1)} ticks/s; total ${fmt(elapsed)} s`,
  );
  if (problems.length) console.log('\nproblems:\n  ' + problems.join('\n  '));

  if (!options.write) return;
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
        fmt(r.serverUs / bareByRound[r.round], 3),
        USES_REDIS.has(variant) ? `${r.redisTicks} / ${fmt(r.redisUs, 1)}` : `${r.redisTicks} / –`,
      ]);
    }
  }
  const body = `## HTTP: server CPU per request (\`npm run bench\`)

- Date: ${date}
- Machine: ${info.nproc} × ${info.model}, Linux ${info.kernel}; Node ${info.node}; redis-server ${redis.version}; CLK_TCK ${tick}
- Command: \`${command}\` (${options.rounds} interleaved rounds × ${options.duration} s per variant, autocannon ${options.connections} connections, pipelining 1, ${options.warmup} s warm-up each; took ${fmt(elapsed)} s)
- Load generator, servers and redis-server share the same ${info.nproc} CPUs.

Each cell: median over rounds (min–max). CPU µs/req = (utime+stime of the
process, all threads, from /proc/<pid>/stat) ÷ responses. "× bare" is the
median of per-round ratios to the bare server's CPU µs/req in the same round.
Latency percentiles are over every response of a round (client-side, ms).
"RL headers" counts rate-limit response headers the variant sends by default.

${markdownTable(
  head,
  rows.map(r => r.cells),
  'lrrrrrrrr',
)}

A/A spread (bare-aa ÷ bare, per round): ${aa ? `median ${fmt(median(aa.ratios), 2)}, range ${fmt(aaLo, 2)}–${fmt(aaHi, 2)}` : 'not run'}.
redis-server CPU while a non-Redis variant ran (idle baseline): median ${fmt(median(redisIdle), 1)} ticks/s.
${problems.length ? '\nProblems seen during the run:\n\n' + problems.map(p => `- ${p}`).join('\n') + '\n' : ''}
Variants:

${options.variants.map(v => `- \`${v}\`: ${DESCRIPTIONS[v]}`).join('\n')}

All limits are 10⁹ per hour, so every request takes the allow path; keys are
the client IP (one key). Peers run with their README defaults.

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
    'redis ticks / µs/req',
  ],
  rawRows,
  'lrrrrrrrrr',
)}

</details>
`;
  console.log(`\nwrote ${writeSection('run', body)}`);
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
