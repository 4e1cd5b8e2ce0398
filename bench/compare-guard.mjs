// @ts-check
// What the guard around each Redis call costs (StoreBreaker.execute around
// withTimeout) in two builds, in one process, in interleaved rounds: CPU per
// call above a bare awaited call answered a macrotask later, like a Redis
// reply. No Redis and no ioredis, so the difference is not lost in their
// noise the way it is in compare-builds.mjs.
//
//   node bench/compare-guard.mjs --a /tmp/before/dist/cjs [--b dist/cjs]
//                                [--rounds 12] [--calls 100000] [--in-flight 1,20,50]
import { createRequire } from 'node:module';
import path from 'node:path';
import { setImmediate } from 'node:timers';
import { ConsecutiveBreaker, circuitBreaker, handleAll } from 'cockatiel';
import { median, range } from './lib/report.mjs';

const require = createRequire(import.meta.url);
const args = process.argv.slice(2);
const arg = (/** @type {string} */ name, /** @type {string} */ fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
};
const A = path.resolve(arg('--a', 'dist/cjs'));
const B = path.resolve(arg('--b', 'dist/cjs'));
const ROUNDS = Number(arg('--rounds', '12'));
const CALLS = Number(arg('--calls', '100000'));
const IN_FLIGHT = arg('--in-flight', '1,20,50').split(',').map(Number);

/** @param {string} dist a build's dist/cjs directory */
function guard(dist) {
  const { StoreBreaker } = require(path.join(dist, 'breaker.js'));
  const { withTimeout } = require(path.join(dist, 'timeout.js'));
  const policy = circuitBreaker(handleAll, {
    halfOpenAfter: 1000,
    breaker: new ConsecutiveBreaker(5),
  });
  // As BreakerRegistry builds one (builds before #16 ignore the 4th argument).
  const breaker = new StoreBreaker(policy, 1000, () => true, true);
  return (/** @type {Promise<unknown>} */ call) => breaker.execute(() => withTimeout(call, 1000));
}

const reply = () => new Promise(resolve => setImmediate(resolve));

/**
 * @param {((call: Promise<unknown>) => Promise<unknown>) | undefined} wrap
 * @param {number} inFlight
 */
async function run(wrap, inFlight) {
  let next = 0;
  const worker = async () => {
    while (next++ < CALLS) await (wrap ? wrap(reply()) : reply());
  };
  const before = process.cpuUsage();
  await Promise.all(Array.from({ length: inFlight }, worker));
  const used = process.cpuUsage(before);
  return (used.user + used.system) / CALLS;
}

const a = guard(A);
const b = guard(B);
console.log(`compare-guard: ${ROUNDS} rounds x ${CALLS} calls\n  A  ${A}\n  B  ${B}`);
for (const inFlight of IN_FLIGHT) {
  await run(a, inFlight); // warm-up
  await run(b, inFlight);
  /** @type {number[]} */ const costA = [];
  /** @type {number[]} */ const costB = [];
  for (let round = 0; round < ROUNDS; round++) {
    const bare = await run(undefined, inFlight);
    const first = round % 2 === 0 ? a : b;
    const x = (await run(first, inFlight)) - bare;
    const y = (await run(first === a ? b : a, inFlight)) - bare;
    costA.push(first === a ? x : y);
    costB.push(first === a ? y : x);
  }
  const ratios = costB.map((v, i) => v / (costA[i] ?? v));
  const [low, high] = range(ratios);
  console.log(
    `  ${String(inFlight).padStart(2)} in flight: µs per call A ${median(costA).toFixed(3)}, B ${median(costB).toFixed(3)}; B/A median ${median(ratios).toFixed(2)} (${low.toFixed(2)}..${high.toFixed(2)})`,
  );
}
