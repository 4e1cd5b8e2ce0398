import {
  ConsecutiveBreaker,
  circuitBreaker,
  handleAll,
  type CircuitBreakerPolicy,
} from 'cockatiel';
import { StoreBreaker } from './breaker.js';
import { clusterSlot } from './cluster-slot.js';
import { RateLimitConfigError } from './errors.js';
import type { BreakerOptions } from './options.js';
import type { Logger } from './types.js';

/** What a limiter hears from the breakers of its Redis client. */
export type BreakerListener = {
  open(node: string): void;
  halfOpen(node: string): void;
  close(node: string): void;
  /** The client became ready for the first time. */
  connected(): void;
};

type ClientLike = {
  isCluster?: boolean;
  slots?: Array<string[] | undefined>;
  status?: string;
  on(event: string, listener: () => void): unknown;
  off?(event: string, listener: () => void): unknown;
  removeListener?(event: string, listener: () => void): unknown;
  connect?(): Promise<unknown>;
};

const SEVERITY = { closed: 0, 'half-open': 1, open: 2, isolated: 3 } as const;

/**
 * The breakers of one Redis client. A single node has one. A Cluster has one
 * per master that owns slots now: a dead shard opens its own breaker while
 * the others keep deciding in Redis, and breakers of nodes that no longer own
 * slots (after a failover or resharding) are dropped. A policy passed in by
 * the caller is used as the one breaker, whatever the client.
 *
 * Breaker events reach limiters in a microtask, never inside cockatiel's own
 * emit (cockatiel fires half-open before its `try`, so anything that throws
 * there leaves the probe unsettled).
 *
 * Shared and reference-counted: see acquireBreakers() / release().
 */
export class BreakerRegistry {
  private readonly single: StoreBreaker | undefined;
  private readonly perNode = new Map<string, StoreBreaker>();
  /** For Cluster keys whose slot has no known owner yet: always skipped, never opened. */
  private readonly unplaced: StoreBreaker;
  private readonly listeners = new Set<BreakerListener>();
  private readonly clientCleanups: Array<() => void> = [];
  private everReady: boolean;
  users = 0;

  constructor(
    private readonly client: ClientLike,
    readonly options: Required<BreakerOptions> | undefined,
    policy: CircuitBreakerPolicy | undefined,
    private readonly logger: Logger,
  ) {
    this.everReady = client.status === 'ready';
    if (!this.everReady) {
      this.onClient('ready', () => {
        if (this.everReady) return;
        this.everReady = true;
        this.dispatch(l => l.connected());
      });
      // A lazyConnect client waits for its first command, which we would
      // never send while it is not ready.
      if (client.status === 'wait') client.connect?.().catch(() => undefined);
    }
    if (client.isCluster === true) this.onClient('refresh', () => this.prune());
    this.unplaced = new StoreBreaker(
      circuitBreaker(handleAll, { halfOpenAfter: 1, breaker: new ConsecutiveBreaker(1) }),
      undefined,
      () => false,
    );
    if (policy) this.single = this.wire(new StoreBreaker(policy, undefined, this.ready), 'redis');
    else if (client.isCluster !== true) this.single = this.create('redis');
  }

  private readonly ready = (): boolean => this.everReady;

  /** The breaker guarding the node that holds `redisKey` now. */
  forKey(redisKey: string): StoreBreaker {
    if (this.single) return this.single;
    const node = this.client.slots?.[clusterSlot(redisKey)]?.[0];
    if (node === undefined || !this.everReady) return this.unplaced;
    let breaker = this.perNode.get(node);
    if (!breaker) {
      breaker = this.create(node);
      this.perNode.set(node, breaker);
    }
    return breaker;
  }

  /** The worst state among the breakers of nodes that own slots now. */
  get state(): StoreBreaker['state'] {
    if (this.single) return this.single.state;
    this.prune();
    let worst: StoreBreaker['state'] = 'closed';
    for (const breaker of this.perNode.values()) {
      if (SEVERITY[breaker.state] > SEVERITY[worst]) worst = breaker.state;
    }
    return worst;
  }

  /** Nodes with a breaker, for tests and diagnostics. */
  get nodes(): string[] {
    return this.single ? ['redis'] : [...this.perNode.keys()];
  }

  subscribe(listener: BreakerListener): { dispose(): void } {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  }

  /** Removes every listener this registry put on policies and on the client. */
  dispose(): void {
    this.single?.dispose();
    for (const breaker of this.perNode.values()) breaker.dispose();
    this.perNode.clear();
    for (const cleanup of this.clientCleanups.splice(0)) cleanup();
    this.listeners.clear();
  }

  // Drops breakers of nodes that own no slot in the client's current map.
  private prune(): void {
    const slots = this.client.slots;
    if (this.perNode.size === 0 || !slots) return;
    const owners = new Set<string>();
    for (const slot of slots) if (slot?.[0] !== undefined) owners.add(slot[0]);
    if (owners.size === 0) return;
    for (const [node, breaker] of this.perNode) {
      if (owners.has(node)) continue;
      breaker.dispose();
      this.perNode.delete(node);
    }
  }

  private onClient(event: string, listener: () => void): void {
    this.client.on(event, listener);
    this.clientCleanups.push(() => {
      if (this.client.off) this.client.off(event, listener);
      else this.client.removeListener?.(event, listener);
    });
  }

  private create(node: string): StoreBreaker {
    const options = this.options as Required<BreakerOptions>;
    const policy = circuitBreaker(handleAll, {
      halfOpenAfter: options.halfOpenAfter,
      breaker: new ConsecutiveBreaker(options.threshold),
    });
    const where = node === 'redis' ? 'Redis' : `Redis node ${node}`;
    const breaker = new StoreBreaker(policy, options.halfOpenAfter, this.ready, true);
    let probing = false;
    breaker.listen(
      policy.onBreak(() => {
        const why = probing
          ? 'the half-open probe failed'
          : `${options.threshold} consecutive failures`;
        probing = false;
        this.later(() =>
          this.logger.warn(
            `resilient-rate-limit: ${where} circuit breaker opened after ${why}; deciding locally for ${options.halfOpenAfter} ms`,
          ),
        );
      }),
    );
    breaker.listen(
      policy.onHalfOpen(() => {
        probing = true;
        this.later(() =>
          this.logger.info(
            `resilient-rate-limit: ${where} circuit breaker half-open: probing Redis`,
          ),
        );
      }),
    );
    breaker.listen(
      policy.onReset(() => {
        probing = false;
        this.later(() =>
          this.logger.info(
            `resilient-rate-limit: ${where} circuit breaker closed: deciding in Redis again`,
          ),
        );
      }),
    );
    return this.wire(breaker, node);
  }

  private wire(breaker: StoreBreaker, node: string): StoreBreaker {
    breaker.listen(breaker.policy.onBreak(() => this.dispatch(l => l.open(node))));
    breaker.listen(breaker.policy.onHalfOpen(() => this.dispatch(l => l.halfOpen(node))));
    breaker.listen(breaker.policy.onReset(() => this.dispatch(l => l.close(node))));
    return breaker;
  }

  private dispatch(call: (listener: BreakerListener) => void): void {
    this.later(() => {
      for (const listener of [...this.listeners]) {
        try {
          call(listener);
        } catch {
          // Limiters isolate their own listeners; this only guards the loop.
        }
      }
    });
  }

  // Off cockatiel's stack, in its own try: see the class comment.
  private later(fn: () => void): void {
    queueMicrotask(() => {
      try {
        fn();
      } catch {
        // The logger is already wrapped; nothing here may reach cockatiel.
      }
    });
  }
}

const perClient = new Map<object, BreakerRegistry>();
const perPolicy = new Map<object, Map<object, BreakerRegistry>>();

/**
 * Throws if `breaker` options conflict with the breaker already shared on
 * `client`. Acquires nothing: call it before creating anything.
 * @throws RateLimitConfigError naming `breaker`.
 */
export function checkBreakers(
  client: object | undefined,
  breaker: Required<BreakerOptions> | CircuitBreakerPolicy,
): void {
  if (client === undefined || !isOptions(breaker)) return;
  const theirs = perClient.get(client)?.options;
  if (
    theirs &&
    (theirs.threshold !== breaker.threshold || theirs.halfOpenAfter !== breaker.halfOpenAfter)
  ) {
    throw new RateLimitConfigError(
      `breaker options ${JSON.stringify(breaker)} differ from ${JSON.stringify(theirs)} already used with this Redis client; one client has one breaker (pass a cockatiel CircuitBreakerPolicy to use another)`,
      'breaker',
    );
  }
}

/**
 * The breakers for `client`, shared by every limiter on it, so one dead Redis
 * opens one breaker; or, for a passed policy, shared by every limiter on that
 * policy and client. Each call must be paired with releaseBreakers(): the
 * last release removes every listener from the client and the policy.
 * @throws RateLimitConfigError as checkBreakers() does.
 */
export function acquireBreakers(
  client: object,
  breaker: Required<BreakerOptions> | CircuitBreakerPolicy,
  logger: Logger,
): BreakerRegistry {
  checkBreakers(client, breaker);
  let registry: BreakerRegistry | undefined;
  if (isOptions(breaker)) {
    registry = perClient.get(client);
    if (!registry) {
      registry = new BreakerRegistry(client as ClientLike, breaker, undefined, logger);
      perClient.set(client, registry);
    }
  } else {
    let byClient = perPolicy.get(breaker);
    if (!byClient) perPolicy.set(breaker, (byClient = new Map()));
    registry = byClient.get(client);
    if (!registry) {
      registry = new BreakerRegistry(client as ClientLike, undefined, breaker, logger);
      byClient.set(client, registry);
    }
  }
  registry.users++;
  return registry;
}

/** Gives back one acquireBreakers() result; the last one disposes the registry. */
export function releaseBreakers(
  client: object,
  breaker: Required<BreakerOptions> | CircuitBreakerPolicy,
  registry: BreakerRegistry,
): void {
  if (--registry.users > 0) return;
  registry.dispose();
  if (isOptions(breaker)) {
    if (perClient.get(client) === registry) perClient.delete(client);
    return;
  }
  const byClient = perPolicy.get(breaker);
  if (byClient?.get(client) === registry) byClient.delete(client);
  if (byClient?.size === 0) perPolicy.delete(breaker);
}

function isOptions(
  breaker: Required<BreakerOptions> | CircuitBreakerPolicy,
): breaker is Required<BreakerOptions> {
  return typeof (breaker as CircuitBreakerPolicy).execute !== 'function';
}
