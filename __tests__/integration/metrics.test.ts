import { circuitBreaker, ConsecutiveBreaker, handleAll } from 'cockatiel';
import * as promClient from 'prom-client';
import { RateLimiter, createPrometheusMetrics } from '../../lib/index.js';
import { findInstanceRegistry } from '../../lib/instance-registry.js';
import { OutageFixture } from '../helpers/outage-fixture.js';
import { RedisProcess } from '../helpers/redis-process.js';
import { failFastClient, ready, recordingLogger, uniqueName } from '../helpers/redis.js';

/** Reads one sample's value from the registry's text exposition. */
function sample(
  text: string,
  metric: string,
  labels: Record<string, string> = {},
): number | undefined {
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(metric)) continue;
    const [series, value] = line.split(' ') as [string, string];
    const name = series.split('{')[0];
    if (name !== metric) continue;
    if (wanted.every(label => series.includes(label))) return Number(value);
  }
  return undefined;
}

describe('createPrometheusMetrics', () => {
  it('counts decisions by rule, source and outcome, and reports store size', async () => {
    const registry = new promClient.Registry();
    const metrics = createPrometheusMetrics(promClient, { registry });
    const name = uniqueName('metered');
    const limiter = new RateLimiter({
      name,
      limit: 2,
      window: '1m',
      metrics,
      memory: { maxKeys: 10 },
    });
    try {
      for (let i = 0; i < 3; i++) await limiter.consume('a');
      await limiter.consume('b');
      const text = await registry.metrics();
      expect(
        sample(text, 'rate_limit_decisions_total', {
          rule: name,
          source: 'memory',
          outcome: 'allowed',
        }),
      ).toBe(3);
      expect(
        sample(text, 'rate_limit_decisions_total', {
          rule: name,
          source: 'memory',
          outcome: 'denied',
        }),
      ).toBe(1);
      expect(sample(text, 'rate_limit_memory_store_keys', { rule: name })).toBe(2);
      expect(sample(text, 'rate_limit_breaker_state', { rule: name })).toBeUndefined();
    } finally {
      await limiter.close();
    }
  });

  it('reports each policy of a limiter with policies as name/policy', async () => {
    const registry = new promClient.Registry();
    const metrics = createPrometheusMetrics(promClient, { registry });
    const redis = await RedisProcess.start();
    const client = failFastClient(redis.port);
    await ready(client);
    const breaker = circuitBreaker(handleAll, {
      halfOpenAfter: 1000,
      breaker: new ConsecutiveBreaker(1000),
    });
    const name = uniqueName('policies');
    const limiter = new RateLimiter({
      name,
      policies: [
        { name: 'burst', limit: 2, window: '1m', fallbackLimit: 1 },
        { name: 'daily', limit: 10, window: '1d' },
      ],
      redis: client,
      breaker,
      metrics,
      logger: recordingLogger(),
    });
    try {
      await limiter.consume('k');
      const isolation = breaker.isolate();
      await limiter.consume('other');
      isolation.dispose();
      await limiter.reconcile();
      const text = await registry.metrics();
      // Decisions are per request, under the limiter's name.
      expect(
        sample(text, 'rate_limit_decisions_total', {
          rule: name,
          source: 'redis',
          outcome: 'allowed',
        }),
      ).toBe(1);
      expect(sample(text, 'rate_limit_limit', { rule: `${name}/burst` })).toBe(2);
      expect(sample(text, 'rate_limit_limit', { rule: `${name}/daily` })).toBe(10);
      expect(sample(text, 'rate_limit_outage_budget', { rule: `${name}/burst` })).toBe(1);
      expect(sample(text, 'rate_limit_outage_budget', { rule: `${name}/daily` })).toBe(10);
      for (const policy of ['burst', 'daily']) {
        expect(
          sample(text, 'rate_limit_outage_admitted_total', { rule: `${name}/${policy}` }),
        ).toBe(1);
        expect(
          sample(text, 'rate_limit_reconciled_hits_total', { rule: `${name}/${policy}` }),
        ).toBe(1);
      }
    } finally {
      await limiter.close();
      client.disconnect();
      await redis.stop();
    }
  });

  it('stops reporting a limiter once it is closed', async () => {
    const registry = new promClient.Registry();
    const metrics = createPrometheusMetrics(promClient, { registry, prefix: 'x_' });
    const name = uniqueName('closed');
    const limiter = new RateLimiter({ name, limit: 2, window: '1m', metrics, memory: {} });
    await limiter.consume('a');
    await limiter.close();
    expect(sample(await registry.metrics(), 'x_memory_store_keys', { rule: name })).toBeUndefined();
  });

  it('reports evictions from the memory store', async () => {
    const registry = new promClient.Registry();
    const metrics = createPrometheusMetrics(promClient, { registry });
    const limiter = new RateLimiter({
      name: uniqueName(),
      limit: 2,
      window: '1m',
      metrics,
      memory: { maxKeys: 2 },
    });
    try {
      for (const key of ['a', 'b', 'c', 'd']) await limiter.consume(key);
      expect(sample(await registry.metrics(), 'rate_limit_memory_store_evictions_total')).toBe(2);
    } finally {
      await limiter.close();
    }
  });

  it('reports breaker state, Redis latency, fallback decisions and reconciled hits through an outage', async () => {
    const registry = new promClient.Registry();
    const metrics = createPrometheusMetrics(promClient, { registry });
    const fixture = await OutageFixture.start();
    const name = uniqueName('outage');
    const limiter = new RateLimiter({
      name,
      limit: 10,
      window: '1m',
      redis: fixture.client,
      timeout: 100,
      breaker: { threshold: 5, halfOpenAfter: 400 },
      metrics,
      logger: recordingLogger(),
    });
    try {
      await limiter.consume('k');
      let text = await registry.metrics();
      expect(sample(text, 'rate_limit_breaker_state', { rule: name })).toBe(0);
      expect(sample(text, 'rate_limit_redis_decision_seconds_count', { rule: name })).toBe(1);
      expect(
        sample(text, 'rate_limit_decisions_total', {
          rule: name,
          source: 'redis',
          outcome: 'allowed',
        }),
      ).toBe(1);

      fixture.proxy.refuse = true;
      fixture.proxy.cutAll();
      for (let i = 0; i < 6; i++) await limiter.consume('k');
      text = await registry.metrics();
      expect(sample(text, 'rate_limit_breaker_state', { rule: name })).toBe(2);
      expect(
        sample(text, 'rate_limit_decisions_total', {
          rule: name,
          source: 'memory',
          outcome: 'allowed',
        }),
      ).toBe(6);

      fixture.proxy.refuse = false;
      await new Promise(resolve => setTimeout(resolve, 450));
      for (let i = 0; i < 20 && limiter.breakerState !== 'closed'; i++) {
        await limiter.get('probe');
        await new Promise(resolve => setTimeout(resolve, 50));
      }
      await limiter.reconcile();
      text = await registry.metrics();
      expect(sample(text, 'rate_limit_breaker_state', { rule: name })).toBe(0);
      expect(sample(text, 'rate_limit_reconciled_hits_total', { rule: name })).toBe(6);
    } finally {
      await limiter.close();
      await fixture.stop();
    }
  });

  it('reports live instances, the outage budget and what the outage admitted against it', async () => {
    const redis = await RedisProcess.start();
    const clients = [failFastClient(redis.port), failFastClient(redis.port)];
    await Promise.all(clients.map(ready));
    const registry = new promClient.Registry();
    const metrics = createPrometheusMetrics(promClient, { registry });
    const name = uniqueName('budget');
    const logger = recordingLogger();
    const [limiter, peer] = clients.map(
      client =>
        new RateLimiter({
          name,
          limit: 30,
          window: '1h',
          redis: client,
          fallbackLimit: 'share',
          breaker: { threshold: 1, halfOpenAfter: 60_000 },
          metrics,
          logger,
        }),
    ) as [RateLimiter, RateLimiter];
    try {
      for (let round = 0; round < 2; round++) {
        for (const client of clients) await findInstanceRegistry(client, 'rl:', 30_000)?.refresh();
      }
      let text = await registry.metrics();
      expect(sample(text, 'rate_limit_live_instances', { rule: name })).toBe(2);
      expect(sample(text, 'rate_limit_outage_budget', { rule: name })).toBe(15);
      expect(sample(text, 'rate_limit_limit', { rule: name })).toBe(30);
      expect(sample(text, 'rate_limit_outage_admitted_total', { rule: name })).toBeUndefined();

      await redis.kill();
      await limiter.consume('k', 2);
      await limiter.consume('k');
      text = await registry.metrics();
      expect(sample(text, 'rate_limit_outage_admitted_total', { rule: name })).toBe(3);
      expect(logger.warn).toHaveBeenCalledWith(expect.stringContaining('cannot decide in Redis'));
    } finally {
      await Promise.all([limiter.close(), peer.close()]);
      for (const client of clients) client.disconnect();
      await redis.stop();
    }
  });
});
