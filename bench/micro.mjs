// @ts-check
// npm run bench:micro: in-process decisions per second and bytes allocated
// per decision, for the core, each store and the middleware (built package),
// then the Redis path with 50 decisions in flight against a private
// redis-server. Peers' equivalents are measured alongside for reference.
//
//   node --expose-gc bench/micro.mjs [--quick] [--no-build] [--no-write]
//
// Bytes per decision: with gc() exposed, each sample is gc(), read
// heapUsed, make K calls, read heapUsed again. Young-generation objects are
// not freed until a scavenge, so the growth is what the K calls allocated
// (on the JS heap; Buffer backing stores are off-heap and not counted). A
// PerformanceObserver records every GC with its start time; a sample during
// which any GC ran is discarded, and K is halved so the next fits. The
// reported figure is the median over the kept samples. The "empty function"
// rows are the same harness around a no-op: the floor of the method.
import { once } from 'node:events';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { setImmediate } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { MemoryStore as ErlMemoryStore, rateLimit as erlRateLimit } from 'express-rate-limit';
import { RedisStore as ErlRedisStore } from 'rate-limit-redis';
import { RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible';
import { MemoryStore, RateLimiter, rateLimit } from 'resilient-rate-limit';
import {
  clkTck,
  cpuTicks,
  ensureBuilt,
  freePort,
  machineInfo,
  sleep,
  startRedis,
} from '../scripts/lib/processes.mjs';
import { fmt, markdownTable, median, medianRange, textTable, writeSection } from './lib/report.mjs';

const gc = /** @type {(() => void) | undefined} */ (globalThis.gc);
const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const SAMPLES = QUICK ? 3 : 5;
const SAMPLE_MS = QUICK ? 100 : 300;
const ALLOC_SAMPLES = QUICK ? 9 : 25;
const LIMIT = 1_000_000_000;
const WINDOW_MS = 3_600_000;
const quiet = { warn() {}, info() {}, error() {} };
// A watchdog: nothing here may run for more than 5 minutes.
setTimeout(() => {
  console.error('micro: watchdog: over 5 minutes, giving up');
  process.exit(2);
}, 300_000).unref();

/** @type {number[]} */
const gcStarts = [];
const observer = new PerformanceObserver(list => {
  for (const entry of list.getEntries()) gcStarts.push(entry.startTime);
});
observer.observe({ entryTypes: ['gc'] });

/**
 * @typedef {{ name: string, fn: (i: number) => unknown, async: boolean, note?: string }} Case
 */

/**
 * @param {Case} c
 * @param {number} n
 */
async function runN(c, n) {
  const fn = c.fn;
  if (c.async) for (let i = 0; i < n; i++) await fn(i);
  else for (let i = 0; i < n; i++) fn(i);
}

/**
 * Decisions/s: calibrate a batch to ~SAMPLE_MS, then SAMPLES timed batches.
 * @param {Case} c
 */
async function throughput(c) {
  let n = 1000;
  for (;;) {
    const t0 = performance.now();
    await runN(c, n);
    const ms = performance.now() - t0;
    if (ms >= SAMPLE_MS / 4 || n >= 5_000_000) {
      n = Math.max(1000, Math.min(20_000_000, Math.round((n * SAMPLE_MS) / Math.max(ms, 0.001))));
      break;
    }
    n *= 4;
  }
  /** @type {number[]} */
  const rates = [];
  for (let s = 0; s < SAMPLES; s++) {
    const t0 = performance.now();
    await runN(c, n);
    rates.push((n * 1000) / (performance.now() - t0));
  }
  return rates;
}

/**
 * Bytes allocated per call, from GC-free samples (see the header comment).
 * @param {Case} c
 */
async function allocation(c) {
  if (!gc) return { bytes: NaN, kept: 0, k: 0 };
  let k = 2000;
  /** @type {number[]} */
  const samples = [];
  for (let attempt = 0; attempt < ALLOC_SAMPLES * 3 && samples.length < ALLOC_SAMPLES; attempt++) {
    gc();
    await setImmediate();
    const t0 = performance.now();
    const h0 = process.memoryUsage().heapUsed;
    await runN(c, k);
    const h1 = process.memoryUsage().heapUsed;
    const t1 = performance.now();
    await setImmediate();
    await setImmediate();
    if (gcStarts.some(t => t >= t0 && t <= t1)) {
      k = Math.max(50, k >> 1);
      continue;
    }
    samples.push((h1 - h0) / k);
  }
  gcStarts.length = 0;
  return { bytes: median(samples), kept: samples.length, k };
}

/**
 * @param {Case} c
 */
async function measure(c) {
  await runN(c, QUICK ? 20_000 : 200_000); // warm-up: let the JIT settle
  const rates = await throughput(c);
  const alloc = await allocation(c);
  const row = { name: c.name, rates, ...alloc, note: c.note ?? '' };
  console.error(
    `  ${c.name.padEnd(58)} ${fmt(median(rates)).padStart(12)} /s  ${fmt(alloc.bytes, 0).padStart(6)} B/decision (${alloc.kept} samples of ${alloc.k})`,
  );
  return row;
}

/**
 * Fake req/res for the middleware. `req` is a fresh object on every access,
 * as every HTTP request is: the middleware counts a request object once
 * (ERR_RRL_DOUBLE_COUNT), so a reused one would measure the shortcut.
 */
function fakeHttp() {
  const socket = { remoteAddress: '127.0.0.1' };
  const fresh = () => ({ ip: '127.0.0.1', socket, headers: {}, method: 'GET', url: '/' });
  const res = {
    headersSent: false,
    statusCode: 200,
    count: 0,
    last: /** @type {unknown} */ (undefined),
    /** @param {string} _name @param {unknown} value */
    setHeader(_name, value) {
      this.count++;
      this.last = value;
      return this;
    },
    getHeader() {
      return undefined;
    },
    end() {},
  };
  return {
    get req() {
      return fresh();
    },
    res,
  };
}

/** @param {string} prefix @param {number} n */
const makeKeys = (prefix, n) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

async function inProcessCases() {
  const hotKey = '127.0.0.1';
  const manyKeys = makeKeys('10.0.', 100_000);
  const params = {
    algorithm: /** @type {const} */ ('fixed-window'),
    limit: LIMIT,
    windowMs: WINDOW_MS,
    cost: 1,
    now: 0,
  };
  const store = new MemoryStore({ maxKeys: 200_000 });
  const oneKeyLimiter = new RateLimiter({ name: 'micro-one', limit: LIMIT, window: WINDOW_MS });
  const manyKeyLimiter = new RateLimiter({
    name: 'micro-many',
    limit: LIMIT,
    window: WINDOW_MS,
    memory: new MemoryStore({ maxKeys: 200_000 }),
  });
  const evictLimiter = new RateLimiter({
    name: 'micro-evict',
    limit: LIMIT,
    window: WINDOW_MS,
    memory: new MemoryStore({ maxKeys: 10_000 }),
  });
  const slidingLimiter = new RateLimiter({
    name: 'micro-sliding',
    limit: LIMIT,
    window: WINDOW_MS,
    algorithm: 'sliding-window',
  });
  const bucketLimiter = new RateLimiter({
    name: 'micro-bucket',
    limit: LIMIT,
    window: WINDOW_MS,
    algorithm: 'token-bucket',
  });

  // Breaker held open: a redis:// URL with nothing listening.
  const openLimiter = new RateLimiter({
    name: 'micro-open',
    limit: LIMIT,
    window: WINDOW_MS,
    redis: `redis://127.0.0.1:${await freePort()}`,
    logger: quiet,
  });
  for (let i = 0; i < 100 && openLimiter.breakerState !== 'open'; i++)
    await openLimiter.consume('warm');
  if (openLimiter.breakerState !== 'open') throw new Error('breaker did not open');

  const mwBoth = rateLimit({ name: 'micro-mw', limit: LIMIT, window: WINDOW_MS });
  const mwNone = rateLimit({
    name: 'micro-mw-none',
    limit: LIMIT,
    window: WINDOW_MS,
    headers: false,
  });
  const mwKey = rateLimit({
    name: 'micro-mw-key',
    limit: LIMIT,
    window: WINDOW_MS,
    key: () => hotKey,
  });
  const http = fakeHttp();
  const next = () => {};

  const rlf = new RateLimiterMemory({ points: LIMIT, duration: WINDOW_MS / 1000 });
  const erlStore = new ErlMemoryStore();
  erlStore.init(/** @type {any} */ ({ windowMs: WINDOW_MS }));
  const erlMw = erlRateLimit({ windowMs: WINDOW_MS, limit: LIMIT, validate: false });
  const erlHttp = fakeHttp();

  /** @type {Case[]} */
  const cases = [
    { name: 'empty sync function (harness floor)', fn: () => undefined, async: false },
    {
      name: 'empty async function, awaited (harness floor)',
      fn: async () => undefined,
      async: true,
    },
    {
      name: 'MemoryStore.consume, one key (sync)',
      fn: () => {
        params.now = Date.now();
        return store.consume(hotKey, params);
      },
      async: false,
    },
    {
      name: 'RateLimiter.consume memory-only, one hot key',
      fn: () => oneKeyLimiter.consume(hotKey),
      async: true,
    },
    {
      name: 'RateLimiter.consume memory-only, 100k keys round-robin',
      fn: i => manyKeyLimiter.consume(manyKeys[i % manyKeys.length]),
      async: true,
    },
    {
      name: 'RateLimiter.consume memory-only, 100k keys, 10k-key store (evicting)',
      fn: i => evictLimiter.consume(manyKeys[i % manyKeys.length]),
      async: true,
    },
    {
      name: 'RateLimiter.consume sliding-window, one key',
      fn: () => slidingLimiter.consume(hotKey),
      async: true,
    },
    {
      name: 'RateLimiter.consume token-bucket, one key',
      fn: () => bucketLimiter.consume(hotKey),
      async: true,
    },
    {
      name: 'RateLimiter.consume, breaker open (memory fallback)',
      fn: () => openLimiter.consume(hotKey),
      async: true,
    },
    {
      name: "middleware, fake req/res, headers 'both' (default), IP key",
      fn: () => mwBoth(/** @type {any} */ (http.req), /** @type {any} */ (http.res), next),
      async: true,
    },
    {
      name: 'middleware, fake req/res, headers false, IP key',
      fn: () => mwNone(/** @type {any} */ (http.req), /** @type {any} */ (http.res), next),
      async: true,
    },
    {
      name: "middleware, fake req/res, headers 'both', constant key()",
      fn: () => mwKey(/** @type {any} */ (http.req), /** @type {any} */ (http.res), next),
      async: true,
    },
    {
      name: 'peer: rate-limiter-flexible RateLimiterMemory.consume',
      fn: () => rlf.consume(hotKey),
      async: true,
    },
    {
      name: 'peer: express-rate-limit MemoryStore.increment',
      fn: () => erlStore.increment(hotKey),
      async: true,
    },
    {
      name: 'peer: express-rate-limit middleware, fake req/res',
      fn: () => erlMw(/** @type {any} */ (erlHttp.req), /** @type {any} */ (erlHttp.res), next),
      async: true,
    },
  ];
  const rows = [];
  for (const c of cases) rows.push(await measure(c));
  for (const limiter of [
    oneKeyLimiter,
    manyKeyLimiter,
    evictLimiter,
    slidingLimiter,
    bucketLimiter,
    openLimiter,
  ]) {
    await limiter.close();
  }
  store.close();
  if (http.res.count === 0) throw new Error('middleware set no headers');
  return rows;
}

/**
 * 50 workers, each awaiting one decision at a time on its own key, until
 * `total` decisions or `maxMs` have passed.
 * @param {(key: string) => Promise<unknown>} decide
 * @param {number} total
 * @param {number} maxMs
 */
async function inFlight(decide, total, maxMs, concurrency = 50) {
  let done = 0;
  const deadline = performance.now() + maxMs;
  const worker = async (/** @type {number} */ w) => {
    const key = `micro-redis-${w}`;
    while (done < total && performance.now() < deadline) {
      await decide(key);
      done++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  return done;
}

async function redisCases() {
  const redis = await startRedis(await freePort());
  const url = `redis://127.0.0.1:${redis.port}`;
  const usPerTick = 1e6 / clkTck();
  /** @type {Array<{ name: string, decide: (key: string) => Promise<unknown>, close: () => unknown, check?: () => Promise<void> }>} */
  const cases = [];

  const urlLimiter = new RateLimiter({
    name: 'micro-redis-url',
    limit: LIMIT,
    window: WINDOW_MS,
    redis: url,
  });
  cases.push({
    name: 'RateLimiter.consume, `redis://` URL client',
    decide: key => urlLimiter.consume(key),
    close: () => urlLimiter.close(),
    check: async () => {
      const result = await urlLimiter.consume('check');
      if (result.source !== 'redis') throw new Error(`URL limiter decided from ${result.source}`);
    },
  });

  const pipelined = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    enableAutoPipelining: true,
  });
  await once(pipelined, 'ready');
  const pipeLimiter = new RateLimiter({
    name: 'micro-redis-pipe',
    limit: LIMIT,
    window: WINDOW_MS,
    redis: pipelined,
  });
  cases.push({
    name: 'RateLimiter.consume, ioredis client with enableAutoPipelining',
    decide: key => pipeLimiter.consume(key),
    close: async () => {
      await pipeLimiter.close();
      pipelined.disconnect();
    },
    check: async () => {
      const result = await pipeLimiter.consume('check');
      if (result.source !== 'redis')
        throw new Error(`pipelined limiter decided from ${result.source}`);
    },
  });

  const rlfClient = new Redis(url, { enableOfflineQueue: false });
  await once(rlfClient, 'ready');
  const rlf = new RateLimiterRedis({
    storeClient: rlfClient,
    points: LIMIT,
    duration: WINDOW_MS / 1000,
    insuranceLimiter: new RateLimiterMemory({ points: LIMIT, duration: WINDOW_MS / 1000 }),
  });
  cases.push({
    name: 'peer: rate-limiter-flexible RateLimiterRedis.consume',
    decide: key => rlf.consume(key),
    close: () => rlfClient.disconnect(),
  });

  const erlClient = new Redis(url);
  await once(erlClient, 'ready');
  const erlStore = new ErlRedisStore({
    // @ts-expect-error ioredis `call` returns Promise<unknown>
    sendCommand: (command, ...rest) => erlClient.call(command, ...rest),
  });
  await erlStore.init(/** @type {any} */ ({ windowMs: WINDOW_MS }));
  cases.push({
    name: 'peer: rate-limit-redis RedisStore.increment',
    decide: key => erlStore.increment(key),
    close: () => erlClient.disconnect(),
  });

  await sleep(300); // let the URL client connect and load the script
  const rows = [];
  const total = QUICK ? 20_000 : 100_000;
  const maxMs = QUICK ? 1500 : 6000;
  for (const c of cases) {
    await c.check?.();
    await inFlight(c.decide, QUICK ? 2000 : 10_000, 2000); // warm-up
    const rates = [];
    const redisUs = [];
    const clientUs = [];
    for (let s = 0; s < (QUICK ? 1 : 3); s++) {
      const r0 = cpuTicks(redis.pid);
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      const n = await inFlight(c.decide, total / (QUICK ? 1 : 3), maxMs / (QUICK ? 1 : 3));
      const ms = performance.now() - t0;
      const cpu = process.cpuUsage(c0);
      rates.push((n * 1000) / ms);
      redisUs.push(((cpuTicks(redis.pid) - r0) * usPerTick) / n);
      clientUs.push((cpu.user + cpu.system) / n);
    }
    const row = { name: c.name, rates, redisUs, clientUs };
    console.error(
      `  ${c.name.padEnd(58)} ${fmt(median(rates)).padStart(8)} /s  redis ${fmt(median(redisUs), 1)} µs/decision  node ${fmt(median(clientUs), 1)} µs/decision`,
    );
    rows.push(row);
    await c.check?.();
  }
  for (const c of cases) await c.close();
  await redis.kill();
  return { rows, version: redis.version };
}

async function main() {
  const started = Date.now();
  ensureBuilt(!args.includes('--no-build'));
  if (!gc)
    console.error('micro: run with --expose-gc to measure allocation (npm run bench:micro does)');
  console.error('micro: in-process (memory store, middleware)');
  const memoryRows = await inProcessCases();
  console.error('micro: Redis path, 50 decisions in flight');
  const { rows: redisRows, version } = await redisCases();
  const elapsed = (Date.now() - started) / 1000;

  const memHead = ['case', 'decisions/s', 'bytes/decision'];
  const memCells = memoryRows.map(r => [r.name, medianRange(r.rates), fmt(r.bytes, 0)]);
  const redisHead = [
    'case (50 in flight, 50 keys)',
    'decisions/s',
    'redis CPU µs/decision',
    'node CPU µs/decision',
  ];
  const redisCells = redisRows.map(r => [
    r.name,
    medianRange(r.rates),
    medianRange(r.redisUs, 1),
    medianRange(r.clientUs, 1),
  ]);
  console.log('\n' + textTable(memHead, memCells));
  console.log('\n' + textTable(redisHead, redisCells));
  console.log(`\ntotal ${fmt(elapsed)} s`);
  if (args.includes('--no-write')) return;

  const info = machineInfo();
  const body = `## In-process: decisions per second and allocation (\`npm run bench:micro\`)

- Date: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}
- Machine: ${info.nproc} × ${info.model}; Node ${info.node}; redis-server ${version}
- Command: \`node --expose-gc bench/micro.mjs${args.length ? ' ' + args.join(' ') : ''}\` (took ${fmt(elapsed)} s)

Decisions/s: median (min–max) of ${SAMPLES} timed batches of ~${SAMPLE_MS} ms after a
warm-up, one call awaited at a time on one thread. All limits are 10⁹ per
hour (allow path).

Bytes/decision: gc(), read \`heapUsed\`, make K calls, read it again; young
objects stay counted until a scavenge, so the growth is what the calls
allocated on the JS heap. Samples during which a GC ran (seen by a
PerformanceObserver on \`gc\` entries) are dropped; the figure is the median
of up to ${ALLOC_SAMPLES} clean samples. The "empty function" rows are the floor of
the method. The fake response stores nothing, so Node's own header
bookkeeping is not included.

${markdownTable(memHead, memCells, 'lrr')}

Redis path: 50 concurrent workers, each awaiting one decision at a time on its
own key, against a private redis-server on loopback; redis CPU from
/proc/<pid>/stat, node CPU from \`process.cpuUsage()\` of this process.

${markdownTable(redisHead, redisCells, 'lrrr')}
`;
  console.log(`\nwrote ${writeSection('micro', body)}`);
}

main()
  .then(() => process.exit(0))
  .catch(error => {
    console.error(`micro: ${error instanceof Error ? error.stack : error}`);
    process.exit(1);
  });
