import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { Redis } from 'ioredis';
import { rateLimit, type RateLimitMiddleware } from '../../lib/index.js';
import { findInstanceRegistry, type InstanceRegistry } from '../../lib/instance-registry.js';
import { RedisProcess } from '../helpers/redis-process.js';
import { failFastClient, ready, recordingLogger, uniqueName } from '../helpers/redis.js';

const LIMIT = 30;
const INSTANCES = 3;
const HORIZON_MS = 30_000;

/**
 * N app instances (3 unless told), each with its own Redis client, limiter
 * and Express app, behind a round-robin "balancer" (request i goes to
 * instance i mod N), all limiting one key on one shared redis-server.
 */
class Fleet {
  private next = 0;
  private constructor(
    readonly redis: RedisProcess,
    readonly clients: Redis[],
    readonly limiters: RateLimitMiddleware[],
    readonly servers: Server[],
    readonly logger: ReturnType<typeof recordingLogger>,
  ) {}

  static async start(
    fallbackLimit: 'share' | undefined,
    instances = INSTANCES,
    limit = LIMIT,
  ): Promise<Fleet> {
    const redis = await RedisProcess.start();
    const logger = recordingLogger();
    const name = uniqueName('fleet');
    const clients: Redis[] = [];
    const limiters: RateLimitMiddleware[] = [];
    const servers: Server[] = [];
    for (let i = 0; i < instances; i++) {
      const client = failFastClient(redis.port);
      await ready(client);
      const limiter = rateLimit({
        name,
        limit,
        window: '1h',
        redis: client,
        fallbackLimit,
        // Its own store per instance: separate processes share no memory.
        memory: { maxKeys: 100 },
        timeout: 100,
        breaker: { threshold: 1, halfOpenAfter: 60_000 },
        logger,
        key: () => 'tenant-1',
      });
      const app = express();
      app.post('/tenants', limiter, (_req, res) => {
        res.status(201).end();
      });
      clients.push(client);
      limiters.push(limiter);
      // Listening once per instance, and reached over kept-alive connections:
      // hundreds of requests cost no server start each.
      const server = app.listen(0, '127.0.0.1');
      await new Promise(resolve => server.once('listening', resolve));
      servers.push(server);
    }
    return new Fleet(redis, clients, limiters, servers, logger);
  }

  registries(): InstanceRegistry[] {
    return this.clients.map(client => {
      const registry = findInstanceRegistry(client, 'rl:', HORIZON_MS);
      if (!registry) throw new Error('no instance registry for this client');
      return registry;
    });
  }

  /** Two refresh rounds: after the first every instance is in the set, the second reads it. */
  async heartbeat(): Promise<void> {
    for (let round = 0; round < 2; round++) {
      for (const registry of this.registries()) await registry.refresh();
    }
  }

  /** `count` requests through the balancer; returns the status and source of each. */
  async send(
    count: number,
  ): Promise<Array<{ status: number; source: string; limit: string; policy: string }>> {
    const out = [];
    for (let i = 0; i < count; i++) {
      const server = this.servers[this.next++ % this.servers.length] as Server;
      const { port } = server.address() as AddressInfo;
      const response = await fetch(`http://127.0.0.1:${port}/tenants`, { method: 'POST' });
      await response.arrayBuffer();
      out.push({
        status: response.status,
        source: String(response.headers.get('x-ratelimit-source')),
        limit: String(response.headers.get('x-ratelimit-limit')),
        policy: String(response.headers.get('ratelimit-policy')),
      });
    }
    return out;
  }

  async stop(): Promise<void> {
    for (const server of this.servers) {
      server.closeAllConnections();
      server.close();
    }
    await Promise.all(this.limiters.map(l => l.limiter.close()));
    for (const client of this.clients) client.disconnect();
    await this.redis.stop();
  }
}

const admitted = (samples: Array<{ status: number }>): number =>
  samples.filter(s => s.status === 201).length;

describe("fallbackLimit: 'share' across 3 instances when Redis dies", () => {
  let fleet: Fleet | undefined;

  afterEach(async () => {
    await fleet?.stop();
    fleet = undefined;
  });

  it('admits at most limit + N - 1 for one key over a window the outage covers', async () => {
    fleet = await Fleet.start('share');
    await fleet.heartbeat();
    expect(fleet.limiters.map(l => l.limiter.liveInstances)).toEqual([3, 3, 3]);
    expect(fleet.limiters.map(l => l.limiter.fallbackLimit)).toEqual([10, 10, 10]);

    await fleet.redis.kill();
    const outage = await fleet.send(2 * LIMIT * INSTANCES);

    expect(outage.every(s => s.source === 'memory')).toBe(true);
    expect(outage.filter(s => s.status >= 500)).toEqual([]);
    expect(admitted(outage)).toBeLessThanOrEqual(LIMIT + INSTANCES - 1);
    // Round robin spreads the key evenly: each instance spends its whole share.
    expect(admitted(outage)).toBe(INSTANCES * Math.ceil(LIMIT / INSTANCES));
    // The headers show the share that decided, learnt after the limiter was built.
    expect(new Set(outage.map(s => s.limit))).toEqual(new Set(['10']));
    expect(new Set(outage.map(s => s.policy.replace(/^"[^"]+";/, '')))).toEqual(
      new Set(['q=10;w=3600']),
    );

    // The registry cannot be refreshed now; the count last read stays in force.
    // Its silence is not worth a warning of its own: the breaker's says it.
    for (const registry of fleet.registries()) await registry.refresh();
    expect(fleet.limiters.map(l => l.limiter.liveInstances)).toEqual([3, 3, 3]);
    const warnings = fleet.logger.warn.mock.calls.map(call => String(call[0]));
    expect(warnings.filter(w => w.includes('cannot decide in Redis'))).toHaveLength(INSTANCES);
    expect(warnings.filter(w => w.includes('instance registry'))).toEqual([]);
  });

  it('control: the default fallbackLimit admits N x limit', async () => {
    fleet = await Fleet.start(undefined);
    expect(fleet.limiters.map(l => l.limiter.liveInstances)).toEqual([
      undefined,
      undefined,
      undefined,
    ]);
    await fleet.redis.kill();
    const outage = await fleet.send(2 * LIMIT * INSTANCES);
    expect(outage.every(s => s.source === 'memory')).toBe(true);
    expect(admitted(outage)).toBe(INSTANCES * LIMIT);
    const warnings = fleet.logger.warn.mock.calls.map(call => String(call[0]));
    expect(warnings.filter(w => w.includes('cannot decide in Redis'))).toHaveLength(INSTANCES);
  });

  it('stays within the bound when Redis dies in the middle of the window', async () => {
    fleet = await Fleet.start('share');
    await fleet.heartbeat();
    const before = await fleet.send(6);
    expect(before.map(s => `${s.status}:${s.source}`)).toEqual(Array(6).fill('201:redis'));

    await fleet.redis.kill();
    const outage = await fleet.send(2 * LIMIT * INSTANCES);
    // Each instance goes on from the count it last saw in Redis (4, 5 and 6),
    // so it admits only what is left of its share of 10.
    expect(admitted(outage)).toBe(6 + 5 + 4);
    expect(admitted(before) + admitted(outage)).toBeLessThanOrEqual(LIMIT + INSTANCES - 1);
  });

  // The README's table: one key, N instances, an outage covering the window.
  it.each([
    [4, 30, 32, 120],
    [10, 3, 10, 30],
  ])(
    '%i instances, limit %i: share admits %i, the default %i',
    async (instances, limit, shared, unshared) => {
      fleet = await Fleet.start('share', instances, limit);
      await fleet.heartbeat();
      expect(new Set(fleet.limiters.map(l => l.limiter.liveInstances))).toEqual(
        new Set([instances]),
      );
      await fleet.redis.kill();
      const withShare = admitted(await fleet.send(2 * instances * limit));
      expect(withShare).toBe(shared);
      expect(withShare).toBeLessThanOrEqual(limit + instances - 1);
      await fleet.stop();

      fleet = await Fleet.start(undefined, instances, limit);
      await fleet.redis.kill();
      expect(admitted(await fleet.send(2 * instances * limit))).toBe(unshared);
    },
    // Two fleets and up to 480 requests: room for a loaded CI machine.
    30_000,
  );
});
