import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as promClient from 'prom-client';
import { createPrometheusMetrics } from '../../lib/metrics.js';

const root = join(__dirname, '..', '..');
const read = (path: string): string => readFileSync(join(root, path), 'utf8');

/** The series names createPrometheusMetrics registers, with a histogram's suffixes. */
async function exported(): Promise<Set<string>> {
  const registry = new promClient.Registry();
  createPrometheusMetrics(promClient, { registry });
  const names = new Set<string>();
  for (const metric of await registry.getMetricsAsJSON()) {
    names.add(metric.name);
    if (String(metric.type) === 'histogram') {
      for (const suffix of ['_bucket', '_sum', '_count']) names.add(metric.name + suffix);
    }
  }
  return names;
}

const referenced = (text: string): string[] => [
  ...new Set(text.match(/\brate_limit_[a-z_]+[a-z]\b/g) ?? []),
];

type Dashboard = {
  panels: Array<{ title: string; type: string; targets?: Array<{ expr: string }> }>;
};

describe('ops/ (Grafana dashboard and Prometheus alert rules)', () => {
  it('the dashboard and the alert rules query only metrics the package exports', async () => {
    const names = await exported();
    const dashboard = read('ops/grafana/rate-limit-dashboard.json');
    const alerts = read('ops/prometheus/rate-limit-alerts.yml');
    expect(referenced(dashboard).length).toBeGreaterThanOrEqual(10);
    expect(referenced(dashboard).filter(name => !names.has(name))).toEqual([]);
    expect(referenced(alerts).filter(name => !names.has(name))).toEqual([]);
  });

  it('the dashboard charts every exported metric', async () => {
    const used = new Set(referenced(read('ops/grafana/rate-limit-dashboard.json')));
    // A histogram is charted through its buckets.
    const charted = (name: string): boolean => used.has(name) || used.has(`${name}_bucket`);
    const names = [...(await exported())].filter(name => !/_(bucket|sum|count)$/.test(name));
    expect(names.length).toBeGreaterThanOrEqual(10);
    expect(names.filter(name => !charted(name))).toEqual([]);
  });

  it('the dashboard has the panels the runbook refers to', () => {
    const dashboard = JSON.parse(read('ops/grafana/rate-limit-dashboard.json')) as Dashboard;
    const titles = dashboard.panels.filter(p => p.type !== 'row').map(p => p.title);
    expect(titles).toEqual(
      expect.arrayContaining([
        'Decisions by source',
        'Breaker state',
        'Redis decision latency',
        'Memory store size',
        'Reconciled hits',
        'Fleet outage budget per key vs limit',
        'Live instances',
        'Outage admissions vs budget',
      ]),
    );
  });
});
