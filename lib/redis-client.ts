import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from './types.js';
import type { RedisClient } from './options.js';

/**
 * The client built from a `redis://` URL. Tuned so a dead Redis fails a
 * command at once instead of holding it: no offline queue (queued commands
 * replay after reconnect and count twice), no per-request retries, no resend
 * of unanswered commands, a short connect timeout, and reconnects backing off
 * up to 2 s in the background. It sends nothing outside REDIS_COMMANDS
 * (lib/redis-acl.ts), so a least-privilege ACL user serves it without denials:
 * no INFO ready check (a Redis still loading answers LOADING, a store failure
 * like any other) and no CLIENT SETINFO.
 */
export function createFailFastClient(url: string): Redis {
  const client = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    connectTimeout: 1000,
    enableAutoPipelining: true,
    enableReadyCheck: false,
    disableClientInfo: true,
    retryStrategy: times => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    // How long disconnect() waits for a graceful close before destroying the
    // socket (ioredis default 2 s): a dead Redis never closes, and that timer
    // would keep a process that is shutting down alive. Not in ioredis's types.
    ...({ disconnectTimeout: 200 } as RedisOptions),
  });
  // Failures surface through commands and the breaker; without a listener
  // ioredis would print every reconnect error.
  client.on('error', () => undefined);
  return client;
}

type ClientHandle = { client: Redis; users: number };
const urlClients = new Map<string, ClientHandle>();

/** The client already built for `url`, if any, without acquiring it. */
export function peekUrlClient(url: string): Redis | undefined {
  return urlClients.get(url)?.client;
}

/**
 * One client per URL per process, so limiters on one URL share its breaker.
 * Reference-counted: pair each call with releaseUrlClient().
 */
export function acquireUrlClient(url: string): Redis {
  let handle = urlClients.get(url);
  if (!handle) {
    handle = { client: createFailFastClient(url), users: 0 };
    urlClients.set(url, handle);
  }
  handle.users++;
  return handle.client;
}

/** Gives back one acquireUrlClient(); the last one disconnects the client. */
export function releaseUrlClient(url: string): void {
  const handle = urlClients.get(url);
  if (!handle || --handle.users > 0) return;
  urlClients.delete(url);
  // quit() waits for a reply a dead Redis never sends; disconnect() does not.
  handle.client.disconnect();
}

const warned = new WeakSet<object>();

export function warnIfOfflineQueue(client: RedisClient, logger: Logger): void {
  const options = (client as { options?: { enableOfflineQueue?: boolean } }).options;
  if (options?.enableOfflineQueue === false || warned.has(client)) return;
  warned.add(client);
  logger.warn(
    'resilient-rate-limit: the Redis client has enableOfflineQueue on: commands queued while Redis is down replay after reconnect and count twice. Pass enableOfflineQueue: false (and maxRetriesPerRequest: 0), or a redis:// URL.',
  );
}
