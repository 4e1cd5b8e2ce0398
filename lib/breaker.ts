import {
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  handleAll,
  type CircuitBreakerPolicy,
} from 'cockatiel';
import { clusterSlot } from './cluster-slot.js';
import { RateLimitConfigError } from './errors.js';
import type { BreakerOptions } from './options.js';
import type { Logger } from './types.js';

/**
 * A cockatiel circuit breaker plus the one thing cockatiel does not offer: a
 * way to skip it without throwing. While open, cockatiel answers each call
 * with a BrokenCircuitError (a stack trace per request); while half-open it
 * makes every caller wait for the probe. Both would put a cost or a wait on
 * the fallback path, so callers ask `shouldSkip()` first.
 */
export class StoreBreaker {
  private reopenAt = 0;

  constructor(
    readonly policy: CircuitBreakerPolicy,
    /** Known for breakers built here; a passed-in policy keeps its own backoff. */
    private readonly halfOpenAfterMs: number | undefined,
  ) {
    // Date.now, like cockatiel itself, so fake timers drive both alike.
    policy.onBreak(() => {
      this.reopenAt = halfOpenAfterMs === undefined ? 0 : Date.now() + halfOpenAfterMs;
    });
  }

  get state(): 'closed' | 'open' | 'half-open' | 'isolated' {
    switch (this.policy.state) {
      case CircuitState.Open:
        return 'open';
      case CircuitState.HalfOpen:
        return 'half-open';
      case CircuitState.Isolated:
        return 'isolated';
      default:
        return 'closed';
    }
  }

  /** True when calling Redis now would only throw or wait on a probe. */
  shouldSkip(): boolean {
    const state = this.policy.state;
    if (state === CircuitState.Closed) return false;
    if (state === CircuitState.Open)
      return this.halfOpenAfterMs !== undefined && Date.now() < this.reopenAt;
    return true;
  }

  execute<T>(fn: () => Promise<T>): Promise<T> {
    return this.policy.execute(fn);
  }
}

/** What a limiter hears from the breakers of its Redis client. */
export type BreakerListener = {
  open(node: string): void;
  halfOpen(node: string): void;
  close(node: string): void;
};

type ClusterLike = { isCluster?: boolean; slots?: string[][] };

const SEVERITY = { closed: 0, 'half-open': 1, open: 2, isolated: 3 } as const;

/**
 * The breakers of one Redis client. A single node has one. A Cluster has one
 * per master, so a dead shard opens its own breaker while the other shards
 * keep deciding in Redis. A policy passed in by the caller is used as the one
 * breaker, whatever the client.
 */
export class BreakerRegistry {
  private readonly single: StoreBreaker | undefined;
  private readonly perNode = new Map<string, StoreBreaker>();
  private readonly listeners = new Set<BreakerListener>();

  constructor(
    private readonly client: object,
    readonly options: Required<BreakerOptions> | undefined,
    policy: CircuitBreakerPolicy | undefined,
    private readonly logger: Logger,
  ) {
    if (policy) this.single = this.wire(new StoreBreaker(policy, undefined), 'redis');
    else if ((client as ClusterLike).isCluster !== true) this.single = this.create('redis');
  }

  /** The breaker guarding the node that holds `redisKey`. */
  forKey(redisKey: string): StoreBreaker {
    if (this.single) return this.single;
    const slots = (this.client as ClusterLike).slots;
    const node = slots?.[clusterSlot(redisKey)]?.[0] ?? 'unassigned';
    let breaker = this.perNode.get(node);
    if (!breaker) {
      breaker = this.create(node);
      this.perNode.set(node, breaker);
    }
    return breaker;
  }

  /** The worst state among this client's breakers. */
  get state(): StoreBreaker['state'] {
    if (this.single) return this.single.state;
    let worst: StoreBreaker['state'] = 'closed';
    for (const breaker of this.perNode.values()) {
      if (SEVERITY[breaker.state] > SEVERITY[worst]) worst = breaker.state;
    }
    return worst;
  }

  subscribe(listener: BreakerListener): { dispose(): void } {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  }

  private create(node: string): StoreBreaker {
    const options = this.options as Required<BreakerOptions>;
    const policy = circuitBreaker(handleAll, {
      halfOpenAfter: options.halfOpenAfter,
      breaker: new ConsecutiveBreaker(options.threshold),
    });
    const where = node === 'redis' ? 'Redis' : `Redis node ${node}`;
    let probing = false;
    policy.onBreak(() => {
      const why = probing
        ? 'the half-open probe failed'
        : `${options.threshold} consecutive failures`;
      probing = false;
      this.logger.warn(
        `resilient-rate-limit: ${where} circuit breaker opened after ${why}; deciding locally for ${options.halfOpenAfter} ms`,
      );
    });
    policy.onHalfOpen(() => {
      probing = true;
      this.logger.info(`resilient-rate-limit: ${where} circuit breaker half-open: probing Redis`);
    });
    policy.onReset(() => {
      probing = false;
      this.logger.info(
        `resilient-rate-limit: ${where} circuit breaker closed: deciding in Redis again`,
      );
    });
    return this.wire(new StoreBreaker(policy, options.halfOpenAfter), node);
  }

  private wire(breaker: StoreBreaker, node: string): StoreBreaker {
    breaker.policy.onBreak(() => this.listeners.forEach(l => l.open(node)));
    breaker.policy.onHalfOpen(() => this.listeners.forEach(l => l.halfOpen(node)));
    breaker.policy.onReset(() => this.listeners.forEach(l => l.close(node)));
    return breaker;
  }
}

const shared = new WeakMap<object, BreakerRegistry>();

/**
 * The breakers for `client`, shared by every limiter on it, so one dead Redis
 * opens one breaker. A passed policy gets a registry of its own.
 */
export function acquireBreakers(
  client: object,
  breaker: Required<BreakerOptions> | CircuitBreakerPolicy,
  logger: Logger,
): BreakerRegistry {
  if (!isOptions(breaker)) return new BreakerRegistry(client, undefined, breaker, logger);
  const existing = shared.get(client);
  if (existing) {
    const theirs = existing.options;
    if (
      theirs &&
      (theirs.threshold !== breaker.threshold || theirs.halfOpenAfter !== breaker.halfOpenAfter)
    ) {
      throw new RateLimitConfigError(
        `breaker options ${JSON.stringify(breaker)} differ from ${JSON.stringify(theirs)} already used with this Redis client; one client has one breaker (pass a cockatiel CircuitBreakerPolicy to use another)`,
        'breaker',
      );
    }
    return existing;
  }
  const created = new BreakerRegistry(client, breaker, undefined, logger);
  shared.set(client, created);
  return created;
}

function isOptions(
  breaker: Required<BreakerOptions> | CircuitBreakerPolicy,
): breaker is Required<BreakerOptions> {
  return typeof (breaker as CircuitBreakerPolicy).execute !== 'function';
}
