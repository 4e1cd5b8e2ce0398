import type { RedisClient } from './options.js';
import { isPermissionError, messageOf } from './redis-acl.js';
import type { Logger } from './types.js';

// ioredis reports why a connection failed (refused, TLS, WRONGPASS) only
// through its 'error' event; a command on a client that is not connected just
// fails with "Stream isn't writeable". This keeps the last such reason per
// client so the one log line of an outage can name the real cause.
const lastError = new WeakMap<object, string>();
const watched = new WeakSet<object>();
// Clients whose current failure needing an operator was logged already.
const logged = new WeakSet<object>();

// Causes only an operator can fix, by their description below.
const NEEDS_OPERATOR = /^(Redis rejected|Redis requires|TLS:)/;

// Node's codes for a certificate the client does not trust or that does not match.
const TLS_TRUST = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER|ERR_TLS/;

/**
 * Listens to `client`'s 'error' events (once per client) to remember why it is
 * not connected. A cause that reconnecting cannot cure (credentials refused,
 * a certificate not trusted) is also logged, once per transition: on the
 * first such failure after start-up or after the client was last ready, not
 * on every reconnect attempt. A network failure needs no line of its own: the
 * limiter's fallback line says Redis is unreachable. The listener also stops
 * ioredis from printing each failed attempt itself.
 */
export function watchConnectionErrors(client: RedisClient, logger: Logger): void {
  if (watched.has(client)) return;
  watched.add(client);
  client.on('error', (error: unknown) => noteFailure(client, error, logger));
  client.on('ready', () => {
    lastError.delete(client);
  });
}

/**
 * A command on `client` failed. Refused credentials show up here rather than
 * as a connection error when the client sent none on connecting (ioredis 5
 * without a password, say, answers NOAUTH to the first command).
 */
export function noteCommandError(client: RedisClient, error: unknown, logger: Logger): void {
  if (NEEDS_OPERATOR.test(describeConnectionError(error))) noteFailure(client, error, logger);
}

function noteFailure(client: RedisClient, error: unknown, logger: Logger): void {
  const reason = describeConnectionError(error);
  lastError.set(client, reason);
  // Not `client.status`: without a ready check ioredis 5 is 'ready' before
  // its AUTH is refused, and reconnects (and so turns 'ready') every time.
  if (logged.has(client) || !NEEDS_OPERATOR.test(reason)) return;
  logged.add(client);
  logger.warn(`resilient-rate-limit: cannot use Redis at ${endpointOf(client)}: ${reason}`);
}

/**
 * A Redis call on `client` succeeded: the next connection failure that needs
 * an operator is a new transition, and is logged again.
 */
export function markHealthy(client: RedisClient): void {
  logged.delete(client);
}

// Host and port only: never the URL, which may hold a password.
function endpointOf(client: RedisClient): string {
  if ('nodes' in client) return 'the Cluster';
  const { host, port, path } = client.options;
  return path ? String(path) : `${String(host)}:${String(port)}`;
}

/** Why `client` last failed to connect, if it is not connected now. */
export function lastConnectionError(client: RedisClient): string | undefined {
  return client.status === 'ready' ? undefined : lastError.get(client);
}

// The message only: ioredis errors carry the failed command's arguments,
// which for AUTH and HELLO are the credentials.
function describeConnectionError(error: unknown): string {
  const full = messageOf(error);
  if (full === undefined) return String(error);
  const message = full.split('\n')[0] ?? '';
  const code = (error as { code?: unknown }).code;
  if (message.startsWith('WRONGPASS'))
    return `Redis rejected the username or password (${message})`;
  if (message.startsWith('NOAUTH'))
    return `Redis requires authentication the client did not give (${message})`;
  if (typeof code === 'string' && TLS_TRUST.test(code))
    return `TLS: the client does not accept the server's certificate (${code}: ${message})`;
  return message;
}

/**
 * One line on why a Redis call failed: `reason` ('timeout', 'error', ...),
 * made concrete with the error and, when the client is not connected, the
 * last connection error.
 */
export function describeRedisFailure(
  reason: string,
  error: unknown,
  client: RedisClient | undefined,
): string {
  const connection = client && lastConnectionError(client);
  if (reason === 'not-connected') {
    return connection ? `Redis is not connected: ${connection}` : 'Redis is not connected';
  }
  const message = messageOf(error);
  if (reason === 'error' && message !== undefined) {
    if (message.includes("Stream isn't writeable") || message.includes('Connection is closed')) {
      return connection ? `Redis is not connected: ${connection}` : 'Redis is not connected';
    }
    if (isPermissionError(error))
      return `the Redis user lacks a permission: ${message.split(' script: ')[0]}; the ACL rule to add is logged once`;
    return message;
  }
  return connection ? `${reason}; Redis is not connected: ${connection}` : reason;
}
