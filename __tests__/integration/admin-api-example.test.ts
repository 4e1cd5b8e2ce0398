import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import request from 'supertest';
import type { RateLimitMiddleware } from '../../lib/index.js';
import { RedisProcess } from '../helpers/redis-process.js';
import { eventually, recordingLogger } from '../helpers/redis.js';

/*
 * examples/admin-api.js as its README row promises, over HTTP, on a real
 * redis-server and memory-only: the sign-in that counts only failures, the
 * tenant limit by plan, the search route's burst and daily policies, and
 * the routes that were there before them.
 *
 * The example is plain JavaScript that loads the package by its name, as an
 * app would: through `exports`, so from dist/. beforeAll builds dist when it
 * is older than lib/ (as `npm run demo` does), so this tests today's lib.
 */

const ROOT = resolve(__dirname, '../..');

type Limiters = Record<
  'login' | 'tenantCreation' | 'botActions' | 'credentialUpdates' | 'generalApi' | 'search',
  RateLimitMiddleware
>;
type AdminApi = {
  app: http.RequestListener;
  limiters: Limiters;
  close(): Promise<void>;
};
type AdminApiModule = {
  createAdminApi(options?: {
    redis?: string;
    logger?: ReturnType<typeof recordingLogger>;
  }): AdminApi;
  loginKey(account: unknown, ip: string | undefined): string;
};

let example: AdminApiModule;
let redis: RedisProcess;

beforeAll(async () => {
  execFileSync(process.execPath, [resolve(ROOT, 'scripts/build-if-stale.mjs')], {
    cwd: ROOT,
    stdio: 'pipe',
  });
  example = jest.requireActual<AdminApiModule>('../../examples/admin-api.js');
  redis = await RedisProcess.start();
}, 120_000);

afterAll(async () => {
  await redis?.stop();
});

/** The daily policy's `r` in a RateLimit header, or NaN. */
function dailyLeft(rateLimit: unknown): number {
  const match = /"daily";r=(\d+);/.exec(String(rateLimit));
  return match ? Number(match[1]) : NaN;
}

describe.each(['redis', 'memory'] as const)('examples/admin-api.js (%s)', store => {
  let api: AdminApi;
  let server: http.Server;
  let logger: ReturnType<typeof recordingLogger>;

  beforeAll(async () => {
    logger = recordingLogger();
    api = example.createAdminApi({
      redis: store === 'redis' ? redis.url : undefined,
      logger,
    });
    server = http.createServer(api.app);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    if (store === 'redis') {
      // The URL client connects in the background; until then memory decides.
      await eventually(async () => {
        const reply = await request(server).get('/api/warm-up').set('x-api-key', 'warm-up');
        return reply.headers['x-ratelimit-source'] === 'redis';
      });
    }
  });

  afterAll(async () => {
    server.closeAllConnections();
    server.close();
    await api.close();
  });

  const login = (account: string, password: string) =>
    request(server).post('/login').send({ account, password });

  it('POST /login counts a 401 and gives a 200 back', async () => {
    const key = example.loginKey('alice', (server.address() as AddressInfo).address);
    const limiter = api.limiters.login.limiter;
    const first = await login('alice', 'guess-1');
    expect(first.status).toBe(401);
    expect(first.headers['x-ratelimit-source']).toBe(store);
    expect(first.headers['x-ratelimit-limit']).toBe('5');
    expect(first.headers['x-ratelimit-remaining']).toBe('4');
    expect(first.headers['ratelimit-policy']).toBe('"login";q=5;w=900');
    expect((await login('Alice', 'guess-2')).status).toBe(401);
    expect((await limiter.get(key))?.remaining).toBe(3);

    // Successes are counted on arrival and given back once answered.
    for (let i = 0; i < 3; i++) {
      const ok = await login('alice', 'wonderland');
      expect(ok.status).toBe(200);
      expect(ok.body).toEqual({ account: 'alice', signedIn: true });
    }
    await eventually(async () => (await limiter.get(key))?.remaining === 3, 2000);

    // Three more failures spend the five; then even the right password waits.
    for (let i = 0; i < 3; i++) expect((await login('alice', 'guess')).status).toBe(401);
    const locked = await login('alice', 'wonderland');
    expect(locked.status).toBe(429);
    expect(Number(locked.headers['retry-after'])).toBeGreaterThan(0);
    expect(locked.headers['x-ratelimit-source']).toBe(store);
    // Another account from the same address has its own count.
    expect((await login('bob', 'guess')).status).toBe(401);
  });

  it('POST /login answers malformed JSON with 400, counted nowhere and logged nowhere', async () => {
    const reply = await request(server)
      .post('/login')
      .set('content-type', 'application/json')
      .send('{"account": "carol",');
    expect(reply.status).toBe(400);
    expect(reply.headers['x-ratelimit-source']).toBeUndefined();
    expect(logger.error).not.toHaveBeenCalled();
  });

  it('POST /tenants limits each caller by the plan of its API key, not by X-Plan', async () => {
    const create = (apiKey: string) =>
      request(server).post('/tenants').set('x-api-key', apiKey).set('x-plan', 'enterprise');

    const free = [];
    for (let i = 0; i < 4; i++) free.push(await create('tenants-free-key'));
    expect(free.map(reply => reply.status)).toEqual([201, 201, 201, 429]);
    expect(free[0]?.body).toMatchObject({ created: true, plan: 'free' });
    expect(free[0]?.headers['x-ratelimit-limit']).toBe('3');
    expect(free[0]?.headers['ratelimit-policy']).toBe('"tenant-creation";q=3;w=86400');
    expect(free[3]?.headers['x-ratelimit-source']).toBe(store);

    const pro = [];
    for (let i = 0; i < 4; i++) pro.push(await create('demo-pro-key'));
    expect(pro.map(reply => reply.status)).toEqual([201, 201, 201, 201]);
    expect(pro[0]?.body).toMatchObject({ created: true, plan: 'pro' });
    expect(pro[3]?.headers['x-ratelimit-limit']).toBe('20');
    expect(pro[3]?.headers['x-ratelimit-remaining']).toBe('16');
    expect(pro[3]?.headers['ratelimit-policy']).toBe('"tenant-creation";q=20;w=86400');

    const enterprise = await create('demo-enterprise-key');
    expect(enterprise.status).toBe(201);
    expect(enterprise.headers['x-ratelimit-limit']).toBe('100');
  });

  it('GET /search: burst denies with Retry-After, and a denied request costs nothing of the day', async () => {
    const search = (apiKey: string) =>
      request(server).get('/search?q=redis').set('x-api-key', apiKey);

    // Eleven requests inside one 1 s burst window. A stalled machine can
    // stretch them over two windows; then start over with a fresh caller.
    let apiKey = '';
    let replies: request.Response[] = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      apiKey = `search-client-${attempt}`;
      const started = Date.now();
      replies = [];
      for (let i = 0; i < 11; i++) replies.push(await search(apiKey));
      if (Date.now() - started < 800) break;
    }
    expect(replies.map(reply => reply.status)).toEqual([...Array(10).fill(200), 429]);

    const tenth = replies[9]!;
    expect(tenth.headers['ratelimit-policy']).toBe('"burst";q=10;w=1, "daily";q=1000;w=86400');
    expect(tenth.headers.ratelimit).toMatch(/^"burst";r=0;t=[01], "daily";r=990;t=\d+$/);
    // req.rateLimit.policies, as the route hands it on.
    expect(tenth.body.quota).toEqual([
      { name: 'burst', limit: 10, remaining: 0 },
      { name: 'daily', limit: 1000, remaining: 990 },
    ]);

    const denied = replies[10]!;
    expect(denied.headers['x-ratelimit-source']).toBe(store);
    expect(denied.headers['retry-after']).toBe('1');
    // X-RateLimit-* describe the binding policy: burst.
    expect(denied.headers['x-ratelimit-limit']).toBe('10');
    expect(denied.headers['x-ratelimit-remaining']).toBe('0');
    expect(denied.headers['ratelimit-policy']).toBe('"burst";q=10;w=1, "daily";q=1000;w=86400');
    expect(dailyLeft(denied.headers.ratelimit)).toBe(990);

    // Once the burst window is over, the next admitted request takes the
    // 991st unit of the day: none of the denied requests counted, including
    // those this loop sends while the window is still closed.
    let next: request.Response | undefined;
    await eventually(
      async () => {
        next = await search(apiKey);
        return next.status === 200;
      },
      3000,
      100,
    );
    expect(dailyLeft(next?.headers.ratelimit)).toBe(989);
    expect(next?.headers['x-ratelimit-source']).toBe(store);
  });

  it.each([
    ['post', '/bots/bot-1/actions', 202, '"bot-actions";q=20;w=3600'],
    ['put', '/users/user-1/credentials', 200, '"credential-updates";q=5;w=3600'],
    ['get', '/api/projects/1', 200, '"general-api";q=100;w=60'],
  ] as const)('%s %s keeps its limit', async (method, path, status, policy) => {
    const reply = await request(server)[method](path).set('x-api-key', 'older-routes');
    expect(reply.status).toBe(status);
    expect(reply.headers['ratelimit-policy']).toBe(policy);
    expect(reply.headers['x-ratelimit-source']).toBe(store);
  });
});
