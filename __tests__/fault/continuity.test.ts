import type { Redis } from 'ioredis';
import { RateLimiter, type AlgorithmName } from '../../lib/index.js';
import { RedisProcess } from '../helpers/redis-process.js';
import {
  eventually,
  failFastClient,
  ready,
  recordingLogger,
  uniqueName,
} from '../helpers/redis.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

const HALF_OPEN_AFTER_MS = 200;

/** Redis behind a proxy, one client through it, limiters built on demand. */
class Setup {
  limiters: RateLimiter[] = [];

  private constructor(
    readonly redis: RedisProcess,
    readonly proxy: TcpProxy,
    readonly client: Redis,
  ) {}

  static async start(): Promise<Setup> {
    const redis = await RedisProcess.start();
    const proxy = await TcpProxy.start({ host: redis.host, port: redis.port });
    const client = failFastClient(proxy.port);
    await ready(client);
    return new Setup(redis, proxy, client);
  }

  limiter(algorithm: AlgorithmName, limit = 5): RateLimiter {
    const limiter = new RateLimiter({
      name: uniqueName(algorithm),
      limit,
      window: '30s',
      algorithm,
      redis: this.client,
      timeout: 100,
      breaker: { threshold: 1, halfOpenAfter: HALF_OPEN_AFTER_MS },
      logger: recordingLogger(),
    });
    this.limiters.push(limiter);
    return limiter;
  }

  /** An outage in which Redis keeps its data: the network to it is cut. */
  cut(): void {
    this.proxy.refuse = true;
    this.proxy.cutAll();
  }

  async heal(limiter: RateLimiter): Promise<void> {
    this.proxy.refuse = false;
    await this.waitForRedis(limiter);
  }

  async waitForRedis(limiter: RateLimiter): Promise<void> {
    await ready(this.client);
    await new Promise(resolve => setTimeout(resolve, HALF_OPEN_AFTER_MS + 20));
    // The next call is the half-open probe; get() probes without consuming.
    await eventually(
      async () => (await limiter.get('probe'), limiter.breakerState === 'closed'),
      3000,
      50,
    );
    await limiter.reconcile();
  }

  async stop(): Promise<void> {
    await Promise.all(this.limiters.map(l => l.close()));
    this.client.disconnect();
    await this.proxy.close();
    await this.redis.stop();
  }
}

async function admitted(limiter: RateLimiter, key: string, attempts: number): Promise<string[]> {
  const sources: string[] = [];
  for (let i = 0; i < attempts; i++) {
    const result = await limiter.consume(key);
    if (result.allowed) sources.push(result.source);
  }
  return sources;
}

const ALGORITHMS: AlgorithmName[] = ['fixed-window', 'sliding-window', 'token-bucket'];

describe.each(ALGORITHMS)('RateLimiter failover continuity (%s)', algorithm => {
  let setup: Setup;

  beforeEach(async () => {
    setup = await Setup.start();
  });

  afterEach(async () => {
    await setup.stop();
  });

  it('keeps a key exhausted in Redis limited when the breaker opens', async () => {
    const limiter = setup.limiter(algorithm);
    expect(await admitted(limiter, 'k', 5)).toEqual(Array(5).fill('redis'));
    setup.cut();
    const during = await limiter.consume('k');
    expect(during).toMatchObject({ source: 'memory', allowed: false });
    expect(limiter.breakerState).toBe('open');
  });

  it('keeps a partly used key partly used: only the rest is admitted from memory', async () => {
    const limiter = setup.limiter(algorithm);
    expect(await admitted(limiter, 'k', 2)).toEqual(['redis', 'redis']);
    setup.cut();
    expect(await admitted(limiter, 'k', 6)).toEqual(['memory', 'memory', 'memory']);
  });

  it('writes memory hits back when Redis returns with its data: exactly the rest admitted after', async () => {
    const limiter = setup.limiter(algorithm);
    setup.cut();
    expect(await admitted(limiter, 'k', 3)).toEqual(['memory', 'memory', 'memory']);
    await setup.heal(limiter);
    expect(limiter.pendingReconciliation).toBe(0);
    expect(await admitted(limiter, 'k', 5)).toEqual(['redis', 'redis']);
  });

  it('writes memory hits back when Redis returns empty (restart with data loss)', async () => {
    const limiter = setup.limiter(algorithm);
    await limiter.consume('other');
    await setup.redis.kill();
    expect(await admitted(limiter, 'k', 3)).toEqual(['memory', 'memory', 'memory']);
    await setup.redis.restart();
    await setup.waitForRedis(limiter);
    expect(await setup.client.exists(`rl:{${limiter.name}|other}`)).toBe(0);
    expect(await admitted(limiter, 'k', 5)).toEqual(['redis', 'redis']);
  });
});

describe('RateLimiter reconciliation with several instances', () => {
  it('adds each instance share, so the global count is right', async () => {
    const setup = await Setup.start();
    try {
      const name = uniqueName('shared');
      const make = () => {
        const limiter = new RateLimiter({
          name,
          limit: 10,
          fallbackLimit: 3,
          window: '30s',
          redis: setup.client,
          breaker: { threshold: 1, halfOpenAfter: HALF_OPEN_AFTER_MS },
          logger: recordingLogger(),
          // Each instance has its own memory store, as separate processes would.
          memory: { maxKeys: 100 },
        });
        setup.limiters.push(limiter);
        return limiter;
      };
      const [a, b] = [make(), make()];
      setup.cut();
      expect(await admitted(a, 'k', 5)).toHaveLength(3);
      expect(await admitted(b, 'k', 5)).toHaveLength(3);
      setup.proxy.refuse = false;
      await setup.waitForRedis(a);
      await b.reconcile();
      const reconciled = await a.get('k');
      expect(reconciled).toMatchObject({ source: 'redis', remaining: 4 });
      expect(await admitted(b, 'k', 10)).toHaveLength(4);
    } finally {
      await setup.stop();
    }
  });
});

describe('RateLimiter recovery of a key with outage hits', () => {
  it('writes the key hits before the half-open probe decides it', async () => {
    const setup = await Setup.start();
    try {
      const limiter = setup.limiter('fixed-window');
      expect(await admitted(limiter, 'k', 2)).toEqual(['redis', 'redis']);
      setup.cut();
      expect(await admitted(limiter, 'k', 5)).toEqual(['memory', 'memory', 'memory']);
      setup.proxy.refuse = false;
      await ready(setup.client);
      await new Promise(resolve => setTimeout(resolve, HALF_OPEN_AFTER_MS + 20));
      // This consume is the probe: without the write-first it would see 2 of 5.
      const probe = await limiter.consume('k');
      expect(probe).toMatchObject({ source: 'redis', allowed: false, remaining: 0 });
      expect(limiter.breakerState).toBe('closed');
      expect(limiter.pendingReconciliation).toBe(0);
    } finally {
      await setup.stop();
    }
  });
});

describe('RateLimiter block cache during an outage', () => {
  it('lets the fallback decide (and say so) for a key Redis had denied', async () => {
    const setup = await Setup.start();
    try {
      const limiter = setup.limiter('fixed-window', 1);
      await limiter.consume('k');
      expect(await limiter.consume('k')).toMatchObject({ allowed: false, source: 'redis' });
      setup.cut();
      // The breaker (threshold 1) opens on the first failure of another key.
      await limiter.consume('other');
      expect(limiter.breakerState).toBe('open');
      expect(await limiter.consume('k')).toMatchObject({ allowed: false, source: 'memory' });
    } finally {
      await setup.stop();
    }
  });
});
