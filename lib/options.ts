import type { CircuitBreakerPolicy } from 'cockatiel';
import type { Cluster, Redis } from 'ioredis';
import { systemClock, type Clock } from './clock.js';
import { MAX_TIMER_MS, MAX_WINDOW_MS, describe, parseDuration } from './duration.js';
import { RateLimitConfigError } from './errors.js';
import { toSafeLogger } from './logger.js';
import { MemoryStore, type MemoryStoreOptions } from './stores/memory-store.js';
import type { RateLimitMetrics } from './metrics.js';
import type { AlgorithmName, Logger } from './types.js';
import { warnWithCode } from './warnings.js';

export type RedisClient = Redis | Cluster;

export type BreakerOptions = {
  /** Consecutive failures that open the breaker. Default 5. */
  threshold?: number;
  /** Ms the breaker stays open before a half-open probe. Default 30 000. */
  halfOpenAfter?: number;
};

/** One quota of a limiter with several (`policies`). */
export type PolicyOptions = {
  /** Names the policy in headers, `result.policies`, metrics and keys; unique per limiter. */
  name: string;
  /** Cost units per window. */
  limit: number;
  /** Window length: ms, or `'500ms' '30s' '15m' '1h' '1d'`. */
  window: number | string;
  /**
   * This policy's per-instance limit during an outage; default its `limit`,
   * or its share of it with the limiter's `fallbackLimit: 'share'`.
   */
  fallbackLimit?: number;
};

/**
 * A limiter's quota: one `limit` per `window`, or 1 to 4 `policies` decided
 * together. One of the two is required (checked at construction: the
 * options are often assembled at run time, where a union type gets in the
 * way more than it helps).
 */
export type RuleOptions = {
  /** Requests (cost units) per window. Required unless `policies`. */
  limit?: number;
  /** Window length: ms, or `'500ms' '30s' '15m' '1h' '1d'`. Required unless `policies`. */
  window?: number | string;
  /**
   * Instead of `limit`/`window`: several quotas on one key ("10 per second
   * and 1000 per day"), 1 to 4, names unique. A request is admitted only if
   * every policy admits it, and a request any policy denies consumes in none
   * of them; on Redis all are decided in one script call.
   */
  policies?: readonly PolicyOptions[];
};

/** Options of the framework-free `RateLimiter`, besides its quota. */
export type RateLimiterBaseOptions = {
  /** Rule id: namespaces keys and labels headers and metrics. */
  name?: string;
  /** During an outage: memory store decides (true, default) or requests pass (false). */
  failClosed?: boolean;
  /** ioredis client or cluster, or a `redis://` URL. Absent: memory-only. */
  redis?: RedisClient | string;
  algorithm?: AlgorithmName;
  /** Ms budget for one Redis decision. Default 100. */
  timeout?: number;
  breaker?: BreakerOptions | CircuitBreakerPolicy;
  memory?: MemoryStore | MemoryStoreOptions;
  /**
   * Per-instance limit the memory store enforces during an outage. Default
   * `limit`. `'share'`: `ceil(limit / N)` (at least 1), N being the live
   * instances this one last saw in Redis, so the fleet admits about `limit`.
   */
  fallbackLimit?: number | 'share';
  /**
   * With `fallbackLimit: 'share'`: how long an instance that stopped
   * refreshing its presence in Redis still counts as live. ms or `'30s'`;
   * at least 2 s (presence is refreshed every second). Default `'30s'`.
   */
  instanceHorizon?: number | string;
  /** Redis key prefix. Default `'rl:'`. */
  prefix?: string;
  /** Time source for memory decisions and headers. */
  clock?: Clock;
  /**
   * Where Redis decisions take their time from: `'redis'` (TIME, default:
   * immune to app clock skew) or `'clock'` (the `clock` option: for tests).
   */
  redisTime?: 'redis' | 'clock';
  logger?: Logger;
  /** Metrics hooks, e.g. from `createPrometheusMetrics(promClient)`. */
  metrics?: RateLimitMetrics;
};

/** Options of the framework-free `RateLimiter`. */
export type RateLimiterOptions = RateLimiterBaseOptions & RuleOptions;

/** One validated quota. A limiter without `policies` has one, named after it. */
export type PolicyConfig = {
  name: string;
  limit: number;
  windowMs: number;
  /** Appended to the limiter's storage keys: '' without `policies`, else `|name`. */
  suffix: string;
  /** Its own outage limit, if the policy set one. */
  fallbackLimit: number | undefined;
};

/** The validated, defaulted form every module works from. */
export type LimiterConfig = {
  name: string;
  named: boolean;
  limit: number;
  windowMs: number;
  failClosed: boolean;
  redis: RedisClient | string | undefined;
  algorithm: AlgorithmName;
  timeoutMs: number;
  breaker: Required<BreakerOptions> | CircuitBreakerPolicy;
  memory: MemoryStore | undefined;
  ownsMemory: boolean;
  fallbackLimit: number | 'share';
  /** Every quota, in the order given; one entry without `policies`. */
  policies: readonly PolicyConfig[];
  /** `policies` was given (even with one entry). */
  multiPolicy: boolean;
  instanceHorizonMs: number;
  prefix: string;
  clock: Clock;
  redisTime: 'redis' | 'clock';
  logger: Logger;
  metrics: RateLimitMetrics | undefined;
};

export const LIMITER_OPTIONS = [
  'name',
  'limit',
  'window',
  'policies',
  'failClosed',
  'redis',
  'algorithm',
  'timeout',
  'breaker',
  'memory',
  'fallbackLimit',
  'instanceHorizon',
  'prefix',
  'clock',
  'redisTime',
  'logger',
  'metrics',
] as const;

const ALGORITHMS: readonly AlgorithmName[] = ['fixed-window', 'sliding-window', 'token-bucket'];

// Names people bring from express-rate-limit (ERL), rate-limiter-flexible
// (RLF) and @fastify/rate-limit, each with what to write here instead.
const RENAMED: Record<string, string> = {
  windowMs: "did you mean 'window'?",
  max: "did you mean 'limit'?",
  points: "did you mean 'limit'?",
  duration:
    "did you mean 'window'? `duration` counts seconds; `window` takes ms or a string: duration: 60 is window: '60s'",
  timeWindow: "did you mean 'window'?",
  keyGenerator: "did you mean 'key'?",
  keyPrefix: "did you mean 'prefix'?",
  standardHeaders: "did you mean 'headers'?",
  legacyHeaders: "did you mean 'headers'?",
  message: "use 'handler' to shape the 429 response",
  statusCode: "use 'handler' to shape the 429 response",
  errorResponseBuilder: "use 'handler' to shape the 429 response",
  store: "pass an ioredis client or a redis:// URL as 'redis'",
  storeClient: "did you mean 'redis'?",
  passOnStoreError: "use 'failClosed: false' to let requests through while Redis is out",
  insuranceLimiter: "the memory fallback is built in: 'failClosed: true' (the default)",
  blockDuration:
    "not supported: a denied request already waits until capacity frees (Retry-After); use a longer 'window' or 'token-bucket'",
  allowList: "use 'skip'",
};

// Printable ASCII without the characters that would break the quoted header
// string (`"` `\`), a Redis Cluster hash tag (`{` `}`) or the `|` that joins
// name and key in stored keys.
const NAME_PATTERN = /^[\x20-\x7e]{1,128}$/;
const NAME_FORBIDDEN = /["\\{}|]/;

export function rejectUnknownOptions(options: object, known: readonly string[]): void {
  for (const option of Object.keys(options)) {
    if (known.includes(option)) continue;
    const hint = Object.hasOwn(RENAMED, option) ? ` (${RENAMED[option]})` : '';
    throw new RateLimitConfigError(`unknown option '${option}'${hint}`, option);
  }
}

const defaultLogger: Logger = console;

export function parseLimiterOptions(options: RateLimiterOptions): LimiterConfig {
  if (typeof options !== 'object' || options === null) {
    throw new RateLimitConfigError(
      `options must be an object, got ${describe(options)}`,
      'options',
    );
  }
  const policies = parsePolicies(options);
  const { limit, windowMs } = policies[0]!;
  const algorithm = options.algorithm ?? 'fixed-window';
  if (!ALGORITHMS.includes(algorithm)) {
    throw new RateLimitConfigError(
      `algorithm must be one of ${ALGORITHMS.map(a => `'${a}'`).join(', ')}, got ${describe(algorithm)}`,
      'algorithm',
    );
  }
  const failClosed = options.failClosed ?? true;
  if (typeof failClosed !== 'boolean') {
    throw new RateLimitConfigError(
      `failClosed must be a boolean, got ${describe(failClosed)}`,
      'failClosed',
    );
  }
  const timeoutMs =
    options.timeout === undefined ? 100 : parseDuration(options.timeout, 'timeout', MAX_TIMER_MS);
  const fallbackLimit = parseFallbackLimit(options.fallbackLimit, limit);
  if (options.policies !== undefined && typeof options.fallbackLimit === 'number') {
    throw new RateLimitConfigError(
      "fallbackLimit must be 'share' (or left out) with policies: give a number to each policy as its own fallbackLimit",
      'fallbackLimit',
    );
  }
  const instanceHorizonMs = parseInstanceHorizon(options.instanceHorizon);
  const prefix = options.prefix ?? 'rl:';
  if (typeof prefix !== 'string' || /[{}]/.test(prefix) || prefix.length > 128) {
    throw new RateLimitConfigError(
      `prefix must be a string of at most 128 characters without '{' or '}', got ${describe(prefix)}`,
      'prefix',
    );
  }
  const named = options.name !== undefined;
  const name = named
    ? parseName(options.name)
    : `${algorithm}-${policies.map(p => `${p.limit}-per-${p.windowMs}ms`).join('-and-')}`;
  if (options.policies === undefined) policies[0]!.name = name;
  const clock = parseClock(options.clock);
  const redisTime = options.redisTime ?? 'redis';
  if (redisTime !== 'redis' && redisTime !== 'clock') {
    throw new RateLimitConfigError(
      `redisTime must be 'redis' or 'clock', got ${describe(redisTime)}`,
      'redisTime',
    );
  }
  const logger = toSafeLogger(options.logger ?? defaultLogger);
  const metrics = parseMetrics(options.metrics);
  const { memory, ownsMemory } = parseMemory(options.memory, options.clock);
  return {
    name,
    named,
    limit,
    windowMs,
    failClosed,
    redis: parseRedis(options.redis),
    algorithm,
    timeoutMs,
    breaker: parseBreaker(options.breaker),
    memory,
    ownsMemory,
    fallbackLimit,
    policies,
    multiPolicy: options.policies !== undefined,
    instanceHorizonMs,
    prefix,
    clock,
    redisTime,
    logger,
    metrics,
  };
}

// Derived names seen in this process, and whether their warning went out.
const derivedNames = new Map<string, boolean>();

/**
 * Warns once per name when a second unnamed limiter derives a name already
 * derived in this process: the two share counters, which is rarely meant.
 */
export function warnIfDerivedNameTaken(name: string, logger: Logger): void {
  const warned = derivedNames.get(name);
  if (warned === undefined) {
    derivedNames.set(name, false);
    return;
  }
  if (warned) return;
  derivedNames.set(name, true);
  logger.warn(
    `resilient-rate-limit: two unnamed limiters share the derived name '${name}' and therefore their counters; give each a distinct \`name\``,
  );
}

/**
 * Warns when a numeric `window` under a second looks like seconds, as
 * rate-limiter-flexible's `duration` and many configs count: `window: 60`
 * is 60 ms. A string (`'60ms'`) says what is meant and is never warned about.
 */
export function warnIfWindowLooksLikeSeconds(name: string, window: unknown, logger: Logger): void {
  if (typeof window !== 'number' || window >= 1000) return;
  warnWithCode(
    logger,
    'ERR_RRL_WINDOW_SECONDS',
    `'${name}' has window: ${window}, which is ${window} ms. For seconds write '${window}s' (or ${window * 1000}); to keep ${window} ms and silence this, write '${window}ms'`,
  );
}

function parseName(name: unknown, option = 'name'): string {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name) || NAME_FORBIDDEN.test(name)) {
    throw new RateLimitConfigError(
      `${option} must be 1-128 printable ASCII characters without '"', '\\', '{', '}' or '|', got ${describe(name)}`,
      option,
    );
  }
  return name;
}

const MAX_POLICIES = 4;
const POLICY_OPTIONS = ['name', 'limit', 'window', 'fallbackLimit'];

// `limit` and `window`, or `policies`: the quotas a limiter enforces.
function parsePolicies(options: RateLimiterOptions): PolicyConfig[] {
  const given = options.policies as unknown;
  if (given === undefined) {
    return [
      {
        name: '',
        limit: positiveInteger(options.limit, 'limit'),
        windowMs: parseDuration(options.window, 'window', MAX_WINDOW_MS),
        suffix: '',
        fallbackLimit: undefined,
      },
    ];
  }
  if (options.limit !== undefined || options.window !== undefined) {
    throw new RateLimitConfigError(
      'give either limit and window, or policies, not both: with policies each policy has its own limit and window',
      options.limit !== undefined ? 'limit' : 'window',
    );
  }
  if (!Array.isArray(given) || given.length < 1 || given.length > MAX_POLICIES) {
    throw new RateLimitConfigError(
      `policies must be an array of 1 to ${MAX_POLICIES} { name, limit, window }, got ${describe(given)}`,
      'policies',
    );
  }
  const names = new Set<string>();
  return given.map((policy: unknown, i) => {
    const at = `policies[${i}]`;
    if (typeof policy !== 'object' || policy === null) {
      throw new RateLimitConfigError(
        `${at} must be an object { name, limit, window }, got ${describe(policy)}`,
        at,
      );
    }
    rejectUnknownOptions(policy, POLICY_OPTIONS);
    const { name, limit, window, fallbackLimit } = policy as Record<string, unknown>;
    const parsedName = parseName(name, `${at}.name`);
    if (names.has(parsedName)) {
      throw new RateLimitConfigError(
        `policy names must be unique: '${parsedName}' is given twice`,
        `${at}.name`,
      );
    }
    names.add(parsedName);
    return {
      name: parsedName,
      limit: positiveInteger(limit, `${at}.limit`),
      windowMs: parseDuration(window, `${at}.window`, MAX_WINDOW_MS),
      suffix: '|' + parsedName,
      fallbackLimit:
        fallbackLimit === undefined
          ? undefined
          : positiveInteger(fallbackLimit, `${at}.fallbackLimit`),
    };
  });
}

function positiveInteger(value: unknown, option: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new RateLimitConfigError(
      `${option} must be a positive integer, got ${describe(value)}`,
      option,
    );
  }
  return value;
}

function parseFallbackLimit(value: unknown, limit: number): number | 'share' {
  if (value === undefined) return limit;
  if (value === 'share') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 1) return value;
  throw new RateLimitConfigError(
    `fallbackLimit must be a positive integer or 'share', got ${describe(value)}`,
    'fallbackLimit',
  );
}

// Below two refresh periods a live instance could miss the horizon between
// two refreshes and flicker out of the count.
const MIN_INSTANCE_HORIZON_MS = 2000;

function parseInstanceHorizon(value: unknown): number {
  if (value === undefined) return 30_000;
  const ms = parseDuration(value, 'instanceHorizon');
  if (ms < MIN_INSTANCE_HORIZON_MS) {
    throw new RateLimitConfigError(
      `instanceHorizon must be at least ${MIN_INSTANCE_HORIZON_MS} ms, got ${describe(value)}`,
      'instanceHorizon',
    );
  }
  return ms;
}

function parseRedis(redis: unknown): RedisClient | string | undefined {
  if (redis === undefined) return undefined;
  if (typeof redis === 'string') {
    let url: URL | undefined;
    try {
      url = new URL(redis);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'redis:' && url.protocol !== 'rediss:')) {
      throw new RateLimitConfigError(
        `redis must be an ioredis client or a redis:// URL, got ${describe(redis)}`,
        'redis',
      );
    }
    return redis;
  }
  if (isNodeRedisClient(redis)) {
    throw new RateLimitConfigError(
      'redis got a node-redis client: this package needs ioredis (pass an ioredis Redis or Cluster, or the redis:// URL and the package builds one)',
      'redis',
    );
  }
  // Duck-typed so a client from another copy of ioredis still works.
  const client = redis as Partial<Redis>;
  if (
    typeof redis !== 'object' ||
    redis === null ||
    typeof client.evalsha !== 'function' ||
    typeof client.eval !== 'function' ||
    typeof client.on !== 'function'
  ) {
    throw new RateLimitConfigError(
      `redis must be an ioredis Redis or Cluster, or a redis:// URL, got ${describe(redis)}`,
      'redis',
    );
  }
  return redis as RedisClient;
}

function parseBreaker(breaker: unknown): Required<BreakerOptions> | CircuitBreakerPolicy {
  if (breaker === undefined) return { threshold: 5, halfOpenAfter: 30_000 };
  if (typeof breaker !== 'object' || breaker === null) {
    throw new RateLimitConfigError(
      `breaker must be an object, got ${describe(breaker)}`,
      'breaker',
    );
  }
  if (typeof (breaker as CircuitBreakerPolicy).execute === 'function') {
    // A retry or timeout policy also has execute(); the limiter needs the
    // breaker events and state, and would fail on the first call without them.
    const missing = ['onBreak', 'onHalfOpen', 'onReset'].filter(
      event => typeof (breaker as Record<string, unknown>)[event] !== 'function',
    );
    if (missing.length > 0 || typeof (breaker as CircuitBreakerPolicy).state !== 'number') {
      throw new RateLimitConfigError(
        `breaker must be { threshold, halfOpenAfter } or a cockatiel CircuitBreakerPolicy; got a policy without ${missing.length > 0 ? missing.join(', ') : 'a circuit state'} (a retry or timeout policy?)`,
        'breaker',
      );
    }
    return breaker as CircuitBreakerPolicy;
  }
  rejectUnknownOptions(breaker, ['threshold', 'halfOpenAfter']);
  const { threshold = 5, halfOpenAfter = 30_000 } = breaker as BreakerOptions;
  return {
    threshold: positiveInteger(threshold, 'breaker.threshold'),
    halfOpenAfter: parseDuration(halfOpenAfter, 'breaker.halfOpenAfter', MAX_TIMER_MS),
  };
}

const METRICS_METHODS = ['attach', 'decision', 'redisLatency', 'reconciled'] as const;
const OPTIONAL_METRICS_METHODS = ['pendingDropped', 'outageAdmitted'] as const;

function parseMetrics(metrics: unknown): RateLimitMetrics | undefined {
  if (metrics === undefined) return undefined;
  const given = metrics as Record<string, unknown> | null;
  const missing =
    typeof metrics === 'object' && given !== null
      ? [
          ...METRICS_METHODS.filter(m => typeof given[m] !== 'function'),
          ...OPTIONAL_METRICS_METHODS.filter(
            m => given[m] !== undefined && typeof given[m] !== 'function',
          ),
        ]
      : METRICS_METHODS;
  if (missing.length > 0) {
    throw new RateLimitConfigError(
      `metrics must come from createPrometheusMetrics() or implement RateLimitMetrics (${METRICS_METHODS.join(', ')}); missing or not functions: ${missing.join(', ')} in ${describe(metrics)}`,
      'metrics',
    );
  }
  return metrics as RateLimitMetrics;
}

function parseClock(clock: unknown): Clock {
  if (clock === undefined) return systemClock;
  const now =
    typeof clock === 'object' && clock !== null && typeof (clock as Clock).now === 'function'
      ? (clock as Clock).now()
      : undefined;
  // Called once here so a clock returning a Date or a string fails now, not
  // as NaN counters later.
  if (typeof now !== 'number' || !Number.isFinite(now)) {
    throw new RateLimitConfigError(
      `clock must have a now() method returning epoch ms, got ${describe(clock)}${now === undefined ? '' : ` whose now() gave ${describe(now)}`}`,
      'clock',
    );
  }
  const { monotonic } = clock as Clock;
  if (monotonic !== undefined && typeof monotonic !== 'function') {
    throw new RateLimitConfigError(
      `clock.monotonic must be a function returning ms, got ${describe(monotonic)}`,
      'clock.monotonic',
    );
  }
  return clock as Clock;
}

function parseMemory(
  memory: unknown,
  clock: Clock | undefined,
): { memory: MemoryStore | undefined; ownsMemory: boolean } {
  if (memory instanceof MemoryStore) return { memory, ownsMemory: false };
  if (memory === undefined && clock === undefined) return { memory: undefined, ownsMemory: false };
  if (memory !== undefined && (typeof memory !== 'object' || memory === null)) {
    throw new RateLimitConfigError(
      `memory must be a MemoryStore or { maxKeys, whenFull }, got ${describe(memory)}`,
      'memory',
    );
  }
  if (memory !== undefined && typeof (memory as { consume?: unknown }).consume === 'function') {
    throw new RateLimitConfigError(
      'memory must be a MemoryStore from this copy of resilient-rate-limit, or { maxKeys, whenFull }; got another store object (two installed copies of the package?)',
      'memory',
    );
  }
  if (memory !== undefined)
    rejectUnknownOptions(memory, ['maxKeys', 'whenFull', 'sweepIntervalMs']);
  // An injected clock gets a store of its own, swept on the same clock.
  return {
    memory: new MemoryStore({ ...(memory as MemoryStoreOptions), clock }),
    ownsMemory: true,
  };
}

// node-redis (the `redis` package) clients: camel-case commands, `isOpen`,
// and `sendCommand` instead of ioredis's `call`/`evalsha`.
function isNodeRedisClient(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const client = value as Record<string, unknown>;
  return (
    typeof client.sendCommand === 'function' &&
    typeof client.evalSha === 'function' &&
    'isOpen' in client
  );
}
