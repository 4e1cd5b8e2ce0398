// @ts-check
// The ioredis client exactly as README "Recommended ioredis settings" builds
// it, for the benches' `rrl-redis-readme` variants (issue #16: measure what a
// user who brings their own client runs). The lines between the markers are a
// verbatim copy of the README snippet; readmeSnippetDrift() compares them with
// the README at run time, so a bench never silently measures a stale copy.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { ROOT } from '../../scripts/lib/processes.mjs';

/**
 * @param {string} url
 * @param {{ warn: (...args: unknown[]) => void }} logger
 */
export function buildReadmeClient(url, logger) {
  // readme:start
  const redis = new Redis(url, {
    enableOfflineQueue: false, // commands queued while disconnected replay after reconnect and count twice
    maxRetriesPerRequest: 0, // the breaker and the fallback handle failures; retries only add latency
    autoResendUnfulfilledCommands: false, // same double count on reconnect
    connectTimeout: 1000,
    enableAutoPipelining: true, // halves Redis CPU per decision under concurrency (see Performance)
    retryStrategy: times => Math.min(50 * 2 ** Math.min(times, 6), 2000), // reconnect in the background
  });
  // Optional: the package listens too and logs one line per outage; yours sees every failed reconnect.
  redis.on('error', error => logger.warn({ err: error }, 'redis'));
  // readme:end
  return redis;
}

/** @param {string} text */
const normalize = text =>
  text
    .split('\n')
    .map(line => line.trim())
    .filter(Boolean)
    .join('\n');

/**
 * Null when the copy above matches README's snippet (the lines from
 * `const redis = new Redis(` to the `redis.on('error'` line), else a message.
 */
export function readmeSnippetDrift() {
  const readme = readFileSync(`${ROOT}/README.md`, 'utf8');
  const section = readme.split('### Recommended ioredis settings')[1] ?? '';
  const block = /```ts\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
  const start = block.indexOf('const redis = new Redis(');
  const endLine = block.indexOf("redis.on('error'");
  if (start < 0 || endLine < 0) return 'README "Recommended ioredis settings": snippet not found';
  const fromReadme = block.slice(start, block.indexOf('\n', endLine));
  const own = readFileSync(fileURLToPath(import.meta.url), 'utf8');
  const copy = own.slice(own.indexOf('  const redis = new Redis('), own.indexOf('  // readme:end'));
  return normalize(fromReadme) === normalize(copy)
    ? null
    : 'bench/lib/readme-client.mjs is not a verbatim copy of README "Recommended ioredis settings": update it';
}
