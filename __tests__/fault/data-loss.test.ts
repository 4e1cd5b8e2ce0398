// Every kind of Redis data loss of issue 10, against real redis-server
// processes, for all three algorithms at once: a key used USED of LIMIT in
// Redis on one fail-closed instance (so its memory store mirrors the count),
// the loss, then requests go on. However Redis lost the count, the key must
// not be admitted more than LIMIT times in its window while this instance
// remembers it. FLUSHDB and eviction give no connection error at all: no
// outage precedes those, the count must survive all the same.
import { once } from 'node:events';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { RateLimiter, type AlgorithmName, type RedisClient } from '../../lib/index.js';
import { RedisCluster, keySlot } from '../helpers/redis-cluster.js';
import { RedisProcess } from '../helpers/redis-process.js';
import { RedisSentinelSet } from '../helpers/redis-sentinel.js';
import {
  eventually,
  failFastClient,
  ready,
  recordingLogger,
  uniqueName,
} from '../helpers/redis.js';

const ALGORITHMS: AlgorithmName[] = ['fixed-window', 'sliding-window', 'token-bucket'];
const LIMIT = 5;
/** Units each key spends in Redis before the loss. */
const USED = 3;
// Counts, not latency, are under test: a generous timeout keeps a loaded CI
// machine from turning slow answers into fallbacks.
const TIMEOUT_MS = 1000;
const BREAKER = { threshold: 1, halfOpenAfter: 100 };
const PACE_MS = 25;
// A dead node never answers the graceful close: don't hold jest for ioredis's
// default 2 s (the option is missing from ioredis's types).
const SHORT_DISCONNECT = { disconnectTimeout: 100 } as RedisOptions;

/** One limiter (one algorithm) and the key it spends, with what it admitted. */
type Subject = {
  algorithm: AlgorithmName;
  limiter: RateLimiter;
  key: string;
  admitted: number;
  /** Sources of the decisions made after the loss, in order. */
  after: string[];
};

function subjects(client: RedisClient): Subject[] {
  return ALGORITHMS.map(algorithm => ({
    algorithm,
    limiter: new RateLimiter({
      name: uniqueName(algorithm),
      algorithm,
      limit: LIMIT,
      // Long enough that the test never crosses into a new window.
      window: '1h',
      redis: client,
      timeout: TIMEOUT_MS,
      breaker: BREAKER,
      // Its own store, as another process would have.
      memory: { maxKeys: 1000 },
      logger: recordingLogger(),
    }),
    key: 'k',
    admitted: 0,
    after: [],
  }));
}

/** USED requests per subject before the loss, each decided (and admitted) by Redis. */
async function spend(all: Subject[]): Promise<void> {
  for (const s of all) {
    for (let i = 0; i < USED; i++) {
      const result = await s.limiter.consume(s.key);
      expect(result).toMatchObject({ allowed: true, source: 'redis' });
      s.admitted++;
    }
  }
}

/**
 * After the loss: requests go on, paced, until every subject has made at
 * least LIMIT attempts and Redis has decided at least 2 of them (so a fresh
 * quota in Redis would show). Rejects with the decisions seen if Redis does
 * not answer within `withinMs`.
 */
async function carryOn(all: Subject[], withinMs: number): Promise<void> {
  const deadline = Date.now() + withinMs;
  const done = (s: Subject): boolean =>
    s.after.length >= LIMIT && s.after.filter(source => source === 'redis').length >= LIMIT;
  while (!all.every(done)) {
    if (Date.now() > deadline) {
      throw new Error(
        `Redis did not decide again within ${withinMs} ms: ${JSON.stringify(
          all.map(s => ({ algorithm: s.algorithm, after: summary(s) })),
        )}`,
      );
    }
    for (const s of all) {
      const result = await s.limiter.consume(s.key);
      s.after.push(result.source);
      if (result.allowed) s.admitted++;
    }
    await new Promise(resolve => setTimeout(resolve, PACE_MS));
  }
}

/** Decisions after the loss, runs folded: 'memory x40, redis x2'. */
function summary(s: Subject): string {
  const runs: Array<[string, number]> = [];
  for (const source of s.after) {
    const last = runs[runs.length - 1];
    if (last?.[0] === source) last[1]++;
    else runs.push([source, 1]);
  }
  return runs.map(([source, n]) => `${source} x${n}`).join(', ');
}

function expectWithinLimit(all: Subject[]): void {
  const over = all
    .filter(s => s.admitted > LIMIT)
    .map(s => `${s.algorithm}: ${s.admitted} of ${LIMIT} admitted (after the loss: ${summary(s)})`);
  expect(over).toEqual([]);
  for (const s of all) expect(s.admitted).toBeGreaterThanOrEqual(USED);
}

/** Redis keys of the subjects' rules on `node` (any key naming the rule counts). */
async function ruleKeys(node: RedisProcess, all: Subject[]): Promise<string[]> {
  const found: string[] = [];
  for (const s of all) {
    const reply = await node.command('KEYS', `*${s.limiter.name}*`);
    found.push(...reply.split('\n').filter(line => line.trim() !== ''));
  }
  return found;
}

async function closeAll(all: Subject[]): Promise<void> {
  await Promise.all(all.map(s => s.limiter.close()));
}

describe('RateLimiter when a single Redis loses its data', () => {
  let redis: RedisProcess;
  let client: Redis;
  let all: Subject[];

  beforeEach(async () => {
    redis = await RedisProcess.start();
    client = failFastClient(redis.port);
    await ready(client);
    all = subjects(client);
  });

  afterEach(async () => {
    await closeAll(all);
    client.disconnect();
    await redis.stop();
  });

  it('restart without persistence, no request while it is down', async () => {
    await spend(all);
    const closed = once(client, 'close');
    await redis.restart();
    await closed;
    await ready(client);
    expect(await ruleKeys(redis, all)).toEqual([]);
    await carryOn(all, 5000);
    expectWithinLimit(all);
  });

  it('restart without persistence, requests going on while it is down', async () => {
    await spend(all);
    await redis.kill();
    for (const s of all) {
      const result = await s.limiter.consume(s.key);
      expect(result.source).toBe('memory');
      s.after.push(result.source);
      if (result.allowed) s.admitted++;
    }
    await redis.restart();
    await carryOn(all, 5000);
    expectWithinLimit(all);
  });

  it('FLUSHDB, which no connection error announces', async () => {
    await spend(all);
    await redis.command('FLUSHDB');
    expect(await ruleKeys(redis, all)).toEqual([]);
    await carryOn(all, 5000);
    expect(all.flatMap(s => s.after).every(source => source === 'redis')).toBe(true);
    expectWithinLimit(all);
  });

  it('eviction under maxmemory with allkeys-lru, which no connection error announces', async () => {
    await spend(all);
    // A little room above what Redis uses now, then junk until LRU eviction
    // has taken every key of the three rules.
    const info = await redis.command('INFO', 'memory');
    const used = Number(/^used_memory:(\d+)\r?$/m.exec(info)?.[1]);
    await redis.command('CONFIG', 'SET', 'maxmemory-policy', 'allkeys-lru');
    await redis.command('CONFIG', 'SET', 'maxmemory', String(used + 512 * 1024));
    const filler = failFastClient(redis.port);
    try {
      await ready(filler);
      const junk = 'x'.repeat(8 * 1024);
      let written = 0;
      while ((await ruleKeys(redis, all)).length > 0) {
        if (written > 20_000) throw new Error(`rule keys not evicted after ${written} junk keys`);
        const batch = filler.pipeline();
        for (let i = 0; i < 100; i++) batch.set(`junk:${written++}`, junk);
        await batch.exec();
      }
      expect(
        Number(/^evicted_keys:(\d+)\r?$/m.exec(await redis.command('INFO', 'stats'))?.[1]),
      ).toBeGreaterThan(0);
    } finally {
      filler.disconnect();
    }
    await carryOn(all, 5000);
    expect(all.flatMap(s => s.after).every(source => source === 'redis')).toBe(true);
    expectWithinLimit(all);
  });
});

describe('RateLimiter on Sentinel when it fails over to a replica that missed the last writes', () => {
  let set: RedisSentinelSet | undefined;
  let client: Redis | undefined;
  let all: Subject[] = [];

  afterEach(async () => {
    await closeAll(all);
    client?.disconnect();
    await set?.stop();
  });

  it('Sentinel failover', async () => {
    set = await RedisSentinelSet.start({ downAfterMs: 1000, failoverTimeoutMs: 3000 });
    const { master, replica } = set;
    client = new Redis({
      sentinels: set.sentinels,
      name: set.masterName,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 500,
      sentinelRetryStrategy: () => 100,
      retryStrategy: () => 100,
      ...SHORT_DISCONNECT,
    });
    client.on('error', () => undefined);
    const sentinelClient = client;
    await eventually(() => sentinelClient.status === 'ready', 5000);
    all = subjects(client);

    // The replica stops (SIGSTOP) and its replication link is cut, so it
    // cannot reconnect and resync: every write below stays on the master.
    replica.freeze();
    await master.command('CLIENT', 'KILL', 'TYPE', 'replica');
    await spend(all);
    await master.kill();
    replica.resume();
    expect(await ruleKeys(replica, all)).toEqual([]);

    await carryOn(all, 15_000);
    await set.waitForMaster(replica.port, 1000);
    expectWithinLimit(all);
  }, 30_000);
});

describe('RateLimiter on a Redis Cluster when a master fails over to a replica that missed the last writes', () => {
  let cluster: RedisCluster | undefined;
  let client: Cluster | undefined;
  let all: Subject[] = [];

  afterEach(async () => {
    await closeAll(all);
    client?.disconnect();
    await cluster?.stop();
  });

  it('Cluster master failover', async () => {
    cluster = await RedisCluster.start({ masters: 3, replicas: 1, nodeTimeoutMs: 1000 });
    const started = cluster;
    client = new Cluster(cluster.startupNodes(), {
      enableOfflineQueue: false,
      clusterRetryStrategy: () => 100,
      redisOptions: { maxRetriesPerRequest: 0, connectTimeout: 500, ...SHORT_DISCONNECT },
    });
    client.on('error', () => undefined);
    const clusterClient = client;
    await eventually(() => clusterClient.status === 'ready', 10_000);
    all = subjects(client);

    // Every subject's key on one master, the victim.
    const victim = await cluster.masterForSlot(keySlot(redisKey(all[0] as Subject)));
    for (const s of all) {
      for (let i = 0; ; i++) {
        if (i === 1000) throw new Error(`no key of ${s.limiter.name} on ${victim.port}`);
        const key = `tenant-${i}`;
        if ((await started.masterForSlot(keySlot(redisKey({ ...s, key })))) !== victim) continue;
        s.key = key;
        break;
      }
    }
    const replica = await cluster.replicaOf(victim);

    // As on Sentinel: the replica stops and loses its link, so it misses
    // every write below. Validity factor 0: it may take over however stale
    // it is (by default a replica that lost its link refuses to).
    await replica.command('CONFIG', 'SET', 'cluster-replica-validity-factor', '0');
    replica.freeze();
    await victim.command('CLIENT', 'KILL', 'TYPE', 'replica');
    await spend(all);
    await victim.kill();
    replica.resume();
    expect(await ruleKeys(replica, all)).toEqual([]);

    await carryOn(all, 20_000);
    expect(await cluster.masterForSlot(keySlot(redisKey(all[0] as Subject)))).toBe(replica);
    expectWithinLimit(all);
  }, 45_000);
});

// The counter key of a subject, as the README documents it for Cluster hash
// tags (name and key): only used to pick keys that live on one master.
function redisKey(s: Pick<Subject, 'limiter' | 'key'>): string {
  return `rl:{${s.limiter.name}|${s.key}}`;
}
