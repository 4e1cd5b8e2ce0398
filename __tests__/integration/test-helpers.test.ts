import { connect } from 'node:net';
import { Cluster, Redis } from 'ioredis';
import { freePort } from '../helpers/free-port.js';
import { RedisCluster, keySlot } from '../helpers/redis-cluster.js';
import { RedisProcess } from '../helpers/redis-process.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const TIMED_OUT = Symbol('timed out');

function within<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<typeof TIMED_OUT>(resolve => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function client(port: number, extra: Record<string, unknown> = {}): Redis {
  return new Redis({ port, host: '127.0.0.1', lazyConnect: true, ...extra });
}

describe('freePort', () => {
  it('returns a bindable port', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    expect(port).toBeLessThan(65536);
  });
});

describe('RedisProcess', () => {
  let redis: RedisProcess;
  const clients: Redis[] = [];

  beforeAll(async () => {
    redis = await RedisProcess.start();
  });

  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await redis.stop();
    // Idempotent by contract.
    await redis.stop();
  });

  it('answers PING via ioredis and exposes pid/url', async () => {
    const c = client(redis.port);
    clients.push(c);
    await expect(c.ping()).resolves.toBe('PONG');
    expect(redis.pid).toEqual(expect.any(Number));
    expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
  });

  it('freeze stalls commands, resume releases them', async () => {
    const c = client(redis.port, { protocol: 2 });
    clients.push(c);
    await c.ping();
    redis.freeze();
    const pending = c.set('frozen', '1');
    expect(await within(pending, 200)).toBe(TIMED_OUT);
    redis.resume();
    expect(await within(pending, 2000)).toBe('OK');
  });

  it('commandCount reflects INFO commandstats', async () => {
    const c = client(redis.port);
    clients.push(c);
    const before = await redis.commandCount('incr');
    await c.incr('counter');
    await c.incr('counter');
    expect(await redis.commandCount('incr')).toBe(before + 2);
    expect(await redis.commandCount('evalsha')).toBe(0);
  });

  it('kill then restart gives an empty server on the same port', async () => {
    await redis.command('SET', 'survives', 'no');
    expect(await redis.command('DBSIZE')).not.toBe('0');
    const oldPid = redis.pid;
    await redis.kill();
    expect(redis.pid).toBeUndefined();
    await expect(redis.command('PING')).rejects.toThrow();
    await redis.restart();
    expect(redis.pid).not.toBe(oldPid);
    expect(await redis.command('DBSIZE')).toBe('0');
    const c = client(redis.port);
    clients.push(c);
    await expect(c.get('survives')).resolves.toBeNull();
  });

  it('passes extra args and surfaces reply errors', async () => {
    const limited = await RedisProcess.start({
      args: ['--maxmemory', '1mb', '--maxmemory-policy', 'noeviction'],
    });
    try {
      expect(await limited.command('CONFIG', 'GET', 'maxmemory-policy')).toBe(
        'maxmemory-policy\nnoeviction',
      );
      await expect(limited.command('NOSUCHCOMMAND')).rejects.toThrow(/unknown command/i);
    } finally {
      await limited.stop();
    }
  });
});

describe('TcpProxy', () => {
  let redis: RedisProcess;
  let proxy: TcpProxy;
  const clients: Redis[] = [];

  beforeAll(async () => {
    redis = await RedisProcess.start();
    proxy = await TcpProxy.start({ host: redis.host, port: redis.port });
  });

  afterEach(() => {
    proxy.delayMs = 0;
    proxy.blackhole = false;
    proxy.refuse = false;
  });

  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await proxy.close();
    await redis.stop();
  });

  it('forwards traffic and counts bytes', async () => {
    const c = client(proxy.port);
    clients.push(c);
    const before = proxy.bytesToTarget;
    await expect(c.ping()).resolves.toBe('PONG');
    expect(proxy.bytesToTarget).toBeGreaterThan(before);
    expect(proxy.chunksToTarget).toBeGreaterThan(0);
    expect(proxy.connections).toBe(1);
  });

  it('delayMs adds latency in both directions', async () => {
    const c = client(proxy.port);
    clients.push(c);
    await c.ping();
    proxy.delayMs = 100;
    const started = Date.now();
    await c.ping();
    // Timers may fire a millisecond "early" against Date.now granularity.
    expect(Date.now() - started).toBeGreaterThanOrEqual(2 * 100 - 5);
  });

  it('blackhole hangs without forwarding', async () => {
    const c = client(proxy.port, { retryStrategy: () => null });
    clients.push(c);
    await c.ping();
    proxy.blackhole = true;
    const bytes = proxy.bytesToTarget;
    const pending = c.get('anything');
    pending.catch(() => undefined); // rejected by disconnect() in afterAll
    expect(await within(pending, 200)).toBe(TIMED_OUT);
    expect(proxy.bytesToTarget).toBe(bytes);
    expect(c.status).toBe('ready');
  });

  it('cutAll closes client connections', async () => {
    const c = client(proxy.port, { retryStrategy: () => null });
    clients.push(c);
    await c.ping();
    const closed = new Promise<void>(resolve => c.once('close', () => resolve()));
    proxy.cutAll();
    expect(await within(closed, 1000)).toBeUndefined();
    expect(proxy.connections).toBe(0);
  });

  it('refuse drops new connections', async () => {
    proxy.refuse = true;
    const socket = connect({ host: '127.0.0.1', port: proxy.port });
    socket.on('error', () => undefined);
    const closed = new Promise<void>(resolve => socket.once('close', () => resolve()));
    expect(await within(closed, 1000)).toBeUndefined();
    expect(proxy.connections).toBe(0);
  });
});

describe('RedisCluster', () => {
  let cluster: RedisCluster;
  let rc: Cluster | undefined;

  beforeAll(async () => {
    cluster = await RedisCluster.start();
  }, 20_000);

  afterAll(async () => {
    rc?.disconnect();
    await cluster?.stop();
  });

  it('keySlot matches CLUSTER KEYSLOT, including hash tags', async () => {
    const node = cluster.nodes[0];
    if (!node) throw new Error('no nodes');
    for (const key of ['foo', 'rl:user:42', '{user1}.a', 'x{}y', 'a{b}{c}', 'ünïcödé']) {
      expect(keySlot(key)).toBe(Number(await node.command('CLUSTER', 'KEYSLOT', key)));
    }
    expect(keySlot('{user1}.a')).toBe(keySlot('{user1}.b'));
  });

  it('serves keys across all masters and masterForSlot finds the owner', async () => {
    expect(cluster.nodes).toHaveLength(3);
    rc = new Cluster(cluster.startupNodes());
    // Pick keys until every master owns one, so the test really spans slots.
    const byOwner = new Map<number, string>();
    for (let i = 0; byOwner.size < 3 && i < 1000; i++) {
      const key = `k${i}`;
      const owner = await cluster.masterForSlot(keySlot(key));
      if (!byOwner.has(owner.port)) byOwner.set(owner.port, key);
    }
    expect(byOwner.size).toBe(3);
    for (const [port, key] of byOwner) {
      await rc.set(key, `v-${key}`);
      await expect(rc.get(key)).resolves.toBe(`v-${key}`);
      const owner = cluster.nodes.find(n => n.port === port);
      expect(await owner?.command('GET', key)).toBe(`v-${key}`);
    }
  });

  it('a killed node restarted with its nodes.conf rejoins', async () => {
    const key = 'rejoin';
    const owner = await cluster.masterForSlot(keySlot(key));
    await owner.command('SET', key, '1');
    await owner.kill();
    await owner.restart();
    await cluster.waitUntilHealthy();
    expect(await cluster.masterForSlot(keySlot(key))).toBe(owner);
    expect(await owner.command('EXISTS', key)).toBe('0');
  });
});
