// @ts-check
// Two builds of this package in one process, on the Redis path, in
// interleaved rounds: CPU per decision of build B against build A, with an
// A/A control (A against a second copy of itself). For "the hot path costs no
// more than before" checks across a change:
//
//   git worktree add /tmp/before <rev> && (cd /tmp/before && npm ci && npm run build)
//   node bench/compare-builds.mjs --a /tmp/before/dist/cjs/index.js [--b dist/cjs/index.js]
//                                 [--rounds 8] [--decisions 20000] [--keys 1000] [--fail-open]
//
// Each decision is `limiter.consume(key)` on a client built as the README's
// "Recommended ioredis settings" build it, 50 in flight, against a private
// redis-server. Keys are spread so most decisions are admitted (fixed window,
// limit high), which is the common hot path.
import { once } from 'node:events';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freePort, startRedis } from '../scripts/lib/processes.mjs';
import { median, range } from './lib/report.mjs';

const require = createRequire(import.meta.url);
const args = process.argv.slice(2);
const arg = (/** @type {string} */ name, /** @type {string} */ fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
};
const A = path.resolve(arg('--a', 'dist/cjs/index.js'));
const B = path.resolve(arg('--b', 'dist/cjs/index.js'));
const ROUNDS = Number(arg('--rounds', '8'));
const DECISIONS = Number(arg('--decisions', '20000'));
const KEYS = Number(arg('--keys', '1000'));
const IN_FLIGHT = 50;

/** @param {string} file a build's CJS entry, loaded fresh (a second copy for A/A) */
function load(file, copy = '') {
  const resolved = require.resolve(file);
  if (!copy) return require(resolved);
  // A second module instance of the same build: the A/A control.
  for (const key of Object.keys(require.cache)) {
    if (key.startsWith(path.dirname(resolved))) delete require.cache[key];
  }
  return require(resolved);
}

const port = await freePort();
const redis = await startRedis(port);
const client = () => {
  const c = new Redis(port, '127.0.0.1', {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout: 1000,
    enableAutoPipelining: true,
  });
  c.on('error', () => undefined);
  return c;
};

const builds = [
  { name: 'A', module: load(A) },
  { name: 'A2', module: load(A, 'copy') },
  { name: 'B', module: load(B, 'copy') },
].map(({ name, module }, i) => {
  const redisClient = client();
  const limiter = new module.RateLimiter({
    name: `compare-${i}-${Date.now()}`,
    limit: 1_000_000,
    window: '1h',
    redis: redisClient,
    timeout: 1000,
    // Fail-open keeps no warm copy: what the continuity state costs, by difference.
    failClosed: !args.includes('--fail-open'),
  });
  return { name, limiter, redisClient, cpu: /** @type {number[]} */ ([]) };
});

/** @param {{ limiter: { consume(key: string): Promise<{ source: string }> } }} build */
async function run(build) {
  let next = 0;
  let wrongSource = 0;
  const worker = async () => {
    while (next < DECISIONS) {
      const key = `k${next++ % KEYS}`;
      const result = await build.limiter.consume(key);
      if (result.source !== 'redis') wrongSource++;
    }
  };
  const before = process.cpuUsage();
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  const used = process.cpuUsage(before);
  if (wrongSource > 0) throw new Error(`${wrongSource} decisions not made in Redis`);
  return (used.user + used.system) / DECISIONS;
}

await Promise.all(
  builds.map(b => (b.redisClient.status === 'ready' ? undefined : once(b.redisClient, 'ready'))),
);
for (const build of builds) await run(build); // warm-up
for (let round = 0; round < ROUNDS; round++) {
  // Rotate the order so no build always runs first.
  const order = builds.map((_, i) => builds[(i + round) % builds.length]);
  for (const build of order) if (build) build.cpu.push(await run(build));
}

const ratio = (/** @type {number[]} */ x, /** @type {number[]} */ y) =>
  x.map((v, i) => v / (y[i] ?? v));
const [a, a2, b] = builds;
if (!a || !a2 || !b) throw new Error('three builds expected');
console.log(`compare-builds: ${ROUNDS} rounds x ${DECISIONS} decisions, ${IN_FLIGHT} in flight`);
console.log(`  A  ${A}\n  B  ${B}`);
for (const build of builds) {
  const [low, high] = range(build.cpu);
  console.log(
    `  ${build.name.padEnd(3)} CPU µs/decision median ${median(build.cpu).toFixed(2)} (${low.toFixed(2)}..${high.toFixed(2)})`,
  );
}
const aa = ratio(a2.cpu, a.cpu);
const ba = ratio(b.cpu, a.cpu);
const show = (/** @type {number[]} */ r) => {
  const [low, high] = range(r);
  return `median ${median(r).toFixed(3)} (${low.toFixed(3)}..${high.toFixed(3)})`;
};
console.log(`  A/A control ratio ${show(aa)}`);
console.log(`  B/A ratio         ${show(ba)}`);

for (const build of builds) {
  await build.limiter.close();
  build.redisClient.disconnect();
}
await redis.kill();
