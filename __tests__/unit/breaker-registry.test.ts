import { EventEmitter } from 'node:events';
import { ConsecutiveBreaker, circuitBreaker, handleAll } from 'cockatiel';
import { clusterSlot } from '../../lib/cluster-slot.js';
import { acquireBreakers, releaseBreakers } from '../../lib/breaker-registry.js';

const OPTIONS = { threshold: 2, halfOpenAfter: 10_000 };
const logger = { warn: jest.fn(), error: jest.fn(), info: jest.fn() };

/** The parts of an ioredis Cluster the registry reads: status, slots and events. */
class FakeCluster extends EventEmitter {
  readonly isCluster = true;
  status = 'connecting';
  slots: string[][] = [];

  assignAll(node: string): void {
    this.slots = Array.from({ length: 16384 }, () => [node]);
  }
}

const fail = (): Promise<never> => Promise.reject(new Error('down'));

describe('BreakerRegistry', () => {
  it('skips keys as not-connected before the first ready and creates no breaker for them', () => {
    const client = new FakeCluster();
    const registry = acquireBreakers(client, OPTIONS, logger);
    try {
      const breaker = registry.forKey('rl:{a|b}');
      expect(breaker.skipReason()).toBe('not-connected');
      expect(registry.nodes).toEqual([]);
      expect(registry.state).toBe('closed');
    } finally {
      releaseBreakers(client, OPTIONS, registry);
    }
  });

  it('uses the owner of the slot from the first ready on', async () => {
    const client = new FakeCluster();
    const registry = acquireBreakers(client, OPTIONS, logger);
    const connected = jest.fn();
    registry.subscribe({ open() {}, halfOpen() {}, close() {}, connected });
    try {
      client.assignAll('127.0.0.1:7001');
      client.status = 'ready';
      client.emit('ready');
      await Promise.resolve();
      expect(connected).toHaveBeenCalledTimes(1);
      expect(registry.forKey('rl:{a|b}').skipReason()).toBeUndefined();
      expect(registry.nodes).toEqual(['127.0.0.1:7001']);
    } finally {
      releaseBreakers(client, OPTIONS, registry);
    }
  });

  it('drops the breaker of a node that no longer owns slots, so an old open one is not reported', async () => {
    const client = new FakeCluster();
    client.assignAll('127.0.0.1:7001');
    client.status = 'ready';
    const registry = acquireBreakers(client, OPTIONS, logger);
    try {
      const key = 'rl:{a|b}';
      const old = registry.forKey(key);
      for (let i = 0; i < OPTIONS.threshold; i++) await old.execute(fail).catch(() => undefined);
      expect(registry.state).toBe('open');

      // Failover: another node owns every slot now.
      client.assignAll('127.0.0.1:7002');
      client.emit('refresh');
      expect(registry.nodes).toEqual([]);
      expect(registry.state).toBe('closed');
      expect(registry.forKey(key)).not.toBe(old);
      expect(registry.forKey(key).skipReason()).toBeUndefined();
      expect(registry.nodes).toEqual(['127.0.0.1:7002']);
      expect(clusterSlot(key)).toBeGreaterThanOrEqual(0);
    } finally {
      releaseBreakers(client, OPTIONS, registry);
    }
  });

  it('removes its listeners from the client and a passed policy on the last release', () => {
    const client = new FakeCluster();
    const policy = circuitBreaker(handleAll, {
      halfOpenAfter: 1000,
      breaker: new ConsecutiveBreaker(1),
    });
    const emitters = policy as unknown as Record<string, { size: number }>;
    const sizes = (): number[] =>
      ['breakEmitter', 'halfOpenEmitter', 'resetEmitter'].map(e => emitters[e]?.size ?? -1);
    const before = sizes();
    expect(before).toEqual([0, 0, 0]);
    const a = acquireBreakers(client, policy, logger);
    const b = acquireBreakers(client, policy, logger);
    expect(b).toBe(a);
    expect(client.listenerCount('ready')).toBe(1);
    releaseBreakers(client, policy, a);
    expect(client.listenerCount('ready')).toBe(1);
    releaseBreakers(client, policy, b);
    expect(client.listenerCount('ready')).toBe(0);
    expect(sizes()).toEqual(before);
  });
});
