// @ts-check
// Scale figures for issue #16, with the peers beside ours (no pass/fail):
//   1. decisions/s one Redis core sustains: (a) in-process limiters on many
//      clients driving one redis-server, (b) the captured decision command
//      replayed by redis-benchmark until redis-server uses one core;
//   2. bytes per key in the fallback MemoryStore (heap delta / keys, gc());
//   3. cost from 1 key to 1 M distinct keys (in-process, memory-only and Redis).
// Redis MEMORY USAGE per key per algorithm is bench/memory.mjs.
//
//   node --expose-gc bench/scale.mjs [--quick] [--no-build] [--no-write] [--json]
//
// Run by `npm run bench` after the in-process rounds. Takes about 3 minutes
// (--quick: under 1).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { MemoryStore as ErlMemoryStore } from 'express-rate-limit';
import { RedisStore as ErlRedisStore } from 'rate-limit-redis';
import { RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible';
import { MemoryStore, RateLimiter } from 'resilient-rate-limit';
import {
  ensureBuilt,
  freePort,
  machineInfo,
  sleep,
  startRedis,
} from '../scripts/lib/processes.mjs';
import { drive, processCpuUs, redisCpuUs } from './lib/driver.mjs';
import { buildReadmeClient } from './lib/readme-client.mjs';
import { fmt, markdownTable, textTable, writeSection } from './lib/report.mjs';

const LIMIT = 1_000_000_000;
const WINDOW_MS = 3_600_000;
const quiet = { warn() {}, info() {}, error() {} };

/**
 * A memory-only limiter of this package on `memory`, as a scale cell uses it.
 * @param {MemoryStore} memory
 */
function memoryOnly(memory) {
  const l = new RateLimiter({
    name: 'bench',
    limit: LIMIT,
    window: WINDOW_MS,
    memory,
    logger: quiet,
  });
  return {
    decide: (/** @type {string} */ k) => l.consume(k),
    close: async () => {
      await l.close();
      memory.close();
    },
  };
}
const gc = /** @type {(() => void) | undefined} */ (globalThis.gc);
const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const parentAt = args.indexOf('--parent');
const PARENT = parentAt >= 0 ? args[parentAt + 1] : '';
/** @type {string[]} */
const problems = [];
/** Default key form for IPv4 clients, distinct per i. */
const ipv4 = (/** @type {number} */ i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

/**
 * The three Redis implementations, each on its own clients.
 * @param {string} url
 * @param {number} clients
 */
async function redisImpls(url, clients) {
  /** @type {Array<() => unknown>} */
  const closers = [];
  const ready = async (/** @type {Redis} */ c) => {
    if (c.status !== 'ready') await once(c, 'ready');
    closers.push(() => c.disconnect());
    return c;
  };
  /** @type {Array<{ name: string, decide: Array<(key: string) => Promise<unknown>> }>} */
  const impls = [];
  const ours = [];
  for (let i = 0; i < clients; i++) {
    const limiter = new RateLimiter({
      name: 'bench',
      limit: LIMIT,
      window: WINDOW_MS,
      redis: await ready(buildReadmeClient(url, quiet)),
      // Redis capacity, not the timeout, is measured: one Node process with
      // hundreds of decisions in flight can hold one past 100 ms.
      timeout: 1000,
      logger: quiet,
    });
    closers.push(() => limiter.close());
    ours.push(async (/** @type {string} */ key) => {
      const result = await limiter.consume(key);
      if (result.source !== 'redis') throw new Error(`decided by ${result.source}`);
    });
  }
  impls.push({ name: 'rrl (README client)', decide: ours });
  const rlf = [];
  for (let i = 0; i < clients; i++) {
    const limiter = new RateLimiterRedis({
      storeClient: await ready(new Redis(url, { enableOfflineQueue: false })),
      points: LIMIT,
      duration: WINDOW_MS / 1000,
      insuranceLimiter: new RateLimiterMemory({ points: LIMIT, duration: WINDOW_MS / 1000 }),
    });
    rlf.push((/** @type {string} */ key) => limiter.consume(key));
  }
  impls.push({ name: 'rate-limiter-flexible', decide: rlf });
  const erl = [];
  for (let i = 0; i < clients; i++) {
    const client = await ready(new Redis(url).on('error', () => undefined));
    const store = new ErlRedisStore({
      // @ts-expect-error ioredis `call` returns Promise<unknown>
      sendCommand: (command, ...rest) => client.call(command, ...rest),
    });
    await store.init(/** @type {any} */ ({ windowMs: WINDOW_MS }));
    erl.push((/** @type {string} */ key) => store.increment(key));
  }
  impls.push({ name: 'rate-limit-redis', decide: erl });
  return {
    impls,
    close: async () => {
      for (const c of closers) await c();
    },
  };
}

/**
 * The one command a steady-state decision sends (seen with MONITOR), its key
 * replaced by redis-benchmark's __rand_int__.
 * @param {number} port
 * @param {(key: string) => Promise<unknown>} decide
 */
async function captureDecision(port, decide) {
  const marker = 'SATKEY';
  await decide(marker); // creates the key; the next one is the steady state
  const base = new Redis(port, '127.0.0.1');
  const monitor = await base.monitor();
  /** @type {string[][]} */
  const seen = [];
  monitor.on('monitor', (_time, /** @type {unknown[]} */ argv, /** @type {string} */ source) => {
    if (source !== 'lua') seen.push(argv.map(String));
  });
  await sleep(50);
  await decide(marker);
  await sleep(100);
  monitor.disconnect();
  base.disconnect();
  const command = seen.filter(a => a.some(x => x.includes(marker)));
  if (command.length !== 1)
    throw new Error(`expected one command per decision, saw ${command.length}`);
  return command[0].map(a => a.replaceAll(marker, '__rand_int__'));
}

/**
 * @param {number} port
 * @param {string[]} command
 * @param {number} requests
 * @param {number} keys
 */
async function replay(port, command, requests, keys) {
  const child = spawn(
    'redis-benchmark',
    [
      '-p',
      String(port),
      '-c',
      '50',
      '-P',
      '16',
      '-n',
      String(requests),
      '-r',
      String(keys),
      '-q',
      ...command,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout.on('data', chunk => (out += chunk));
  child.stderr.on('data', chunk => (out += chunk));
  const [code] = await once(child, 'exit');
  if (code !== 0) throw new Error(`redis-benchmark exited ${code}: ${out}`);
  return out;
}

async function saturation() {
  const redis = await startRedis(await freePort());
  const url = `redis://127.0.0.1:${redis.port}`;
  const admin = new Redis(redis.port, '127.0.0.1');
  const clients = 4;
  const concurrency = 200;
  const keys = 10_000;
  const ms = QUICK ? 1500 : 4000;
  const { impls, close } = await redisImpls(url, clients);
  const rows = [];
  for (const impl of impls) {
    // (a) this process drives: `clients` clients, `concurrency` in flight, `keys` keys.
    await drive(i => impl.decide[i % clients](ipv4(i % keys)), {
      ms: 500,
      concurrency,
      max: keys,
    });
    const r0 = await redisCpuUs(admin);
    const c0 = processCpuUs();
    const t0 = performance.now();
    const result = await drive(i => impl.decide[i % clients](ipv4(i % keys)), { ms, concurrency });
    const wallUs = (performance.now() - t0) * 1000;
    const c1 = processCpuUs();
    const r1 = await redisCpuUs(admin);
    console.error(`scale: ${impl.name}: ${result.errors} errors of ${result.done}`);
    if (result.errors)
      problems.push(
        `saturation ${impl.name}: ${result.errors} errors (${String(result.firstError)})`,
      );
    const inProcess = {
      rate: (result.done * 1e6) / wallUs,
      redisUtil: (r1 - r0) / wallUs,
      redisUs: (r1 - r0) / result.done,
      nodeUtil: (c1 - c0) / wallUs,
    };
    // (b) redis-benchmark replays the steady-state decision command on `keys` keys.
    const command = await captureDecision(redis.port, impl.decide[0]);
    const requests = QUICK ? 100_000 : 400_000;
    const s0 = await redisCpuUs(admin);
    const t1 = performance.now();
    await replay(redis.port, command, requests, keys);
    const wall2 = (performance.now() - t1) * 1000;
    const s1 = await redisCpuUs(admin);
    const replayed = {
      rate: (requests * 1e6) / wall2,
      redisUtil: (s1 - s0) / wall2,
      redisUs: (s1 - s0) / requests,
      command: `${command[0]} … ${command.length - 1} args`,
    };
    console.error(
      `scale: ${impl.name}: in-process ${fmt(inProcess.rate)}/s (redis ${fmt(inProcess.redisUtil * 100)} % of a core, ${fmt(inProcess.redisUs, 2)} µs/decision); ` +
        `replay ${fmt(replayed.rate)}/s (redis ${fmt(replayed.redisUtil * 100)} %, ${fmt(replayed.redisUs, 2)} µs/decision)`,
    );
    rows.push({ name: impl.name, inProcess, replayed });
  }
  await close();
  admin.disconnect();
  await redis.kill();
  return { rows, clients, concurrency, keys, ms, version: redis.version };
}

/**
 * Heap bytes per key held by `fill(n)`: gc(), heapUsed, fill, gc(), heapUsed.
 * @param {(n: number) => Promise<unknown>} fill resolves with what must stay alive
 * @param {number} n
 */
async function heapPerKey(fill, n) {
  if (!gc) return NaN;
  gc();
  gc();
  const h0 = process.memoryUsage().heapUsed;
  const held = await fill(n);
  gc();
  gc();
  const h1 = process.memoryUsage().heapUsed;
  if (held === undefined) throw new Error('fill must return what it built');
  return (h1 - h0) / n;
}

async function fallbackBytes() {
  const n = QUICK ? 20_000 : 100_000;
  const params = {
    algorithm: /** @type {const} */ ('fixed-window'),
    limit: LIMIT,
    windowMs: WINDOW_MS,
    cost: 1,
    now: 0,
  };
  /** @type {Array<{ what: string, bytes: number }>} */
  const rows = [];
  const cases = [
    {
      what: 'this package: MemoryStore.consume (fixed window)',
      fill: async (/** @type {number} */ k) => {
        const store = new MemoryStore({ maxKeys: k * 2 });
        for (let i = 0; i < k; i++) {
          params.now = Date.now();
          store.consume(`rl:{bench|${ipv4(i)}}`, params);
        }
        return store;
      },
    },
    {
      what: 'this package: memory-only RateLimiter.consume (its MemoryStore)',
      fill: async (/** @type {number} */ k) => {
        const limiter = new RateLimiter({
          name: 'bench',
          limit: LIMIT,
          window: WINDOW_MS,
          memory: new MemoryStore({ maxKeys: k * 2 }),
          logger: quiet,
        });
        for (let i = 0; i < k; i++) await limiter.consume(ipv4(i));
        return limiter;
      },
    },
    {
      what: 'peer: rate-limiter-flexible RateLimiterMemory.consume',
      fill: async (/** @type {number} */ k) => {
        const limiter = new RateLimiterMemory({ points: LIMIT, duration: WINDOW_MS / 1000 });
        for (let i = 0; i < k; i++) await limiter.consume(ipv4(i));
        return limiter;
      },
    },
    {
      what: 'peer: express-rate-limit MemoryStore.increment',
      fill: async (/** @type {number} */ k) => {
        const store = new ErlMemoryStore();
        store.init(/** @type {any} */ ({ windowMs: WINDOW_MS }));
        for (let i = 0; i < k; i++) await store.increment(ipv4(i));
        return store;
      },
    },
  ];
  for (const c of cases) {
    const bytes = await heapPerKey(c.fill, n);
    console.error(`scale: ${c.what}: ${fmt(bytes)} B/key`);
    rows.push({ what: c.what, bytes });
    gc?.();
  }
  return { rows, n };
}

/**
 * Decisions/s and CPU per decision with K distinct keys: one pass creates the
 * keys (time-capped), then a timed pass visits them in a scattered order.
 */
async function keyGrowth() {
  const sizes = [1, 1_000, 100_000, 1_000_000];
  const redis = await startRedis(await freePort());
  const url = `redis://127.0.0.1:${redis.port}`;
  const admin = new Redis(redis.port, '127.0.0.1');
  const populateCapMs = QUICK ? 3000 : 35_000;
  const measureMs = QUICK ? 500 : 1500;
  const concurrency = 50;

  /** @type {Array<{ name: string, redis: boolean, make: () => Promise<{ decide: (key: string) => Promise<unknown>, close: () => unknown }> }>} */
  // Redis first, and rate-limiter-flexible's memory limiter last: its
  // per-key timers keep a million entries alive for the window (an hour),
  // which would slow every later cell.
  const impls = [
    {
      name: 'rrl Redis, README client (default fallback store)',
      redis: true,
      make: async () => {
        const client = buildReadmeClient(url, quiet);
        await once(client, 'ready');
        // timeout 1000 as in the saturation runs: the cost of many keys is
        // measured, not whether a starved machine answers within 100 ms.
        const l = new RateLimiter({
          name: 'bench',
          limit: LIMIT,
          window: WINDOW_MS,
          redis: client,
          timeout: 1000,
          logger: quiet,
        });
        return {
          decide: async k => {
            const r = await l.consume(k);
            if (r.source !== 'redis') throw new Error(`decided by ${r.source}`);
          },
          close: async () => {
            await l.close();
            client.disconnect();
          },
        };
      },
    },
    {
      name: 'rate-limiter-flexible Redis + insurance',
      redis: true,
      make: async () => {
        const client = new Redis(url, { enableOfflineQueue: false });
        await once(client, 'ready');
        const l = new RateLimiterRedis({
          storeClient: client,
          points: LIMIT,
          duration: WINDOW_MS / 1000,
          insuranceLimiter: new RateLimiterMemory({ points: LIMIT, duration: WINDOW_MS / 1000 }),
        });
        return { decide: k => l.consume(k), close: () => client.disconnect() };
      },
    },
    {
      name: 'rrl memory-only, default store (maxKeys 10 000, evicts)',
      redis: false,
      make: async () => memoryOnly(new MemoryStore()),
    },
    {
      name: 'rrl memory-only, maxKeys 2 000 000',
      redis: false,
      make: async () => memoryOnly(new MemoryStore({ maxKeys: 2_000_000 })),
    },
    {
      name: 'rate-limiter-flexible RateLimiterMemory',
      redis: false,
      make: async () => {
        const l = new RateLimiterMemory({ points: LIMIT, duration: WINDOW_MS / 1000 });
        return { decide: k => l.consume(k), close: () => undefined };
      },
    },
  ];

  const rows = [];
  for (const impl of impls) {
    const cells = [];
    for (const size of sizes) {
      await admin.flushall();
      gc?.();
      const { decide, close } = await impl.make();
      const keyOf = (/** @type {number} */ i) => ipv4(i % size);
      const populated = await drive(i => decide(keyOf(i)), {
        ms: populateCapMs,
        concurrency: impl.redis ? 200 : concurrency,
        max: size,
      });
      const created = Math.min(size, populated.done);
      // Scattered order over the created keys (a stride coprime with most sizes).
      const visit = (/** @type {number} */ i) => keyOf((i * 7919) % created);
      await drive(i => decide(visit(i)), { ms: 200, concurrency });
      const r0 = await redisCpuUs(admin);
      const c0 = processCpuUs();
      const t0 = performance.now();
      const result = await drive(i => decide(visit(i)), { ms: measureMs, concurrency });
      const wallUs = (performance.now() - t0) * 1000;
      const nodeUs = (processCpuUs() - c0) / result.done;
      const redisUs = impl.redis ? ((await redisCpuUs(admin)) - r0) / result.done : NaN;
      if (populated.errors + result.errors) {
        problems.push(
          `keys ${impl.name} @ ${size}: ${populated.errors + result.errors} errors (${String(populated.firstError ?? result.firstError)})`,
        );
      }
      const cell = { size, created, rate: (result.done * 1e6) / wallUs, nodeUs, redisUs };
      console.error(
        `scale: ${impl.name} @ ${fmt(size)} keys (${fmt(created)} created): ${fmt(cell.rate)}/s, node ${fmt(nodeUs, 2)} µs` +
          (impl.redis ? `, redis ${fmt(redisUs, 2)} µs` : ''),
      );
      cells.push(cell);
      await close();
    }
    rows.push({ name: impl.name, redis: impl.redis, cells });
  }
  admin.disconnect();
  await redis.kill();
  return { rows, sizes, populateCapMs, measureMs, concurrency };
}

export async function runScale() {
  const started = Date.now();
  ensureBuilt(!args.includes('--no-build'));
  if (!gc) problems.push('run with --expose-gc: bytes per key not measured');
  console.error('scale: Redis saturation');
  const sat = await saturation();
  console.error('scale: 1 to 1 M keys');
  const growth = await keyGrowth();
  // Last: rate-limiter-flexible's memory limiter leaves its keys' timers behind.
  console.error('scale: fallback store bytes per key');
  const bytes = await fallbackBytes();
  const elapsed = (Date.now() - started) / 1000;

  const satHead = [
    'implementation',
    'in-process decisions/s',
    'redis CPU (of one core)',
    'redis µs/decision',
    'replayed decisions/s (redis-benchmark)',
    'redis CPU (of one core)',
    'redis µs/decision',
    '1 core ÷ µs/decision',
  ];
  const satRows = sat.rows.map(r => [
    r.name,
    fmt(r.inProcess.rate),
    `${fmt(r.inProcess.redisUtil * 100)} %`,
    fmt(r.inProcess.redisUs, 2),
    fmt(r.replayed.rate),
    `${fmt(r.replayed.redisUtil * 100)} %`,
    fmt(r.replayed.redisUs, 2),
    fmt(1e6 / r.replayed.redisUs),
  ]);
  const bytesHead = ['store', 'heap bytes per key'];
  const bytesRows = bytes.rows.map(r => [r.what, fmt(r.bytes)]);
  const growthHead = ['implementation', ...growth.sizes.map(s => `${fmt(s)} keys`)];
  const growthRows = growth.rows.map(r => [
    r.name,
    ...r.cells.map(
      c =>
        `${fmt(c.rate)}/s; node ${fmt(c.nodeUs, 2)} µs` +
        (r.redis ? `; redis ${fmt(c.redisUs, 2)} µs` : '') +
        (c.created < c.size ? `; ${fmt(c.created)} created` : ''),
    ),
  ]);
  console.log('\n' + textTable(satHead, satRows));
  console.log('\n' + textTable(bytesHead, bytesRows));
  console.log('\n' + textTable(growthHead, growthRows));
  console.log(`\ntotal ${fmt(elapsed)} s`);
  if (problems.length) console.log('\nproblems:\n  ' + problems.join('\n  '));

  const info = machineInfo();
  const command =
    PARENT ||
    `node --expose-gc bench/scale.mjs ${args.filter(a => a !== '--json').join(' ')}`.trim();
  const body = `## Scale figures (\`bench/scale.mjs\`)

- Date: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}
- Machine: ${info.nproc} × ${info.model}; Node ${info.node}; redis-server ${sat.version}
- Command: \`${command}\` (took ${fmt(elapsed)} s)
- The driver (this Node process or redis-benchmark) and redis-server share the same ${info.nproc} CPUs.
${problems.length ? '\nProblems seen during the run:\n\n' + problems.map(p => `- ${p}`).join('\n') + '\n' : ''}
### Decisions per second one Redis core sustains

In-process: ${sat.clients} clients (each its own limiter, built as each
library's docs build it), ${sat.concurrency} decisions in flight over
${fmt(sat.keys)} keys for ${fmt(sat.ms / 1000, 1)} s; on this machine one Node process cannot push
redis-server to a full core (Node's CPU per decision is higher than
Redis's), so the redis CPU column says how close it got. Replayed: the one
command a steady-state decision sends (captured with MONITOR) replayed by
\`redis-benchmark -c 50 -P 16 -r ${sat.keys}\` (keys drawn at random), which
does saturate redis-server's core; "1 core ÷ µs/decision" is the capacity
that implies. Redis CPU from \`INFO cpu\`.

${markdownTable(satHead, satRows, 'lrrrrrrr')}

Replayed commands: ${sat.rows.map(r => `${r.name}: \`${r.replayed.command}\``).join('; ')}.

### Bytes per key in the fallback store

${fmt(bytes.n)} distinct IPv4 keys, one decision each; \`gc()\` before and
after, heap delta ÷ keys (key strings included; the limit is 10⁹ so every
entry is a live window).

${markdownTable(bytesHead, bytesRows, 'lr')}

### From 1 key to 1 M distinct keys

Per cell: decisions/s, Node CPU µs/decision and (Redis) redis CPU
µs/decision with K distinct keys: one pass creates the keys (Redis: 200 in
flight; capped at
${fmt(growth.populateCapMs / 1000)} s: "created" says when the cap cut it short), then
${fmt(growth.measureMs / 1000, 1)} s visit the created keys in a scattered order,
${growth.concurrency} decisions in flight. With the default \`maxKeys\` (10 000)
the memory-only limiter evicts beyond 10 000 keys, so its later visits start
new windows. Our Redis limiter runs with \`timeout: 1000\` here (as in
the saturation runs), so a starved machine measures cost, not fallbacks.

${markdownTable(growthHead, growthRows, 'lrrrr')}
`;
  if (!args.includes('--no-write')) console.error(`scale: wrote ${writeSection('scale', body)}`);
  const summary = {
    elapsed,
    problems,
    saturation: sat.rows,
    bytes: bytes.rows,
    growth: growth.rows,
  };
  if (args.includes('--json')) console.log(JSON.stringify(summary));
  return summary;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  runScale()
    .then(() => process.exit(0))
    .catch(error => {
      console.error(`scale: ${error instanceof Error ? error.stack : error}`);
      process.exit(1);
    });
}
