// @ts-check
// The full middleware in one process, ours beside the peers' (issue #16):
// Node CPU per request and Redis CPU per decision, in interleaved rounds with
// an A/A control (two identical copies of this package on the README client),
// plus 1 rule against 4 rules per request (4 stacked middlewares, and
// `policies: [4]` where the build has it). Steadier than HTTP: no sockets, no
// Express, no load generator; fake req/res (bench/lib/driver.mjs).
//
//   node --expose-gc bench/inproc.mjs [--rounds 8] [--ms 1000] [--memory-ms 300] [--concurrency 50]
//                                     [--quick] [--no-build] [--no-write] [--json]
//
// Run by `npm run bench` after its HTTP rounds (with --json: the last stdout
// line is the summary the goals table reads). Takes about 2 minutes.
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { rateLimit as erlRateLimit } from 'express-rate-limit';
import { RedisStore as ErlRedisStore } from 'rate-limit-redis';
import { RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible';
import { isRateLimitConfigError, rateLimit } from 'resilient-rate-limit';
import { ensureBuilt, freePort, machineInfo, startRedis } from '../scripts/lib/processes.mjs';
import { chain, drive, processCpuUs, redisCounters, request } from './lib/driver.mjs';
import { buildReadmeClient, readmeSnippetDrift } from './lib/readme-client.mjs';
import {
  fmt,
  markdownTable,
  median,
  medianRange,
  percentile,
  textTable,
  writeSection,
} from './lib/report.mjs';

const LIMIT = 1_000_000_000;
const WINDOW_MS = 3_600_000;
/** The four rules of the "4 rules" variants (all far above what the bench sends). */
const RULE_WINDOWS = ['1m', '1h', '1d', '7d'];
const quiet = { warn() {}, info() {}, error() {} };
const gc = /** @type {(() => void) | undefined} */ (globalThis.gc);

/** @param {string[]} argv */
function parseArgs(argv) {
  const quick = argv.includes('--quick');
  const options = {
    rounds: quick ? 3 : 8,
    ms: quick ? 200 : 1000,
    memoryMs: quick ? 100 : 300,
    concurrency: 50,
    build: true,
    write: true,
    json: false,
    quick,
    parent: '',
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=');
    const value = () => inline ?? argv[++i];
    if (flag === '--rounds') options.rounds = Number(value());
    else if (flag === '--ms') options.ms = Number(value());
    else if (flag === '--memory-ms') options.memoryMs = Number(value());
    else if (flag === '--concurrency') options.concurrency = Number(value());
    else if (flag === '--no-build') options.build = false;
    else if (flag === '--no-write') options.write = false;
    else if (flag === '--json') options.json = true;
    else if (flag === '--parent') options.parent = value();
    else if (flag !== '--quick') throw new Error(`unknown flag ${flag}`);
  }
  return options;
}

/**
 * The rate-limiter-flexible Express middleware (its docs), store errors passed on.
 * @param {import('rate-limiter-flexible').RateLimiterAbstract} limiter
 */
const rlfMiddleware =
  limiter => (/** @type {any} */ req, /** @type {any} */ res, /** @type {Function} */ next) => {
    limiter
      .consume(req.ip)
      .then(() => next())
      .catch(rejection => {
        if (rejection instanceof Error) next(rejection);
        else res.status(429).send('Too Many Requests');
      });
  };

/**
 * `policies: [4]` on this build, or why not. Tried without and with a
 * top-level limit/window; an unknown-option error for `policies` means the
 * build does not have it.
 * @param {Record<string, unknown>} extra
 */
function tryPolicies(extra) {
  const policies = RULE_WINDOWS.map((window, i) => ({ name: `p${i + 1}`, limit: LIMIT, window }));
  /** @type {unknown} */
  let last;
  for (const top of [{}, { limit: LIMIT, window: WINDOW_MS }]) {
    try {
      return { mw: rateLimit(/** @type {any} */ ({ policies, ...top, ...extra })) };
    } catch (error) {
      last = error;
      if (isRateLimitConfigError(error) && /** @type {any} */ (error).option === 'policies') break;
    }
  }
  return {
    na: `n/a (not available in this build: ${last instanceof Error ? last.message : String(last)})`,
  };
}

/**
 * @typedef {{
 *   name: string, description: string, mw?: Function, na?: string,
 *   redis: boolean, source?: string, family: string, rules: number,
 *   fallbacks?: () => number,
 * }} Variant
 */

/**
 * @param {string} url
 * @returns {Promise<{ variants: Variant[], close: () => Promise<void> }>}
 */
async function buildVariants(url) {
  /** @type {Array<() => unknown>} */
  const closers = [];
  /** @type {Variant[]} */
  const variants = [];
  const readyClient = async (/** @type {Redis} */ client) => {
    if (client.status !== 'ready') await once(client, 'ready');
    closers.push(() => client.disconnect());
    return client;
  };
  /** @param {any} mw */
  const counted = mw => {
    let n = 0;
    mw.limiter.on('fallback', () => n++);
    closers.push(() => mw.limiter.close());
    return () => n;
  };
  /**
   * @param {string} name
   * @param {string} description
   * @param {Redis | string | undefined} redis
   * @param {number} rules 1 or 4 stacked
   */
  const ours = (name, description, redis, rules = 1) => {
    const list = RULE_WINDOWS.slice(0, rules).map((window, i) =>
      rateLimit({
        name: rules === 1 ? name : `${name}-r${i + 1}`,
        limit: LIMIT,
        window: rules === 1 ? WINDOW_MS : window,
        redis,
        logger: quiet,
      }),
    );
    const fallbacks = list.map(counted);
    variants.push({
      name,
      description,
      mw: chain(list),
      redis: redis !== undefined,
      source: redis !== undefined ? 'redis' : 'memory',
      family: redis !== undefined ? 'rrl-redis' : 'rrl-memory',
      rules,
      fallbacks: () => fallbacks.reduce((sum, f) => sum + f(), 0),
    });
  };

  // Redis path.
  const readme = await readyClient(buildReadmeClient(url, quiet));
  ours(
    'rrl-redis-readme',
    'this package, client built as README "Recommended ioredis settings"',
    readme,
  );
  const readme2 = await readyClient(buildReadmeClient(url, quiet));
  ours(
    'rrl-redis-readme-aa',
    'a second, identical copy of rrl-redis-readme (A/A control)',
    readme2,
  );
  ours('rrl-redis', 'this package, `redis://` URL (the quick start)', url);
  const plain = await readyClient(new Redis(url).on('error', () => undefined));
  ours(
    'rrl-redis-plain',
    'this package, `new Redis(url)` + error listener (settings skipped)',
    plain,
  );

  const rlfClient = await readyClient(new Redis(url, { enableOfflineQueue: false }));
  const rlfRedis = (/** @type {string} */ prefix) =>
    new RateLimiterRedis({
      storeClient: rlfClient,
      keyPrefix: prefix,
      points: LIMIT,
      duration: WINDOW_MS / 1000,
      insuranceLimiter: new RateLimiterMemory({ points: LIMIT, duration: WINDOW_MS / 1000 }),
    });
  variants.push({
    name: 'rlf-redis',
    description:
      'rate-limiter-flexible RateLimiterRedis + insurance RateLimiterMemory, `new Redis(url, { enableOfflineQueue: false })`',
    mw: rlfMiddleware(rlfRedis('rlflx')),
    redis: true,
    family: 'rlf-redis',
    rules: 1,
  });
  const erlClient = await readyClient(new Redis(url).on('error', () => undefined));
  const erlStore = new ErlRedisStore({
    // @ts-expect-error ioredis `call` returns Promise<unknown>
    sendCommand: (command, ...args) => erlClient.call(command, ...args),
  });
  variants.push({
    name: 'erl-redis',
    description: 'express-rate-limit + rate-limit-redis, `new Redis(url)`',
    mw: erlRateLimit({ windowMs: WINDOW_MS, limit: LIMIT, store: erlStore, validate: false }),
    redis: true,
    family: 'erl-redis',
    rules: 1,
  });

  // Memory only.
  ours('rrl-memory', 'this package, memory only', undefined);
  ours('rrl-memory-aa', 'a second, identical copy of rrl-memory (A/A control)', undefined);
  variants.push({
    name: 'rlf-memory',
    description: 'rate-limiter-flexible RateLimiterMemory',
    mw: rlfMiddleware(new RateLimiterMemory({ points: LIMIT, duration: WINDOW_MS / 1000 })),
    redis: false,
    family: 'rlf-memory',
    rules: 1,
  });
  variants.push({
    name: 'erl-memory',
    description: 'express-rate-limit, default MemoryStore',
    mw: erlRateLimit({ windowMs: WINDOW_MS, limit: LIMIT, validate: false }),
    redis: false,
    family: 'erl-memory',
    rules: 1,
  });

  // 4 rules per request.
  const readme4 = await readyClient(buildReadmeClient(url, quiet));
  ours('rrl-redis-4mw', 'this package, README client, 4 stacked middlewares', readme4, 4);
  ours('rrl-memory-4mw', 'this package, memory only, 4 stacked middlewares', undefined, 4);
  for (const [name, redis] of /** @type {const} */ ([
    ['rrl-redis-4pol', await readyClient(buildReadmeClient(url, quiet))],
    ['rrl-memory-4pol', undefined],
  ])) {
    const built = tryPolicies({ name, redis, logger: quiet });
    const description = `this package, ${redis ? 'README client' : 'memory only'}, one middleware with \`policies: [4]\``;
    if (built.mw) {
      const fallbacks = counted(built.mw);
      variants.push({
        name,
        description,
        mw: built.mw,
        redis: redis !== undefined,
        source: redis !== undefined ? 'redis' : 'memory',
        family: redis ? 'rrl-redis' : 'rrl-memory',
        rules: 4,
        fallbacks,
      });
    } else {
      variants.push({
        name,
        description,
        na: built.na,
        redis: redis !== undefined,
        family: redis ? 'rrl-redis' : 'rrl-memory',
        rules: 4,
      });
    }
  }
  variants.push({
    name: 'rlf-redis-4mw',
    description: 'rate-limiter-flexible Redis + insurance, 4 stacked middlewares (one client)',
    mw: chain([1, 2, 3, 4].map(i => rlfMiddleware(rlfRedis(`rlflx${i}`)))),
    redis: true,
    family: 'rlf-redis',
    rules: 4,
  });
  variants.push({
    name: 'rlf-memory-4mw',
    description: 'rate-limiter-flexible RateLimiterMemory, 4 stacked middlewares',
    mw: chain(
      [1, 2, 3, 4].map(i =>
        rlfMiddleware(
          new RateLimiterMemory({
            keyPrefix: `m${i}`,
            points: LIMIT,
            duration: WINDOW_MS / 1000,
          }),
        ),
      ),
    ),
    redis: false,
    family: 'rlf-memory',
    rules: 4,
  });
  return {
    variants,
    close: async () => {
      for (const close of closers) await close();
    },
  };
}

/**
 * @param {string[]} argv
 */
export async function runInproc(argv) {
  const options = parseArgs(argv);
  const started = Date.now();
  ensureBuilt(options.build);
  /** @type {string[]} */
  const problems = [];
  const drift = readmeSnippetDrift();
  if (drift) problems.push(drift);
  if (!gc) problems.push('run with --expose-gc: no gc() between runs');

  const redis = await startRedis(await freePort());
  const url = `redis://127.0.0.1:${redis.port}`;
  const admin = new Redis(redis.port, '127.0.0.1');
  const { variants, close } = await buildVariants(url);
  const live = variants.filter(v => v.mw);

  // Each variant answers, from where it should; then a warm-up (JIT, script load).
  for (const v of live) {
    const { outcome, res } = await request(/** @type {Function} */ (v.mw));
    if (outcome !== 'next') throw new Error(`${v.name}: first request answered ${res.statusCode}`);
    const source = res.getHeader('x-ratelimit-source');
    if (v.source && source !== v.source) {
      throw new Error(`${v.name}: X-RateLimit-Source ${String(source)}, expected ${v.source}`);
    }
  }
  console.error(`inproc: redis-server ${redis.version}; ${live.length} variants; warm-up`);
  for (const v of live) {
    const mw = /** @type {Function} */ (v.mw);
    await drive(() => request(mw), {
      ms: options.quick ? 100 : 300,
      concurrency: options.concurrency,
    });
  }

  /** @type {Record<string, Array<{ round: number, requests: number, nodeUs: number, redisUs: number, perRead: number, p50: number, p99: number, bad: number }>>} */
  const runs = Object.fromEntries(live.map(v => [v.name, []]));
  for (let round = 1; round <= options.rounds; round++) {
    const order = shuffle([...live]);
    console.error(`inproc: round ${round}/${options.rounds}`);
    for (const v of order) {
      const mw = /** @type {Function} */ (v.mw);
      gc?.();
      const before = v.fallbacks?.() ?? 0;
      let notNext = 0;
      const r0 = await redisCounters(admin);
      const c0 = processCpuUs();
      const result = await drive(
        async () => {
          if ((await request(mw)).outcome !== 'next') notNext++;
        },
        {
          ms: v.redis ? options.ms : options.memoryMs,
          concurrency: options.concurrency,
          latencies: true,
        },
      );
      const c1 = processCpuUs();
      const r1 = await redisCounters(admin);
      const lat = /** @type {Float64Array} */ (result.latencies);
      const fellBack = (v.fallbacks?.() ?? 0) - before;
      const bad = result.errors + notNext + fellBack;
      if (bad > 0) {
        problems.push(
          `${v.name} round ${round}: ${result.errors} errors, ${notNext} not admitted, ${fellBack} fallbacks` +
            (result.firstError ? ` (${String(result.firstError)})` : ''),
        );
      }
      const run = {
        round,
        requests: result.done,
        nodeUs: (c1 - c0) / result.done,
        redisUs: v.redis ? (r1.cpuUs - r0.cpuUs) / result.done : NaN,
        perRead: v.redis ? result.done / (r1.reads - r0.reads) : NaN,
        p50: percentile(lat, 50),
        p99: percentile(lat, 99),
        bad,
      };
      runs[v.name].push(run);
      console.error(
        `  ${v.name.padEnd(20)} ${fmt(result.done).padStart(7)} req  node ${fmt(run.nodeUs, 2)} µs/req` +
          (v.redis ? `  redis ${fmt(run.redisUs, 2)} µs/req, ${fmt(run.perRead, 1)}/read` : '') +
          `  p99 ${fmt(run.p99, 2)} ms`,
      );
    }
  }
  admin.disconnect();
  await close();
  await redis.kill();
  const elapsed = (Date.now() - started) / 1000;

  // Runs that left their path (fallbacks, errors, 429) are left out of every
  // figure and ratio; they stay in "Every run" and under Problems.
  const stats = Object.fromEntries(
    Object.entries(runs).map(([name, list]) => [name, list.filter(r => r.bad === 0)]),
  );
  const excluded = Object.values(runs).reduce(
    (sum, list) => sum + list.filter(r => r.bad > 0).length,
    0,
  );
  /**
   * Per-round ratio of `a` to `b` on `field`.
   * @param {string} a @param {string} b @param {'nodeUs' | 'redisUs' | 'p99'} field
   */
  const ratios = (a, b, field = 'nodeUs') => {
    const byRound = Object.fromEntries((stats[b] ?? []).map(r => [r.round, r[field]]));
    return (stats[a] ?? []).map(r => r[field] / byRound[r.round]).filter(x => Number.isFinite(x));
  };
  /** The reference each variant is compared with: the rate-limiter-flexible variant of its path. */
  const refOf = (/** @type {Variant} */ v) => (v.redis ? 'rlf-redis' : 'rlf-memory');

  const head = [
    'variant',
    'node CPU µs/req',
    '× rlf (node CPU)',
    'redis CPU µs/decision',
    '× rlf (redis CPU)',
    'decisions per redis read()',
    'p99 ms',
    'problems',
  ];
  const mainRows = variants
    .filter(v => v.rules === 1)
    .map(v => {
      const list = stats[v.name] ?? [];
      return [
        v.name,
        medianRange(
          list.map(r => r.nodeUs),
          2,
        ),
        medianRange(ratios(v.name, refOf(v)), 2),
        v.redis
          ? medianRange(
              list.map(r => r.redisUs),
              2,
            )
          : '–',
        v.redis ? medianRange(ratios(v.name, refOf(v), 'redisUs'), 2) : '–',
        v.redis
          ? medianRange(
              list.map(r => r.perRead),
              2,
            )
          : '–',
        medianRange(
          list.map(r => r.p99),
          2,
        ),
        (runs[v.name] ?? []).reduce((sum, r) => sum + r.bad, 0),
      ];
    });
  const aaRedis = ratios('rrl-redis-readme-aa', 'rrl-redis-readme');
  const aaMemory = ratios('rrl-memory-aa', 'rrl-memory');

  const ruleHead = [
    'variant',
    'rules',
    'node CPU µs/req',
    '× same family, 1 rule (node CPU)',
    'redis CPU µs/req',
    '× 1 rule (redis CPU)',
  ];
  const oneRule = /** @type {Record<string, string>} */ ({
    'rrl-redis': 'rrl-redis-readme',
    'rrl-memory': 'rrl-memory',
    'rlf-redis': 'rlf-redis',
    'rlf-memory': 'rlf-memory',
  });
  const ruleRows = variants
    .filter(v => oneRule[v.family] && (v.rules === 4 || v.name === oneRule[v.family]))
    .sort((a, b) => a.family.localeCompare(b.family) || a.rules - b.rules)
    .map(v => {
      if (v.na) return [v.name, v.rules, v.na, '–', '–', '–'];
      const list = stats[v.name] ?? [];
      const ref = oneRule[v.family];
      return [
        v.name,
        v.rules,
        medianRange(
          list.map(r => r.nodeUs),
          2,
        ),
        v.name === ref ? '1.00' : medianRange(ratios(v.name, ref), 2),
        v.redis
          ? medianRange(
              list.map(r => r.redisUs),
              2,
            )
          : '–',
        v.redis ? (v.name === ref ? '1.00' : medianRange(ratios(v.name, ref, 'redisUs'), 2)) : '–',
      ];
    });
  const pol4 = variants.find(v => v.name === 'rrl-redis-4pol');
  const polVsStack = pol4?.mw
    ? {
        redis: ratios('rrl-redis-4pol', 'rrl-redis-4mw'),
        memory: ratios('rrl-memory-4pol', 'rrl-memory-4mw'),
      }
    : undefined;

  console.log(
    '\n' +
      textTable(
        head,
        mainRows.map(r => r.map(String)),
      ),
  );
  console.log(
    '\n' +
      textTable(
        ruleHead,
        ruleRows.map(r => r.map(String)),
      ),
  );
  console.log(
    `\nA/A (node CPU, per round): redis ${medianRange(aaRedis, 2)}, memory ${medianRange(aaMemory, 2)}; total ${fmt(elapsed)} s`,
  );
  if (problems.length) console.log('\nproblems:\n  ' + problems.join('\n  '));

  const info = machineInfo();
  const command =
    options.parent ||
    `node --expose-gc bench/inproc.mjs ${argv.filter(a => a !== '--json').join(' ')}`.trim();
  const rawRows = [];
  for (const v of live) {
    for (const r of runs[v.name]) {
      rawRows.push([
        v.name,
        r.round,
        fmt(r.requests),
        fmt(r.nodeUs, 2),
        fmt(r.nodeUs / (runs[refOf(v)].find(x => x.round === r.round)?.nodeUs ?? NaN), 3),
        v.redis ? fmt(r.redisUs, 2) : '–',
        fmt(r.p50, 3),
        fmt(r.p99, 3),
        r.bad,
      ]);
    }
  }
  const body = `## In-process: the full middleware beside the peers' (\`bench/inproc.mjs\`)

- Date: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}
- Machine: ${info.nproc} × ${info.model}; Node ${info.node}; redis-server ${redis.version}
- Command: \`${command}\` (${options.rounds} interleaved rounds × ${options.ms} ms per Redis variant, ${options.memoryMs} ms per memory one, ${options.concurrency} requests in flight, gc() before each run; took ${fmt(elapsed)} s)
- This process and redis-server share the same ${info.nproc} CPUs with nothing else of the bench running.

Each request is a fresh fake \`req\` (IP 127.0.0.1: one key) and a fake
\`res\` that stores headers as Node does; the middleware runs until it calls
\`next()\`. Node CPU = \`process.cpuUsage()\` of this process (all threads,
GC included) ÷ requests; Redis CPU = \`used_cpu_user + used_cpu_sys\` from
\`INFO cpu\` ÷ requests. "× rlf" is the median (min–max) of per-round ratios to
rate-limiter-flexible's middleware on the same path (Redis + insurance, or
memory) in the same round. p99 is per request, in process (ms). Runs in
which a variant left its path (fallbacks, errors) are left out of every
figure (${excluded} of ${live.length * options.rounds} this run; "problems" counts their bad
requests, the runs are under Problems and in "Every run").

Redis CPU per decision here is not the HTTP figure: the ${options.concurrency} loops start
their next requests in the same tick when a batch of replies arrives, so
redis-server may get several commands per \`read()\` whatever the client
("decisions per redis read()" shows how many). Over HTTP requests arrive
spread out; compare that column in both sections. Take goal 2 (Redis CPU)
from the HTTP section.
A/A (\`rrl-redis-readme-aa\` ÷ \`rrl-redis-readme\`, node CPU per round):
median ${fmt(median(aaRedis), 2)}, ${medianRange(aaRedis, 2)}; memory A/A (\`rrl-memory-aa\` ÷ \`rrl-memory\`): ${medianRange(aaMemory, 2)}.
${problems.length ? '\nProblems seen during the run:\n\n' + problems.map(p => `- ${p}`).join('\n') + '\n' : ''}
${markdownTable(head, mainRows, 'lrrrrrrr')}

### 1 rule against 4 rules per request

Same rounds. Each "4 rules" variant runs four rules (1 m, 1 h, 1 d, 7 d
windows, all far above what is sent) on the request: four stacked
middlewares, or one middleware with \`policies\` once the build has it.
Ratios are per round to the same family's 1-rule variant.${
    polVsStack
      ? ` \`policies: [4]\` ÷ 4 stacked (node CPU): Redis ${medianRange(polVsStack.redis, 2)}, memory ${medianRange(polVsStack.memory, 2)}.`
      : ''
  }

${markdownTable(ruleHead, ruleRows, 'lrrrrr')}

Variants:

${variants.map(v => `- \`${v.name}\`: ${v.description}`).join('\n')}

<details><summary>Every run</summary>

${markdownTable(
  [
    'variant',
    'round',
    'requests',
    'node µs/req',
    '× rlf',
    'redis µs/req',
    'p50 ms',
    'p99 ms',
    'bad',
  ],
  rawRows,
  'lrrrrrrrr',
)}

</details>
`;
  if (options.write) console.error(`inproc: wrote ${writeSection('inproc', body)}`);

  const summary = {
    elapsed,
    aaRedis,
    aaMemory,
    problems,
    nodeVsRlfRedis: ratios('rrl-redis-readme', 'rlf-redis'),
    nodeVsRlfMemory: ratios('rrl-memory', 'rlf-memory'),
    redisVsRlf: ratios('rrl-redis-readme', 'rlf-redis', 'redisUs'),
    redisVsErl: ratios('rrl-redis-readme', 'erl-redis', 'redisUs'),
    polVsStack,
    pol: pol4?.na ?? null,
    medians: Object.fromEntries(
      live.map(v => [
        v.name,
        {
          nodeUs: median(stats[v.name].map(r => r.nodeUs)),
          redisUs: median(stats[v.name].map(r => r.redisUs)),
          p99: median(stats[v.name].map(r => r.p99)),
        },
      ]),
    ),
  };
  if (options.json) console.log(JSON.stringify(summary));
  return summary;
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

if (import.meta.url === `file://${process.argv[1]}`) {
  runInproc(process.argv.slice(2))
    .then(() => process.exit(0))
    .catch(error => {
      console.error(`inproc: ${error instanceof Error ? error.stack : error}`);
      process.exit(1);
    });
}
