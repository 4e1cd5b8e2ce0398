// @ts-check
// CPU profile of one bench/server.mjs variant under autocannon load, and the
// top self-time frames of the server process (aggregated by function + file).
//
//   node bench/profile.mjs [--variant rrl-redis] [--duration 10] [--connections 20]
//                          [--top 15] [--out /tmp/rrl-profile] [--interval 1000]
//
// The server runs the built package (dist/) under `node --cpu-prof`; the
// .cpuprofile is left in --out for a closer look (Chrome DevTools, speedscope).
// @ts-expect-error -- autocannon ships no type declarations
import autocannon from 'autocannon';
import { spawn } from 'node:child_process';
import { get } from 'node:http';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { freePort, ROOT, startRedis, stopChild } from '../scripts/lib/processes.mjs';
import { topSelfTime } from './lib/cpuprofile.mjs';

const args = process.argv.slice(2);
const arg = (/** @type {string} */ name, /** @type {string} */ fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
};
const VARIANT = arg('--variant', 'rrl-redis');
const DURATION = Number(arg('--duration', '10'));
const CONNECTIONS = Number(arg('--connections', '20'));
const TOP = Number(arg('--top', '15'));
const OUT = arg('--out', '/tmp/rrl-profile');
// Sampling interval in µs (node's default: 1000).
const INTERVAL = arg('--interval', '1000');

rmSync(OUT, { recursive: true, force: true });
mkdirSync(OUT, { recursive: true });
const redisPort = await freePort();
const redis = await startRedis(redisPort);
const port = await freePort();
const server = spawn(
  process.execPath,
  [
    '--cpu-prof',
    '--cpu-prof-interval',
    INTERVAL,
    '--cpu-prof-dir',
    OUT,
    join(ROOT, 'bench/server.mjs'),
    VARIANT,
    String(port),
    String(redisPort),
  ],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
const lines = createInterface({
  input: /** @type {import('node:stream').Readable} */ (server.stdout),
});
await new Promise((resolve, reject) => {
  server.once('exit', code => reject(new Error(`server exited with ${code}`)));
  lines.on('line', line => {
    if (line.includes('"ready":true')) resolve(undefined);
  });
});
const url = `http://127.0.0.1:${port}/`;
const result = await autocannon({
  url,
  connections: CONNECTIONS,
  duration: DURATION,
  pipelining: 1,
});
const check = await new Promise((resolve, reject) => {
  get(`http://127.0.0.1:${port}/__bench`, res => {
    let body = '';
    res.on('data', chunk => (body += chunk));
    res.on('end', () => resolve(JSON.parse(body)));
  }).on('error', reject);
});
await stopChild(server);
await redis.kill();

const file = readdirSync(OUT).find(name => name.endsWith('.cpuprofile'));
if (!file) throw new Error(`no .cpuprofile in ${OUT}`);
const profile = JSON.parse(readFileSync(join(OUT, file), 'utf8'));
console.log(
  `profile: ${VARIANT}, ${DURATION} s, ${CONNECTIONS} connections: ${result.requests.total} requests, ` +
    `${result.non2xx} non-2xx, p99 ${result.latency.p99} ms, server ${JSON.stringify(check)}`,
);
console.log(`  ${join(OUT, file)}`);
const { total, rows } = topSelfTime(profile, TOP);
console.log(`  sampled ${(total / 1000).toFixed(0)} ms; top ${TOP} self-time frames:`);
console.log('  | self % | self ms | function | file:line |');
console.log('  | -----: | ------: | -------- | --------- |');
for (const row of rows) {
  console.log(
    `  | ${row.percent.toFixed(1)} | ${(row.selfUs / 1000).toFixed(0)} | ${row.name} | ${row.where} |`,
  );
}
