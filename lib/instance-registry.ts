import { randomBytes } from 'node:crypto';
import type { Clock } from './clock.js';
import type { RedisClient } from './options.js';
import { reportPermissionError } from './redis-acl.js';
import type { Logger } from './types.js';
import { redisNow } from './stores/redis-scripts.js';

/** How often an instance writes its presence: at most once per this many ms. */
export const REGISTRY_REFRESH_MS = 1000;

// Registers this instance, drops the ones not seen within the horizon, and
// counts the rest: one round trip. Scores are Redis's own TIME, so app clock
// skew cannot make a live instance look dead (ARGV[3] is a test clock only).
// The set expires with the horizon, so a fleet that is gone leaves nothing.
const REFRESH_SCRIPT = `
local horizon = tonumber(ARGV[2])
${redisNow(3)}
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - horizon))
redis.call('PEXPIRE', KEYS[1], horizon)
return redis.call('ZCARD', KEYS[1])
`;

export type InstanceRegistryOptions = {
  /** ms an instance stays live after its last refresh. */
  horizonMs: number;
  /** Scores from this clock instead of Redis TIME (`redisTime: 'clock'`, tests). */
  clock: Clock | undefined;
  logger: Logger;
};

/**
 * This instance's entry in a Redis ZSET of instance id → last seen (Redis
 * time, ms), and the number of instances live in it.
 *
 * Refreshed by an unref'd timer, never by a decision: the hot path only reads
 * the cached count, so the registry adds no round trip to it and a failing or
 * slow registry write can neither delay nor fail a decision. While Redis is
 * unreachable the count last read stays in force. Before the first read it is
 * 1 (this instance alone), so an instance that starts during an outage admits
 * up to the full limit until it has seen Redis once.
 */
export class InstanceRegistry {
  /** Random per registry: one per Redis client and prefix, so per process in practice. */
  readonly id = randomBytes(8).toString('hex');
  private live = 1;
  private seen = false;
  private inFlight: Promise<void> | undefined;
  private failing = false;
  private users = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly onReady = (): void => void this.refresh();

  constructor(
    private readonly client: RedisClient,
    /** The ZSET's key. */
    readonly key: string,
    /** The rules' key prefix `key` starts with (for the ACL rules a permission error names). */
    private readonly prefix: string,
    private readonly options: InstanceRegistryOptions,
  ) {}

  /** Instances seen within the horizon at the last successful refresh, this one included. */
  get liveInstances(): number {
    return this.live;
  }

  /** True once a refresh has read the live count from Redis. */
  get hasSeenRedis(): boolean {
    return this.seen;
  }

  /**
   * Writes this instance's presence and reads the live count. At most one
   * call is in flight: while one is pending (Redis frozen) this returns it
   * instead of queueing another. Does nothing while the client is not
   * connected (an outage, which the breaker reports; or not connected yet).
   * Never rejects; a failure keeps the last count and is logged once per run
   * of failures.
   */
  refresh(): Promise<void> {
    this.inFlight ??= this.write().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  /** Counts one more limiter using this registry; the first one starts the timer. */
  acquire(): void {
    this.users++;
    if (this.timer) return;
    void this.refresh();
    this.timer = setInterval(() => void this.refresh(), REGISTRY_REFRESH_MS);
    // Bookkeeping, not work: it must never keep a process alive.
    this.timer.unref();
    // Learn N as soon as the client (re)connects, not up to a second later.
    this.client.on('ready', this.onReady);
  }

  /**
   * Drops one user; the last one stops the timer and removes this instance
   * from the set (best effort: the horizon drops the entry anyway).
   * @returns undefined while others use it; for the last user, the removal,
   *   which never rejects (the caller bounds the wait: a dead Redis never
   *   answers it)
   */
  release(): Promise<void> | undefined {
    if (--this.users > 0) return undefined;
    clearInterval(this.timer);
    this.timer = undefined;
    this.client.off('ready', this.onReady);
    if (this.client.status !== 'ready') return Promise.resolve();
    return this.client.zrem(this.key, this.id).then(
      () => undefined,
      error => this.reportPermission(error),
    );
  }

  // A missing ACL right is logged as decisions log it: once, naming the rule.
  private reportPermission(error: unknown): void {
    reportPermissionError(this.client, error, this.key, this.prefix, this.options.logger);
  }

  private async write(): Promise<void> {
    const { horizonMs, clock, logger } = this.options;
    // Not connected: a command would only fail at once (or, on a client with
    // an offline queue, wait and pile up behind the reconnect).
    if (this.client.status !== 'ready') return;
    try {
      const count = await this.client.eval(
        REFRESH_SCRIPT,
        1,
        this.key,
        this.id,
        String(horizonMs),
        clock ? String(clock.now()) : '',
      );
      this.live = Math.max(1, Number(count));
      this.seen = true;
      this.failing = false;
    } catch (error) {
      this.reportPermission(error);
      if (this.failing) return;
      this.failing = true;
      logger.warn(
        `resilient-rate-limit: could not refresh the instance registry '${this.key}' (${error instanceof Error ? error.message : String(error)}); outage budgets keep the last live count, ${this.live}`,
      );
    }
  }
}

const registries = new WeakMap<object, Map<string, InstanceRegistry>>();

/**
 * The registry for `client` and `prefix` with this horizon, created on first
 * use; every limiter asking for the same ones shares it (and its timer).
 * Different horizons get different sets, so they never disagree.
 */
export function acquireInstanceRegistry(
  client: RedisClient,
  prefix: string,
  options: InstanceRegistryOptions,
): InstanceRegistry {
  let byKey = registries.get(client);
  if (!byKey) {
    byKey = new Map();
    registries.set(client, byKey);
  }
  const key = registryKey(prefix, options.horizonMs);
  let registry = byKey.get(key);
  if (!registry) {
    registry = new InstanceRegistry(client, key, prefix, options);
    byKey.set(key, registry);
  }
  registry.acquire();
  return registry;
}

/**
 * Gives a registry back; the last user's release stops and forgets it, and
 * resolves once this instance has left the set (never rejects).
 */
export function releaseInstanceRegistry(
  client: RedisClient,
  registry: InstanceRegistry,
): Promise<void> | undefined {
  const removed = registry.release();
  if (removed) registries.get(client)?.delete(registry.key);
  return removed;
}

/**
 * The registry's Redis key. Rule keys are `prefix{name|key}`; this one has no
 * braces, so no rule name can collide with it.
 */
export function registryKey(prefix: string, horizonMs: number): string {
  return `${prefix}instances:${horizonMs}ms`;
}

/** The registry in use for `client`, `prefix` and `horizonMs`, if any (for tests and tools). */
export function findInstanceRegistry(
  client: RedisClient,
  prefix: string,
  horizonMs: number,
): InstanceRegistry | undefined {
  return registries.get(client)?.get(registryKey(prefix, horizonMs));
}
