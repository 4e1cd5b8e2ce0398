// @ts-check
// npm run bench:outage: steady load on one server per variant while its
// Redis is killed, restarted, frozen and resumed; a per-second table of
// what clients saw. Every variant gets its own redis-server and the same
// schedule (seconds from the start of the load):
//
//   0-10 healthy · 10 SIGKILL redis · 18 restart it · 24 SIGSTOP it · 32 SIGCONT · 40 end
//
//   node bench/outage.mjs [--variants rrl-redis,erl-redis,rlf-redis]
//        [--concurrency 20] [--client-timeout 2000] [--half-open-after 2000]
//        [--no-build] [--no-write]
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import {
  ensureBuilt,
  freePort,
  machineInfo,
  sleep,
  startRedis,
  startServer,
} from '../scripts/lib/processes.mjs';
import { fmt, markdownTable, percentile, textTable, writeSection } from './lib/report.mjs';

const ALL = ['rrl-redis', 'erl-redis', 'rlf-redis'];
/** @type {Record<string, string>} */
const DESCRIPTIONS = {
  'rrl-redis':
    'this package, `redis://` URL, failClosed (memory fallback), timeout 100 ms, breaker threshold 5',
  'erl-redis':
    'express-rate-limit + rate-limit-redis, ioredis with default options (offline queue on), passOnStoreError false',
  'rlf-redis':
    'rate-limiter-flexible RateLimiterRedis, ioredis with enableOfflineQueue false, insurance RateLimiterMemory',
};
const END_S = 40;
const SCHEDULE = [
  { at: 10, action: 'kill', label: 'SIGKILL redis' },
  { at: 18, action: 'restart', label: 'restart redis' },
  { at: 24, action: 'stop', label: 'SIGSTOP redis' },
  { at: 32, action: 'cont', label: 'SIGCONT redis' },
];
const PHASES = [
  { from: 0, to: 10, name: 'healthy' },
  { from: 10, to: 18, name: 'killed' },
  { from: 18, to: 24, name: 'restarted' },
  { from: 24, to: 32, name: 'frozen' },
  { from: 32, to: 40, name: 'resumed' },
];

/** @param {string[]} argv */
function parseArgs(argv) {
  const options = {
    variants: ALL,
    concurrency: 20,
    clientTimeout: 2000,
    halfOpenAfter: 2000,
    build: true,
    write: true,
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=');
    const value = () => inline ?? argv[++i];
    if (flag === '--variants') options.variants = value().split(',');
    else if (flag === '--concurrency') options.concurrency = Number(value());
    else if (flag === '--client-timeout') options.clientTimeout = Number(value());
    else if (flag === '--half-open-after') options.halfOpenAfter = Number(value());
    else if (flag === '--no-build') options.build = false;
    else if (flag === '--no-write') options.write = false;
    else throw new Error(`unknown flag ${flag}`);
  }
  for (const v of options.variants) if (!ALL.includes(v)) throw new Error(`unknown variant ${v}`);
  if (!(options.concurrency >= 1 && options.concurrency <= 200))
    throw new Error('--concurrency 1..200');
  if (!(options.clientTimeout >= 100 && options.clientTimeout <= 10_000)) {
    throw new Error('--client-timeout 100..10000');
  }
  return options;
}

/**
 * @typedef {{ ok: number, limited: number, server: number, other: number, timeouts: number,
 *   errors: number, max: number, latencies: number[], sources: Record<string, number> }} Bucket
 */

/** @returns {Bucket} */
const bucket = () => ({
  ok: 0,
  limited: 0,
  server: 0,
  other: 0,
  timeouts: 0,
  errors: 0,
  max: 0,
  latencies: [],
  sources: {},
});

/**
 * One GET with a client timeout; never rejects.
 * @param {http.Agent} agent
 * @param {string} url
 * @param {number} timeoutMs
 * @returns {Promise<{ status: number, source?: string, timedOut: boolean, error?: string }>}
 */
function request(agent, url, timeoutMs) {
  return new Promise(resolve => {
    let settled = false;
    const finish = (
      /** @type {{ status: number, source?: string, timedOut: boolean, error?: string }} */ r,
    ) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const req = http.get(url, { agent }, res => {
      const source = res.headers['x-ratelimit-source'];
      res.resume();
      res.on('end', () =>
        finish({
          status: res.statusCode ?? 0,
          source: typeof source === 'string' ? source : undefined,
          timedOut: false,
        }),
      );
      res.on('error', error => finish({ status: 0, timedOut: false, error: error.message }));
    });
    const timer = setTimeout(() => {
      finish({ status: 0, timedOut: true });
      req.destroy();
    }, timeoutMs);
    req.on('error', error => finish({ status: 0, timedOut: false, error: error.message }));
  });
}

/**
 * Runs the schedule against one variant and returns its per-second buckets.
 * @param {string} variant
 * @param {ReturnType<typeof parseArgs>} options
 */
async function runVariant(variant, options) {
  const redis = await startRedis(await freePort());
  const flags =
    variant === 'rrl-redis' && options.halfOpenAfter > 0
      ? [`--half-open-after=${options.halfOpenAfter}`]
      : [];
  const server = await startServer(variant, redis.port, flags);
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.concurrency });
  /** @type {Bucket[]} */
  const buckets = Array.from({ length: END_S }, bucket);
  /** @type {string[]} */
  const events = [];
  let stopAt = 0;
  let t0 = 0;

  const worker = async () => {
    for (let n = 0; n < 1_000_000; n++) {
      const start = performance.now();
      if (start >= stopAt) return;
      const r = await request(agent, server.url, options.clientTimeout);
      const ms = performance.now() - start;
      const second = Math.floor((start - t0) / 1000);
      if (second < 0 || second >= END_S) continue; // warm-up
      const b = buckets[second];
      if (r.timedOut) b.timeouts++;
      else if (r.error) b.errors++;
      else if (r.status >= 200 && r.status < 300) b.ok++;
      else if (r.status === 429) b.limited++;
      else if (r.status >= 500) b.server++;
      else b.other++;
      if (r.source) b.sources[r.source] = (b.sources[r.source] ?? 0) + 1;
      b.max = Math.max(b.max, ms);
      b.latencies.push(ms);
    }
  };

  try {
    // 1 s of unrecorded warm-up, then the 40 s schedule on the same workers.
    const warmStart = performance.now();
    t0 = warmStart + 1000;
    stopAt = t0 + END_S * 1000;
    const workers = Array.from({ length: options.concurrency }, worker);
    const timers = SCHEDULE.map(step =>
      setTimeout(
        async () => {
          const at = ((performance.now() - t0) / 1000).toFixed(2);
          try {
            if (step.action === 'kill') await redis.kill();
            else if (step.action === 'restart') await redis.restart();
            else if (step.action === 'stop') redis.signal('SIGSTOP');
            else redis.signal('SIGCONT');
            events.push(`${at} s ${step.label}`);
          } catch (error) {
            events.push(
              `${at} s ${step.label} FAILED: ${error instanceof Error ? error.message : error}`,
            );
          }
        },
        t0 + step.at * 1000 - performance.now(),
      ),
    );
    await Promise.all(workers);
    timers.forEach(clearTimeout);
  } finally {
    agent.destroy();
    await server.stop();
    await redis.kill();
  }
  return { buckets, events, stderr: server.stderr.join('').trim() };
}

/** @param {number} second */
const phaseOf = second => PHASES.find(p => second >= p.from && second < p.to)?.name ?? '';

/**
 * @param {string} variant
 * @param {Bucket[]} buckets
 */
function perSecondRows(variant, buckets) {
  return buckets.map((b, s) => {
    const row = [
      `${s}`,
      phaseOf(s),
      fmt(b.ok),
      fmt(b.limited),
      fmt(b.server),
      fmt(b.timeouts),
      fmt(b.errors + b.other),
      fmt(b.max, 1),
    ];
    if (variant === 'rrl-redis')
      row.push(
        `${fmt(b.sources.redis ?? 0)} / ${fmt(b.sources.memory ?? 0)} / ${fmt(b.sources.bypass ?? 0)}`,
      );
    return row;
  });
}

/** @param {Bucket[]} buckets */
function phaseRows(buckets) {
  return PHASES.map(p => {
    const slice = buckets.slice(p.from, p.to);
    const sum = (/** @type {(b: Bucket) => number} */ f) => slice.reduce((n, b) => n + f(b), 0);
    const latencies = slice.flatMap(b => b.latencies);
    return [
      `${p.name} (${p.from}–${p.to} s)`,
      fmt(sum(b => b.ok)),
      fmt(sum(b => b.limited)),
      fmt(sum(b => b.server)),
      fmt(sum(b => b.timeouts)),
      fmt(sum(b => b.errors + b.other)),
      fmt(percentile(latencies, 99), 1),
      fmt(Math.max(0, ...slice.map(b => b.max)), 1),
    ];
  });
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const started = Date.now();
  ensureBuilt(options.build);
  /** @type {Record<string, Awaited<ReturnType<typeof runVariant>>>} */
  const results = {};
  for (const variant of options.variants) {
    console.error(
      `outage: ${variant}: ${END_S} s under load (${SCHEDULE.map(s => `${s.at} s ${s.label}`).join(', ')})`,
    );
    results[variant] = await runVariant(variant, options);
    await sleep(500);
  }
  const elapsed = (Date.now() - started) / 1000;

  const secondHead = [
    's',
    'phase',
    '2xx',
    '429',
    '5xx',
    'client timeouts',
    'conn errors',
    'max ms',
  ];
  const phaseHead = [
    'phase',
    '2xx',
    '429',
    '5xx',
    'client timeouts',
    'conn errors',
    'p99 ms',
    'max ms',
  ];
  /** @type {string[]} */
  const markdown = [];
  for (const variant of options.variants) {
    const { buckets, events, stderr } = results[variant];
    const head =
      variant === 'rrl-redis' ? [...secondHead, 'source redis / memory / bypass'] : secondHead;
    const rows = perSecondRows(variant, buckets);
    console.log(`\n${variant}: ${DESCRIPTIONS[variant]}\nevents: ${events.join('; ')}\n`);
    console.log(textTable(phaseHead, phaseRows(buckets)));
    console.log('\n' + textTable(head, rows));
    markdown.push(`### \`${variant}\`

${DESCRIPTIONS[variant]}. Events (s from start): ${events.join('; ')}.

${markdownTable(phaseHead, phaseRows(buckets), 'lrrrrrrr')}

<details><summary>Per second</summary>

${markdownTable(head, rows, 'rlrrrrrrr')}

</details>
${stderr ? `\nServer stderr (tail):\n\n\`\`\`\n${stderr.slice(-1500)}\n\`\`\`\n` : ''}`);
  }
  console.log(`\ntotal ${fmt(elapsed)} s`);
  if (!options.write) return;

  const info = machineInfo();
  const body = `## Redis outage under load (\`npm run bench:outage\`)

- Date: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}
- Machine: ${info.nproc} × ${info.model}; Node ${info.node}
- Command: \`node bench/outage.mjs${process.argv.length > 2 ? ' ' + process.argv.slice(2).join(' ') : ''}\` (took ${fmt(elapsed)} s)

Each variant in turn gets its own redis-server and ${options.concurrency} client loops (keep-alive,
one request at a time each, ${options.clientTimeout} ms client timeout) for ${END_S} s after 1 s of warm-up:
0–10 s healthy, 10 s SIGKILL redis, 18 s restart it on the same port, 24 s
SIGSTOP, 32 s SIGCONT. Requests are counted in the second they were sent, so one
sent at 9.9 s that hangs once Redis dies shows up under "healthy".
${options.variants.includes('rrl-redis') ? `\`rrl-redis\` runs with \`breaker: { halfOpenAfter: ${options.halfOpenAfter || 30_000} }\`${options.halfOpenAfter ? ' (the default 30 s would keep the breaker open from the kill past the freeze, so the freeze would not be seen)' : ''}; all limits are 10⁹ per hour, so a 429 is a fallback that limits too hard.` : ''}

${markdown.join('\n')}`;
  console.log(`\nwrote ${writeSection('outage', body)}`);
}

main()
  .then(() => process.exit(0))
  .catch(error => {
    console.error(`outage: ${error instanceof Error ? error.stack : error}`);
    process.exit(1);
  });
