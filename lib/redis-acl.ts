import type { RedisClient } from './options.js';
import { withTimeout } from './timeout.js';
import type { Logger } from './types.js';

/**
 * Every Redis command this package sends, including those its Lua scripts
 * call (Redis checks those against the user too), in ACL spelling. The one
 * list behind the README's ACL line, `redisAclRules()`, the permission report
 * below and the ACL tests, which fail if the package sends a command missing
 * here or stops sending one listed here.
 */
export const REDIS_COMMANDS = [
  'evalsha', // every decision
  'eval', // after NOSCRIPT (script cache flushed, restart, failover); every instance registry refresh
  'script|load', // loads the decision script when a connection becomes ready
  'time', // scripts read Redis's clock
  'hmget', // scripts read a counter
  'hset', // scripts write a counter (and reset's marker)
  'hincrby', // scripts count a hit within a stored window
  'pexpire', // scripts expire a counter with its window, and the registry's set with its horizon
  'del', // the reset script
  // The instance registry (fallbackLimit: 'share', lib/instance-registry.ts):
  'zadd', // its refresh script writes this instance's presence
  'zremrangebyscore', // its refresh script drops instances not seen within the horizon
  'zcard', // its refresh script counts the live instances
  'zrem', // close() removes this instance
] as const;

export type RedisCommand = (typeof REDIS_COMMANDS)[number];

// ACL key patterns are globs: a prefix's own glob characters must match literally.
function globEscape(prefix: string): string {
  return prefix.replace(/[*?[\]\\]/g, '\\$&');
}

/**
 * The least-privilege ACL rules for a Redis user that serves rules with key
 * prefix `prefix` (default `'rl:'`): no channels, no command but those in
 * REDIS_COMMANDS, no key outside the prefix. Use as
 * `ACL SETUSER limiter on >password <rules>` or in an ACL file.
 */
export function redisAclRules(prefix = 'rl:'): string {
  const commands = REDIS_COMMANDS.map(command => `+${command}`).join(' ');
  return `resetchannels -@all ~${globEscape(prefix)}* ${commands}`;
}

const PERMISSION_ERROR = /NOPERM|can't run this command|can't access at least one of the keys/;

/** True for Redis's "this user may not" errors (top-level NOPERM and the script forms). */
export function isPermissionError(error: unknown): boolean {
  const message = messageOf(error);
  return message !== undefined && PERMISSION_ERROR.test(message);
}

/**
 * An error's message, duck-typed: errors from Node's own modules (TLS, net)
 * fail `instanceof Error` where the package runs in another realm (a jest or
 * vm context), and must still be described.
 */
export function messageOf(error: unknown): string | undefined {
  const message = (error as { message?: unknown } | null)?.message;
  return typeof message === 'string' ? message : undefined;
}

// A well-formed call of each command on `key`, for redis.acl_check_cmd. The
// full arity matters: Redis 7.0 reads key positions without checking the
// argument count, and crashes on a short EVALSHA (found by these tests).
function probe(command: RedisCommand, key: string): string[] {
  switch (command) {
    case 'evalsha':
      return ['evalsha', '0'.repeat(40), '1', key];
    case 'eval':
      return ['eval', 'return 1', '1', key];
    case 'script|load':
      return ['script', 'load', 'return 1'];
    case 'time':
      return ['time'];
    case 'hmget':
      return ['hmget', key, 'a'];
    case 'hset':
    case 'hincrby':
      return [command, key, 'a', '1'];
    case 'pexpire':
      return ['pexpire', key, '1'];
    case 'del':
      return ['del', key];
    case 'zadd':
      return ['zadd', key, '0', 'a'];
    case 'zremrangebyscore':
      return ['zremrangebyscore', key, '-inf', '0'];
    case 'zcard':
      return ['zcard', key];
    case 'zrem':
      return ['zrem', key, 'a'];
  }
}

// What fails without a rule the instance registry alone needs: decisions do
// not use these, so "decisions fall back" would send the reader astray.
const REGISTRY_ONLY: Readonly<Record<string, string>> = {
  '+zadd': 'the instance registry cannot refresh',
  '+zremrangebyscore': 'the instance registry cannot refresh',
  '+zcard': 'the instance registry cannot refresh',
  '+zrem': 'close() cannot remove this instance from the instance registry',
};

function consequenceOf(rules: readonly string[]): string {
  if (!rules.every(rule => REGISTRY_ONLY[rule] !== undefined)) {
    return 'Redis decisions fall back until it has them';
  }
  const effects = [...new Set(rules.map(rule => REGISTRY_ONLY[rule]))].join(' and ');
  return `${effects} (fallbackLimit: 'share'), so outage budgets use a stale live count until it has them`;
}

// Asks Redis which listed commands the current user may not run. ARGV holds
// the probes, each as its argument count followed by its arguments; the
// reply lists the 1-based indexes of the denied ones. redis.acl_check_cmd
// exists from Redis 7.0; on 6.x the call fails and the report names every
// candidate instead.
const WHICH_DENIED = `
local denied = {}
local i = 1
local n = 0
while i <= #ARGV do
  local count = tonumber(ARGV[i])
  if not count then break end
  n = n + 1
  local args = {}
  for j = 1, count do args[j] = ARGV[i + j] end
  if not redis.acl_check_cmd(unpack(args)) then denied[#denied + 1] = n end
  i = i + count + 1
end
return denied`;

const DIAGNOSE_TIMEOUT_MS = 1000;

type Report = { reported: Set<string>; diagnosing: boolean };
const reports = new WeakMap<object, Report>();

/**
 * Logs, once per client and missing right, which command or key pattern the
 * Redis user lacks and the ACL rule that grants it. Called with the errors of
 * decisions, resets and the instance registry; `redisKey` is a key under
 * `prefix` the failed call used. Redis 7.0 does not name a
 * command refused inside a script, so for those this asks Redis (one EVAL of
 * `redis.acl_check_cmd`, at most one at a time). Never throws.
 */
export function reportPermissionError(
  client: RedisClient,
  error: unknown,
  redisKey: string,
  prefix: string,
  logger: Logger,
): void {
  if (!isPermissionError(error)) return;
  const message = messageOf(error) ?? '';
  let report = reports.get(client);
  if (!report) {
    report = { reported: new Set(), diagnosing: false };
    reports.set(client, report);
  }
  const state = report;
  const user = userOf(client);
  const say = (missing: string[], detail: string): void => {
    const fresh = missing.filter(rule => !state.reported.has(rule));
    if (fresh.length === 0) return;
    for (const rule of fresh) state.reported.add(rule);
    logger.error(
      `resilient-rate-limit: the Redis user '${user}' lacks ${fresh.map(r => `'${r}'`).join(', ')} (${detail}); ${consequenceOf(fresh)}. Add: ACL SETUSER ${user} ${fresh.join(' ')} (this package needs: ${redisAclRules(prefix)})`,
    );
  };
  const named = /run the '([^']+)' command/.exec(message)?.[1];
  if (named !== undefined) return say([`+${named.toLowerCase()}`], firstLine(message));
  if (/access/.test(message)) {
    return say([`~${globEscape(prefix)}*`], 'it may not access the keys under the rule prefix');
  }
  if (state.diagnosing) return;
  state.diagnosing = true;
  const probes = REDIS_COMMANDS.flatMap(command => {
    const args = probe(command, redisKey);
    return [String(args.length), ...args];
  });
  withTimeout(
    client.eval(WHICH_DENIED, 1, redisKey, ...probes) as Promise<unknown>,
    DIAGNOSE_TIMEOUT_MS,
  ).then(
    denied => {
      const names = Array.isArray(denied)
        ? denied.map(index => REDIS_COMMANDS[Number(index) - 1] ?? String(index))
        : [];
      if (names.length > 0)
        say(
          names.map(name => `+${name}`),
          'a command the scripts call',
        );
      else state.diagnosing = false;
    },
    () => {
      say(
        REDIS_COMMANDS.map(command => `+${command}`),
        `${firstLine(message)}; this Redis cannot say which command`,
      );
    },
  );
}

function userOf(client: RedisClient): string {
  const options = (
    client as { options?: { username?: string; redisOptions?: { username?: string } } }
  ).options;
  return options?.username ?? options?.redisOptions?.username ?? 'default';
}

function firstLine(message: string): string {
  // Script errors end in "script: <sha>, on @user_script:1." which says nothing useful.
  return message.split(/ script: /)[0] ?? message;
}
