// @ts-check
// Redis memory per limited key, per algorithm: what a flood of distinct keys
// (an attacker rotating addresses) can make Redis store. Run by `npm run
// bench` after the HTTP rounds, or alone: `node bench/memory.mjs [--keys N]
// [--no-build] [--no-write]`. Writes the "memory" section of BENCHMARKS.md.
//
// Two numbers per algorithm: Redis's own MEMORY USAGE of one key (the value
// and key object), and the growth of used_memory per key over N keys (adds the
// keyspace and expiry dictionary entries: the number to multiply by keys).
// A plain counter (INCR + PEXPIRE on a string key of the same name, what
// rate-limit-redis stores) is the reference.
import { createRequire } from 'node:module';
import { ensureBuilt, freePort, ROOT, sleep, startRedis } from '../scripts/lib/processes.mjs';
import { fmt, markdownTable, textTable, writeSection } from './lib/report.mjs';

const require = createRequire(import.meta.url);

/** A /56 IPv6 group, the default key's form for IPv6 clients: what a rotating attacker sends. */
const keyOf = (/** @type {number} */ i) =>
  `2001:db8:${(i >> 8).toString(16)}:${((i & 0xff) << 8).toString(16)}::/56`;

const ALGORITHMS = ['fixed-window', 'sliding-window', 'token-bucket'];

/** @param {string[]} argv */
function parseArgs(argv) {
  const options = { keys: 10_000, build: true, write: true };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].split('=');
    if (flag === '--keys') options.keys = Number(inline ?? argv[++i]);
    else if (flag === '--no-build') options.build = false;
    else if (flag === '--no-write') options.write = false;
    else throw new Error(`unknown flag ${flag}`);
  }
  if (!Number.isSafeInteger(options.keys) || options.keys < 100)
    throw new Error(`--keys must be an integer >= 100, got ${options.keys}`);
  return options;
}

/**
 * @param {import('ioredis').Redis} admin
 * @returns {Promise<number>}
 */
async function usedMemory(admin) {
  const info = await admin.info('memory');
  return Number(/used_memory:(\d+)/.exec(info)?.[1]);
}

/**
 * Measures every algorithm and the plain counter on the Redis at `port`.
 * @param {number} port
 * @param {number} keys
 */
export async function measureMemory(port, keys) {
  const { RateLimiter } = require(`${ROOT}/dist/cjs/index.js`);
  const { Redis } = require('ioredis');
  const admin = new Redis({ port, host: '127.0.0.1' });
  const url = `redis://127.0.0.1:${port}`;
  /** @type {{ what: string, usage: number, perKey: number, sample: string }[]} */
  const rows = [];
  try {
    /**
     * @param {string} what
     * @param {(i: number) => Promise<unknown>} write
     * @param {string} sample the Redis key written for i = 0
     */
    const measure = async (what, write, sample) => {
      await admin.flushall();
      const before = await usedMemory(admin);
      for (let i = 0; i < keys; i += 500) {
        const batch = [];
        for (let j = i; j < Math.min(keys, i + 500); j++) batch.push(write(j));
        await Promise.all(batch);
      }
      const after = await usedMemory(admin);
      const usage = Number(await admin.call('MEMORY', 'USAGE', sample, 'SAMPLES', '0'));
      if (!(usage > 0)) throw new Error(`${what}: no key ${sample} in Redis`);
      rows.push({ what, usage, perKey: (after - before) / keys, sample });
    };
    await measure(
      'plain counter (INCR + PEXPIRE)',
      i =>
        admin
          .multi()
          .incr(`rl:{rule|${keyOf(i)}}`)
          .pexpire(`rl:{rule|${keyOf(i)}}`, 60_000)
          .exec(),
      `rl:{rule|${keyOf(0)}}`,
    );
    for (const algorithm of ALGORITHMS) {
      const limiter = new RateLimiter({
        name: 'rule',
        limit: 100,
        window: '1m',
        algorithm,
        redis: url,
        timeout: 5000,
        breaker: { threshold: 1_000_000, halfOpenAfter: 1000 },
        // The warm-up below may decide in memory before the URL client is up;
        // the merge of that hit into Redis is not news here.
        logger: { warn: console.warn, info() {}, error: console.error },
      });
      try {
        // The URL client connects in the background: wait for it.
        const deadline = Date.now() + 5000;
        while ((await limiter.consume('warm-up')).source !== 'redis') {
          if (Date.now() > deadline) throw new Error(`${algorithm}: Redis not reachable`);
          await sleep(20);
        }
        await measure(
          algorithm,
          async i => {
            const result = await limiter.consume(keyOf(i));
            if (result.source !== 'redis')
              throw new Error(`${algorithm}: decided by ${result.source}`);
          },
          `rl:{rule|${keyOf(0)}}`,
        );
      } finally {
        await limiter.close();
      }
    }
    // The peers, as their docs build them (keys: their own default prefixes).
    const { RateLimiterRedis } = require('rate-limiter-flexible');
    const { RedisStore } = require('rate-limit-redis');
    const peer = new Redis(url, { enableOfflineQueue: false });
    try {
      await new Promise(resolve => peer.once('ready', resolve));
      const rlf = new RateLimiterRedis({ storeClient: peer, points: 100, duration: 60 });
      await measure(
        'peer: rate-limiter-flexible RateLimiterRedis',
        i => rlf.consume(keyOf(i)),
        `rlflx:${keyOf(0)}`,
      );
      const store = new RedisStore({
        sendCommand: (/** @type {string[]} */ ...command) => peer.call(...command),
      });
      store.init(/** @type {any} */ ({ windowMs: 60_000 }));
      await measure(
        'peer: rate-limit-redis (express-rate-limit)',
        i => store.increment(keyOf(i)),
        `rl:${keyOf(0)}`,
      );
    } finally {
      peer.disconnect();
    }
  } finally {
    admin.disconnect();
  }
  return rows;
}

/**
 * Measures on the Redis at `port`, prints the table and, unless `write` is
 * false, writes the "memory" section of BENCHMARKS.md.
 * @param {number} port
 * @param {{ keys: number, write: boolean }} options
 */
export async function runMemoryBench(port, { keys, write }) {
  const rows = await measureMemory(port, keys);
  const head = ['stored per key', 'MEMORY USAGE (B)', 'used_memory growth per key (B)'];
  const cells = rows.map(r => [r.what, fmt(r.usage), fmt(r.perKey)]);
  console.log('\n' + textTable(head, cells));
  if (!write) return;
  const date = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const body = [
    '## Redis memory per limited key (`npm run bench`, `node bench/memory.mjs`)',
    '',
    `${fmt(keys)} distinct keys of the default IPv6 /56 form (\`${keyOf(0)}\`, Redis key \`${rows[0]?.sample}\`), one rule, on a fresh redis-server, ${date}. MEMORY USAGE is Redis's estimate for one key; used_memory growth per key adds the keyspace and expiry entries, and is the number to multiply by keys. README "Security" turns it into a bound.`,
    '',
    markdownTable(head, cells, 'lrr'),
    '',
  ].join('\n');
  console.log(`\nwrote ${writeSection('memory', body)}`);
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  ensureBuilt(options.build);
  const redis = await startRedis(await freePort());
  await runMemoryBench(redis.port, options);
  await redis.kill();
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch(error => {
    console.error(error);
    process.exit(1);
  });
}
