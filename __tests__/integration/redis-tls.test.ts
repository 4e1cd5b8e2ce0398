import { Redis, type RedisOptions } from 'ioredis';
import request from 'supertest';
import { rateLimit, type RateLimitMiddleware } from '../../lib/index.js';
import { createApp } from '../helpers/create-app.js';
import { exerciseEveryFeature } from '../helpers/every-feature.js';
import { startTlsRedis, type TlsRedis } from '../helpers/redis-tls.js';
import { eventually, ready, recordingLogger, uniqueName } from '../helpers/redis.js';
import { runTsChild } from '../helpers/ts-child.js';

// Redis over TLS with a throwaway CA made by openssl: both ways to configure
// it work, and a certificate the client does not trust is an outage like any
// other (fallback, one line naming the cause, no 5xx, no wait past timeout).

const TIMEOUT_MS = 150;
/** What a request may take beyond `timeout` on a loaded 2-core machine. */
const MARGIN_MS = 250;

let tls: TlsRedis;

beforeAll(async () => {
  tls = await startTlsRedis();
}, 30_000);

afterAll(async () => {
  await tls.stop();
});

function tlsClient(ca: string): Redis {
  const client = new Redis({
    host: '127.0.0.1',
    port: tls.tlsPort,
    tls: { ca, servername: 'localhost' },
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 1000,
    retryStrategy: () => 100,
    ...({ disconnectTimeout: 100 } as RedisOptions),
  });
  client.on('error', () => undefined);
  return client;
}

describe('Redis over TLS', () => {
  it('works with a passed-in ioredis client that has tls options', async () => {
    const client = tlsClient(tls.certs.ca);
    try {
      await ready(client);
      const run = await exerciseEveryFeature(
        client,
        () => tls.redis.command('SCRIPT', 'FLUSH'),
        recordingLogger(),
      );
      expect(run.storeErrors).toEqual([]);
      // The commands really went over TLS.
      expect((client as unknown as { stream: { encrypted?: boolean } }).stream.encrypted).toBe(
        true,
      );
    } finally {
      client.disconnect();
    }
  });

  it('works with a rediss:// URL when Node trusts the CA (NODE_EXTRA_CA_CERTS)', async () => {
    const source = `
      const { RateLimiter } = require('./lib/index.ts');
      const { acquireUrlClient, releaseUrlClient } = require('./lib/redis-client.ts');
      const url = process.env.RRL_URL;
      const client = acquireUrlClient(url);
      client.once('ready', async () => {
        const limiter = new RateLimiter({ name: 'tls-url', limit: 2, window: '1h', redis: url, timeout: 1000 });
        const results = [];
        for (let i = 0; i < 3; i++) results.push(await limiter.consume('k'));
        console.log(JSON.stringify(results.map(r => [r.source, r.allowed])));
        await limiter.close();
        releaseUrlClient(url);
      });`;
    const outcome = await runTsChild(source, {
      NODE_EXTRA_CA_CERTS: tls.certs.caFile,
      RRL_URL: `rediss://127.0.0.1:${tls.tlsPort}`,
    });
    expect(outcome).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(outcome.stdout)).toEqual([
      ['redis', true],
      ['redis', true],
      ['redis', false],
    ]);
    expect(await tls.redis.command('EXISTS', 'rl:{tls-url|k}')).toBe('1');
  }, 30_000);
});

describe.each([
  ['a rediss:// URL (CA not in Node’s trust store)', () => `rediss://127.0.0.1:${tls.tlsPort}`],
  ['a passed-in client trusting another CA', () => tlsClient(tls.certs.otherCa)],
])('an untrusted server certificate, through %s', (_how, redisOption) => {
  let middleware: RateLimitMiddleware;
  let logger: ReturnType<typeof recordingLogger>;
  let option: string | Redis;

  beforeAll(() => {
    logger = recordingLogger();
    option = redisOption();
    middleware = rateLimit({
      name: uniqueName('untrusted'),
      limit: 100,
      window: '1h',
      redis: option,
      timeout: TIMEOUT_MS,
      key: () => 'client',
      logger,
    });
  });

  afterAll(async () => {
    await middleware.limiter.close();
    if (typeof option !== 'string') option.disconnect();
  });

  it('falls back with no 5xx, within timeout, and logs the cause once', async () => {
    const server = createApp('express5', middleware);
    await eventually(
      () => logger.warn.mock.calls.some(c => /certificate/.test(String(c[0]))),
      3000,
    );
    // Several reconnect attempts fail meanwhile; each request still answers.
    for (let i = 0; i < 20; i++) {
      const started = performance.now();
      const res = await request(server).get('/');
      expect(performance.now() - started).toBeLessThan(TIMEOUT_MS + MARGIN_MS);
      expect(res.status).toBe(200);
      expect(res.headers['x-ratelimit-source']).toBe('memory');
    }
    // One line per transition: the connection's (with the cause) and this
    // rule's fallback; none per request or reconnect attempt. A client that
    // never connected is "not connected yet", not a breaker failure (#11):
    // the breaker stays closed and Redis decides from the first ready.
    const lines = logger.warn.mock.calls.map(c => String(c[0]));
    expect(lines).toHaveLength(2);
    expect(middleware.limiter.breakerState).toBe('closed');
    expect(lines[0]).toMatch(
      /^resilient-rate-limit: cannot use Redis at 127\.0\.0\.1:\d+: TLS: the client does not accept the server's certificate \((SELF_SIGNED|UNABLE_TO|CERT)/,
    );
    expect(lines[1]).toMatch(/cannot decide in Redis \(Redis is not connected: TLS: /);
  });
});
