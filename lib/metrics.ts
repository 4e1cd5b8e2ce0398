import type { DecisionSource } from './types.js';

/** What a limiter exposes to metrics collectors. */
export interface MetricsSource {
  readonly name: string;
  readonly breakerState: 'closed' | 'open' | 'half-open' | 'isolated' | undefined;
  readonly memory: { readonly size: number; readonly evictions: number };
  /** The rule's limit in Redis (cost units per window). */
  readonly limit: number;
  readonly failClosed: boolean;
  /** Cost units per key per window this instance admits from memory during an outage. */
  readonly fallbackLimit: number;
  /** Live instances seen in Redis; `undefined` unless `fallbackLimit: 'share'`. */
  readonly liveInstances?: number | undefined;
  /**
   * With `policies`: each policy's limit and outage budget, labelled
   * `name/policy`; `undefined` for a limiter with one rule.
   */
  readonly quotas?: ReadonlyArray<{ rule: string; limit: number; fallbackLimit: number }>;
}

// The quotas a source reports gauges for: its policies, or its one rule.
function quotasOf(source: MetricsSource): ReadonlyArray<{
  rule: string;
  limit: number;
  fallbackLimit: number;
}> {
  return (
    source.quotas ?? [
      { rule: source.name, limit: source.limit, fallbackLimit: source.fallbackLimit },
    ]
  );
}

/**
 * The hooks a limiter calls. `createPrometheusMetrics()` implements them on
 * prom-client; any other backend can implement them too.
 */
export interface RateLimitMetrics {
  /** Starts collecting gauges for `source`; returns the function that stops it. */
  attach(source: MetricsSource): () => void;
  decision(rule: string, source: DecisionSource, allowed: boolean): void;
  redisLatency(rule: string, seconds: number): void;
  reconciled(rule: string, hits: number): void;
  /** Outage hits dropped unacknowledged because the pending bound was reached. */
  pendingDropped?(rule: string, hits: number): void;
  /** Cost units the memory store admitted during an outage (optional for other backends). */
  outageAdmitted?(rule: string, cost: number): void;
}

// The slice of prom-client used here, typed structurally so the published
// types do not require prom-client to be installed.
type Labels = Record<string, string>;
interface MetricLike {
  reset(): void;
}
interface CounterLike extends MetricLike {
  inc(labels: Labels, value?: number): void;
  inc(value?: number): void;
}
interface GaugeLike extends MetricLike {
  set(labels: Labels, value: number): void;
}
interface HistogramLike extends MetricLike {
  observe(labels: Labels, value: number): void;
}
type MetricConfig<T> = {
  name: string;
  help: string;
  labelNames?: readonly string[];
  buckets?: number[];
  registers?: unknown[];
  collect?: (this: T) => void;
};

/**
 * The part of the prom-client module used here: pass `import * as client from 'prom-client'`.
 * Constructor parameters are `never` so prom-client's own, stricter config
 * types are accepted; the calls below use the shapes in MetricConfig.
 */
export type PromClient = {
  Counter: new (config: never) => CounterLike;
  Gauge: new (config: never) => GaugeLike;
  Histogram: new (config: never) => HistogramLike;
  register: unknown;
};

type Ctor<T> = new (config: MetricConfig<T>) => T;

export type PrometheusMetricsOptions = {
  /** Registry to register on (a prom-client Registry). Default: prom-client's global registry. */
  registry?: unknown;
  /** Metric name prefix. Default `'rate_limit_'`. */
  prefix?: string;
};

const BREAKER_VALUES = { closed: 0, 'half-open': 1, open: 2, isolated: 3 } as const;

/**
 * Prometheus metrics on the prom-client module you pass in, so this package
 * never loads prom-client itself:
 *
 * ```ts
 * import * as client from 'prom-client';
 * const metrics = createPrometheusMetrics(client);
 * app.use(rateLimit({ limit: 100, window: '1m', redis, metrics }));
 * ```
 */
export function createPrometheusMetrics(
  client: PromClient,
  options: PrometheusMetricsOptions = {},
): RateLimitMetrics {
  const registry = options.registry ?? client.register;
  const prefix = options.prefix ?? 'rate_limit_';
  const registers = [registry];
  const sources = new Set<MetricsSource>();
  const evictionsSeen = new WeakMap<object, number>();

  const Counter = client.Counter as unknown as Ctor<CounterLike>;
  const Gauge = client.Gauge as unknown as Ctor<GaugeLike>;
  const Histogram = client.Histogram as unknown as Ctor<HistogramLike>;

  const decisions = new Counter({
    name: `${prefix}decisions_total`,
    help: 'Rate-limit decisions by rule, deciding store (redis, memory, bypass) and outcome.',
    labelNames: ['rule', 'source', 'outcome'],
    registers,
  });
  const latency = new Histogram({
    name: `${prefix}redis_decision_seconds`,
    help: 'Time of one Redis decision, including timeouts and errors.',
    labelNames: ['rule'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers,
  });
  const reconciledHits = new Counter({
    name: `${prefix}reconciled_hits_total`,
    help: 'Hits admitted from memory during an outage and written back to Redis after it.',
    labelNames: ['rule'],
    registers,
  });
  const droppedHits = new Counter({
    name: `${prefix}pending_dropped_hits_total`,
    help: 'Hits admitted from memory during an outage and dropped before Redis acknowledged them (pending bound reached).',
    labelNames: ['rule'],
    registers,
  });
  const outageAdmitted = new Counter({
    name: `${prefix}outage_admitted_total`,
    help: 'Cost units admitted from memory while Redis could not decide; compare with outage_budget per key and window.',
    labelNames: ['rule'],
    registers,
  });
  new Gauge({
    name: `${prefix}limit`,
    help: 'The limit each rule enforces in Redis, cost units per key per window.',
    labelNames: ['rule'],
    registers,
    collect() {
      this.reset();
      for (const source of sources) {
        for (const quota of quotasOf(source)) this.set({ rule: quota.rule }, quota.limit);
      }
    },
  });
  new Gauge({
    name: `${prefix}outage_budget`,
    help: 'Cost units per key per window this instance admits from memory during a Redis outage (fallbackLimit). Summed over instances: what the fleet admits per key.',
    labelNames: ['rule'],
    registers,
    collect() {
      this.reset();
      for (const source of sources) {
        // Memory-only rules have no outage; fail-open rules let everything through.
        if (source.breakerState === undefined || !source.failClosed) continue;
        for (const quota of quotasOf(source)) this.set({ rule: quota.rule }, quota.fallbackLimit);
      }
    },
  });
  new Gauge({
    name: `${prefix}live_instances`,
    help: "Instances live in the Redis instance registry at this instance's last refresh (fallbackLimit: 'share').",
    labelNames: ['rule'],
    registers,
    collect() {
      this.reset();
      for (const source of sources) {
        // Per quota, so alerts can join it with each quota's outage budget.
        const live = source.liveInstances;
        if (live === undefined) continue;
        for (const quota of quotasOf(source)) this.set({ rule: quota.rule }, live);
      }
    },
  });
  new Gauge({
    name: `${prefix}breaker_state`,
    help: 'Redis circuit breaker state per rule: 0 closed, 1 half-open, 2 open, 3 isolated.',
    labelNames: ['rule'],
    registers,
    collect() {
      this.reset();
      for (const source of sources) {
        const state = source.breakerState;
        if (state !== undefined) this.set({ rule: source.name }, BREAKER_VALUES[state]);
      }
    },
  });
  new Gauge({
    name: `${prefix}memory_store_keys`,
    help: 'Keys held by the memory store a rule falls back to (a shared store is reported per rule).',
    labelNames: ['rule'],
    registers,
    collect() {
      this.reset();
      for (const source of sources) this.set({ rule: source.name }, source.memory.size);
    },
  });
  new Counter({
    name: `${prefix}memory_store_evictions_total`,
    help: 'Entries the memory store dropped to make room for new keys.',
    registers,
    collect() {
      const stores = new Set([...sources].map(s => s.memory));
      for (const store of stores) {
        const seen = evictionsSeen.get(store) ?? 0;
        if (store.evictions > seen) this.inc(store.evictions - seen);
        evictionsSeen.set(store, store.evictions);
      }
    },
  });

  return {
    attach(source) {
      sources.add(source);
      if (!evictionsSeen.has(source.memory))
        evictionsSeen.set(source.memory, source.memory.evictions);
      return () => sources.delete(source);
    },
    decision(rule, source, allowed) {
      decisions.inc({ rule, source, outcome: allowed ? 'allowed' : 'denied' });
    },
    redisLatency(rule, seconds) {
      latency.observe({ rule }, seconds);
    },
    reconciled(rule, hits) {
      reconciledHits.inc({ rule }, hits);
    },
    pendingDropped(rule, hits) {
      droppedHits.inc({ rule }, hits);
    },
    outageAdmitted(rule, cost) {
      outageAdmitted.inc({ rule }, cost);
    },
  };
}

/**
 * `metrics` with every method wrapped by `hooks`: a sink that throws loses
 * its sample and is reported once, never changes a decision.
 */
export function isolateMetrics(
  metrics: RateLimitMetrics,
  hooks: { call<T>(hook: string, fn: () => T): T | undefined },
): RateLimitMetrics {
  return {
    attach(source) {
      const detach = hooks.call('metrics.attach', () => metrics.attach(source));
      return () => {
        if (typeof detach === 'function') hooks.call('metrics.attach (detach)', detach);
      };
    },
    decision: (rule, source, allowed) =>
      hooks.call('metrics.decision', () => metrics.decision(rule, source, allowed)),
    redisLatency: (rule, seconds) =>
      hooks.call('metrics.redisLatency', () => metrics.redisLatency(rule, seconds)),
    reconciled: (rule, hits) =>
      hooks.call('metrics.reconciled', () => metrics.reconciled(rule, hits)),
    pendingDropped: (rule, hits) =>
      hooks.call('metrics.pendingDropped', () => metrics.pendingDropped?.(rule, hits)),
    outageAdmitted: (rule, cost) =>
      hooks.call('metrics.outageAdmitted', () => metrics.outageAdmitted?.(rule, cost)),
  };
}
