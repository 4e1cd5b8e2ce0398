import * as promClient from 'prom-client';
import { RateLimiter, createPrometheusMetrics } from '../../lib/index.js';
import { OutageFixture } from '../helpers/outage-fixture.js';
import { recordingLogger, uniqueName } from '../helpers/redis.js';

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
});
