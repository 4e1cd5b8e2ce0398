import express from 'express';
import { Cluster } from 'ioredis';
import request from 'supertest';
import { RateLimiter, rateLimit } from '../../lib/index.js';
import { clusterSlot } from '../../lib/cluster-slot.js';
import { RedisCluster, keySlot } from '../helpers/redis-cluster.js';
import type { RedisProcess } from '../helpers/redis-process.js';
import { eventually, recordingLogger, uniqueName } from '../helpers/redis.js';

let cluster: RedisCluster;
const clients: Cluster[] = [];

function clusterClient(): Cluster {
  const client = new Cluster(cluster.startupNodes(), {
    enableOfflineQueue: false,
    clusterRetryStrategy: () => 100,
    redisOptions: { maxRetriesPerRequest: 0, connectTimeout: 500 },
  });
  client.on('error', () => undefined);
  clients.push(client);
  return client;
}

async function readyCluster(client: Cluster): Promise<void> {
  await eventually(() => client.status === 'ready', 10_000);
}

/** One key per master for rule `name`, found by the slot its Redis key lands in. */
async function keysPerMaster(name: string): Promise<Map<RedisProcess, string>> {
  const found = new Map<RedisProcess, string>();
  for (let i = 0; found.size < cluster.nodes.length && i < 1000; i++) {
    const key = `tenant-${i}`;
    const master = await cluster.masterForSlot(keySlot(`rl:{${name}|${key}}`));
    if (!found.has(master)) found.set(master, key);
  }
  return found;
}

beforeAll(async () => {
  cluster = await RedisCluster.start({ masters: 3 });
  // Without replicas, a dead master would otherwise stop the whole cluster.
  await Promise.all(
    cluster.nodes.map(node => node.command('CONFIG', 'SET', 'cluster-require-full-coverage', 'no')),
  );
}, 30_000);

afterAll(async () => {
  clients.forEach(client => client.disconnect());
  await cluster?.stop();
});

describe('RateLimiter on a Redis Cluster of 3 masters', () => {
  it('computes the same slots as Redis for hash-tagged keys', () => {
    for (const key of ['rl:{a|b}', 'rl:{tenant-create|acme}', 'plain', '{}x', 'x{y}z']) {
      expect(clusterSlot(key)).toBe(keySlot(key));
    }
  });

  it('spreads one rule over every shard', async () => {
    const name = uniqueName('spread');
    const masters = new Set<number>();
    for (let i = 0; i < 60; i++) {
      masters.add((await cluster.masterForSlot(clusterSlot(`rl:{${name}|user-${i}}`))).port);
    }
    expect(masters.size).toBe(3);
  });

  it('admits exactly the limit per key on every shard under concurrency', async () => {
    const name = uniqueName('exact');
    const [a, b] = [clusterClient(), clusterClient()];
    await Promise.all([readyCluster(a), readyCluster(b)]);
    const limiters = [a, b].map(
      client =>
        new RateLimiter({
          name,
          limit: 5,
          window: '1h',
          redis: client,
          timeout: 1000,
          logger: recordingLogger(),
        }),
    );
    try {
      const keys = [...(await keysPerMaster(name)).values()];
      expect(keys).toHaveLength(3);
      const results = await Promise.all(
        keys.flatMap(key =>
          Array.from({ length: 100 }, (_, i) => (limiters[i % 2] as RateLimiter).consume(key)),
        ),
      );
      for (const key of keys) {
        const mine = results.filter(r => r.key === key);
        expect(mine.filter(r => r.allowed)).toHaveLength(5);
        expect(mine.every(r => r.source === 'redis')).toBe(true);
      }
    } finally {
      await Promise.all(limiters.map(l => l.close()));
    }
  });

  it('decides policies in one call per key on every shard: their keys share the hash tag', async () => {
    const name = uniqueName('policies');
    const client = clusterClient();
    await readyCluster(client);
    const limiter = new RateLimiter({
      name,
      policies: [
        { name: 'burst', limit: 3, window: '1m' },
        { name: 'daily', limit: 4, window: '1d' },
      ],
      redis: client,
      timeout: 1000,
      logger: recordingLogger(),
    });
    try {
      const keys = [...(await keysPerMaster(name)).values()];
      expect(keys).toHaveLength(3);
      const results = await Promise.all(
        keys.flatMap(key => Array.from({ length: 10 }, () => limiter.consume(key))),
      );
      for (const key of keys) {
        const mine = results.filter(r => r.key === key);
        // No CROSSSLOT error turned into a fallback: Redis decided each one.
        expect(mine.every(r => r.source === 'redis')).toBe(true);
        expect(mine.filter(r => r.allowed)).toHaveLength(3);
        const master = await cluster.masterForSlot(keySlot(`rl:{${name}|${key}}`));
        expect(await master.command('HGET', `rl:{${name}|${key}}|daily`, 'a')).toBe('3');
      }
    } finally {
      await limiter.close();
    }
  });

  it('decides locally before the client is ready and reports a closed breaker from then on', async () => {
    const client = clusterClient();
    const limiter = new RateLimiter({
      name: uniqueName('early'),
      limit: 1000,
      window: '1h',
      redis: client,
      timeout: 1000,
      breaker: { threshold: 3, halfOpenAfter: 60_000 },
      logger: recordingLogger(),
    });
    try {
      expect(client.status).not.toBe('ready');
      for (let i = 0; i < 5; i++) {
        expect((await limiter.consume(`early-${i}`)).source).toBe('memory');
      }
      await readyCluster(client);
      const sources = new Set<string>();
      for (let i = 0; i < 60; i++) sources.add((await limiter.consume(`user-${i}`)).source);
      expect([...sources]).toEqual(['redis']);
      // No breaker for "unassigned" slots is left open behind the live ones.
      expect(limiter.breakerState).toBe('closed');
    } finally {
      await limiter.close();
    }
  });

  it('reloads the script on every shard after SCRIPT FLUSH', async () => {
    const name = uniqueName('flush');
    const client = clusterClient();
    await readyCluster(client);
    const limiter = new RateLimiter({
      name,
      limit: 5,
      window: '1h',
      redis: client,
      logger: recordingLogger(),
    });
    try {
      const keys = [...(await keysPerMaster(name)).values()];
      for (const key of keys) await limiter.consume(key);
      await Promise.all(cluster.nodes.map(node => node.command('SCRIPT', 'FLUSH')));
      for (const key of keys) {
        expect(await limiter.consume(key)).toMatchObject({ source: 'redis', remaining: 3 });
      }
    } finally {
      await limiter.close();
    }
  });

  it('loads the script on a restarted master as it reconnects, so its first decision is one EVALSHA', async () => {
    const name = uniqueName('probe');
    const client = clusterClient();
    await readyCluster(client);
    const limiter = new RateLimiter({
      name,
      limit: 5,
      window: '1h',
      redis: client,
      timeout: 1000,
      breaker: { threshold: 100, halfOpenAfter: 100 },
      logger: recordingLogger(),
    });
    try {
      const victim = cluster.nodes[1] as RedisProcess;
      const key = (await keysPerMaster(name)).get(victim) as string;
      expect((await limiter.consume(key)).source).toBe('redis');
      await victim.restart();
      await cluster.waitUntilHealthy();
      // The restarted node has an empty script cache until the client loads it.
      await eventually(async () => (await limiter.consume(key)).source === 'redis', 10_000, 100);
      expect(await victim.commandCount('eval')).toBe(0);
      expect(await victim.commandCount('evalsha')).toBeGreaterThanOrEqual(1);
    } finally {
      await limiter.close();
    }
  }, 30_000);

  it('falls back only for the keys of a killed master, never a 5xx, and recovers when it returns', async () => {
    const client = clusterClient();
    await readyCluster(client);
    const common = {
      limit: 1000,
      window: '1h',
      redis: client,
      timeout: 100,
      breaker: { threshold: 3, halfOpenAfter: 300 },
      logger: recordingLogger(),
      key: (req: express.Request) => String(req.query.k),
    };
    const critical = rateLimit({ ...common, name: uniqueName('critical') });
    const open = rateLimit({ ...common, name: uniqueName('open'), failClosed: false });
    const app = express();
    app.get('/critical', critical, (_req, res) => void res.json({ ok: true }));
    app.get('/open', open, (_req, res) => void res.json({ ok: true }));
    const criticalKeys = await keysPerMaster(critical.limiter.name);
    const openKeys = await keysPerMaster(open.limiter.name);
    const victim = cluster.nodes[0] as RedisProcess;
    const hitAll = async () => {
      const seen: Array<{
        route: string;
        dead: boolean;
        status: number;
        source: string;
        ms: number;
      }> = [];
      for (const [route, keys] of [
        ['critical', criticalKeys],
        ['open', openKeys],
      ] as const) {
        for (const [master, key] of keys) {
          const started = performance.now();
          const response = await request(app).get(`/${route}`).query({ k: key });
          seen.push({
            route,
            dead: master === victim,
            status: response.status,
            source: String(response.headers['x-ratelimit-source']),
            ms: performance.now() - started,
          });
        }
      }
      return seen;
    };
    try {
      expect((await hitAll()).every(s => s.source === 'redis')).toBe(true);
      await victim.kill();
      const during: Awaited<ReturnType<typeof hitAll>> = [];
      for (let round = 0; round < 6; round++) during.push(...(await hitAll()));
      expect(during.filter(s => s.status >= 500)).toEqual([]);
      expect(Math.max(...during.map(s => s.ms))).toBeLessThan(100 + 150);
      const late = during.slice(-6);
      expect(
        late
          .filter(s => s.dead)
          .map(s => `${s.route}:${s.source}`)
          .sort(),
      ).toEqual(['critical:memory', 'open:bypass']);
      expect(late.filter(s => !s.dead).every(s => s.source === 'redis')).toBe(true);

      await victim.restart();
      await cluster.waitUntilHealthy();
      await eventually(async () => (await hitAll()).every(s => s.source === 'redis'), 15_000, 200);
    } finally {
      await Promise.all([critical.limiter.close(), open.limiter.close()]);
    }
  }, 40_000);
});
