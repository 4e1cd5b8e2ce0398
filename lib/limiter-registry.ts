import type { AlgorithmName, Logger } from './types.js';
import { infoWithCode, warnWithCode } from './warnings.js';

/** What the registry knows of one live limiter. */
export type RegisteredLimiter = {
  name: string;
  prefix: string;
  algorithm: AlgorithmName;
  limit: number;
  windowMs: number;
  /** With `policies`: every policy, described. */
  policies?: string | undefined;
  usesRedis: boolean;
  logger: Logger;
};

type Rule = { description: string; limiters: number };

// The rules live in this process by prefix + name; a name with two rules
// warns once for as long as the process runs.
const rules = new Map<string, Rule[]>();
const conflictsWarned = new Set<string>();
let redisBacked = 0;
const memoryOnly: RegisteredLimiter[] = [];
let memoryOnlyNoticed = false;

/**
 * Registers a live limiter to catch two mistakes that are silent otherwise:
 * two limiters sharing a name (and so their counters) with different rules,
 * which corrupt each other's counts (ERR_RRL_NAME_CONFLICT, a warning), and a
 * limiter without `redis` in a process whose other limiters use Redis, which
 * counts per process where shared counters were probably meant
 * (ERR_RRL_MEMORY_ONLY, one info line per process).
 * @returns the function to call when the limiter closes.
 */
export function registerLimiter(limiter: RegisteredLimiter): () => void {
  const id = `${limiter.prefix}${limiter.name}`;
  // A function limit leaves the core a placeholder far above any real limit.
  const perRequest = limiter.limit === Number.MAX_SAFE_INTEGER;
  const description =
    limiter.policies === undefined
      ? `${limiter.algorithm}, ${perRequest ? 'a per-request limit' : limiter.limit} per ${limiter.windowMs} ms`
      : `${limiter.algorithm}, policies ${limiter.policies}`;
  const known = rules.get(id) ?? [];
  rules.set(id, known);
  let rule = known.find(r => r.description === description);
  if (rule === undefined) {
    rule = { description, limiters: 0 };
    known.push(rule);
  }
  rule.limiters++;
  if (known.length > 1 && !conflictsWarned.has(id)) {
    conflictsWarned.add(id);
    warnWithCode(
      limiter.logger,
      'ERR_RRL_NAME_CONFLICT',
      `two limiters named '${limiter.name}' have different rules (${known.map(r => r.description).join(' and ')}); they share counters and corrupt each other's counts. Give each rule its own name`,
    );
  }

  if (limiter.usesRedis) redisBacked++;
  else memoryOnly.push(limiter);
  noticeMemoryOnly();

  const held = rule;
  let done = false;
  return () => {
    if (done) return;
    done = true;
    held.limiters--;
    if (held.limiters === 0) {
      known.splice(known.indexOf(held), 1);
      if (known.length === 0) rules.delete(id);
    }
    if (limiter.usesRedis) redisBacked--;
    else memoryOnly.splice(memoryOnly.indexOf(limiter), 1);
  };
}

function noticeMemoryOnly(): void {
  const first = memoryOnly[0];
  if (memoryOnlyNoticed || redisBacked === 0 || first === undefined) return;
  memoryOnlyNoticed = true;
  infoWithCode(
    first.logger,
    'ERR_RRL_MEMORY_ONLY',
    `'${first.name}' has no \`redis\` option, so it counts in this process's memory only, while other limiters here use Redis; pass \`redis\` if its counters should be shared between instances`,
  );
}
