import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import request from 'supertest';
import {
  RateLimiter,
  RateLimitStoreError,
  rateLimit,
  redisAclRules,
  type AlgorithmName,
  type RateLimitMiddleware,
} from '../../lib/index.js';
import { REDIS_COMMANDS } from '../../lib/redis-acl.js';
import { createApp } from '../helpers/create-app.js';
import {
  exerciseEveryFeature,
  touchEveryFeature,
  whenConnected,
} from '../helpers/every-feature.js';
import { CommandMonitor, aclDenials, setAclUser } from '../helpers/redis-acl.js';
import { RedisProcess } from '../helpers/redis-process.js';
import { eventually, recordingLogger, uniqueName } from '../helpers/redis.js';

// Least privilege, proven on a real redis-server: a user holding exactly
// redisAclRules() serves every feature, MONITOR shows the package sends
// exactly REDIS_COMMANDS, and a missing right is reported once, naming it.

const PASSWORD = 'acl-test-password';
// Commands every user may run (Redis exempts them from ACL checks): ioredis
// authenticates with HELLO (RESP3) or AUTH.
const CONNECTION_COMMANDS = ['hello', 'auth'];
// Sent only by the instance registry (fallbackLimit: 'share').
const REGISTRY_COMMANDS: string[] = ['zadd', 'zremrangebyscore', 'zcard', 'zrem'];

let redis: RedisProcess;

beforeAll(async () => {
  redis = await RedisProcess.start();
});

afterAll(async () => {
  await redis.stop();
});

beforeEach(async () => {
  await redis.command('ACL', 'LOG', 'RESET');
});

function urlFor(user: string): string {
  return `redis://${user}:${PASSWORD}@127.0.0.1:${redis.port}`;
}

/** redisAclRules() without one rule (a whole rule: `+eval` leaves `+evalsha`). */
function without(rule: string): string {
  return redisAclRules()
    .split(' ')
    .filter(r => r !== rule)
    .join(' ');
}

const flushScripts = () => redis.command('SCRIPT', 'FLUSH');

describe('redisAclRules()', () => {
  it('grants exactly the listed commands on keys under the prefix, and no channel', () => {
    expect(redisAclRules()).toBe(
      `resetchannels -@all ~rl:* ${REDIS_COMMANDS.map(c => `+${c}`).join(' ')}`,
    );
    expect(redisAclRules('app*1:')).toMatch(/ ~app\\\*1:\* /);
  });

  it('is the line the README documents', () => {
    const readme = readFileSync(join(__dirname, '../../README.md'), 'utf8');
    expect(readme).toContain(`ACL SETUSER limiter on >PASSWORD ${redisAclRules()}\n`);
  });

  it('serves every feature to a user that has only these rules, without one denial', async () => {
    await setAclUser(redis, 'limiter', PASSWORD, redisAclRules());
    const logger = recordingLogger();
    const run = await exerciseEveryFeature(urlFor('limiter'), flushScripts, logger);
    expect(run.storeErrors).toEqual([]);
    expect(logger.error).not.toHaveBeenCalled();
    // Denials a feature survives (a refused SCRIPT LOAD, ioredis's INFO ready
    // check) would still fill the ACL log a security team watches.
    expect(await aclDenials(redis)).toEqual([]);
  });

  it('is what the package sends: every listed command and nothing else (MONITOR)', async () => {
    const monitor = await CommandMonitor.start(redis);
    // The default user may run anything, so a command missing from the list
    // is executed and seen rather than refused.
    const run = await exerciseEveryFeature(
      `redis://127.0.0.1:${redis.port}`,
      flushScripts,
      recordingLogger(),
    );
    monitor.stop();
    expect(run.storeErrors).toEqual([]);
    const sent = [...monitor.counts().keys()]
      .filter(name => !CONNECTION_COMMANDS.includes(name) && name !== 'script|flush')
      .sort();
    const listed: string[] = [...REDIS_COMMANDS].sort();
    expect({
      sentButNotListed: sent.filter(name => !listed.includes(name)),
      listedButNeverSent: listed.filter(name => !sent.includes(name)),
    }).toEqual({ sentButNotListed: [], listedButNeverSent: [] });
  });
});

describe.each(['fixed-window', 'sliding-window', 'token-bucket'] as AlgorithmName[])(
  'rateLimit() %s as the least-privilege Redis user',
  algorithm => {
    const created: RateLimitMiddleware[] = [];
    afterAll(async () => {
      await Promise.all(created.map(m => m.limiter.close()));
    });

    beforeAll(async () => {
      await setAclUser(redis, 'limiter', PASSWORD, redisAclRules());
    });

    function limited(limit: number): RateLimitMiddleware {
      const middleware = rateLimit({
        name: uniqueName(`http-${algorithm}`),
        limit,
        window: '1h',
        algorithm,
        redis: urlFor('limiter'),
        key: () => 'client',
        timeout: 1000,
        logger: recordingLogger(),
      });
      created.push(middleware);
      return middleware;
    }

    it('counts in Redis, answers 429 at the limit, and .reset() restores the quota', () =>
      whenConnected(urlFor('limiter'), async () => {
        const middleware = limited(2);
        const server = createApp('express5', middleware);
        for (const remaining of ['1', '0']) {
          const res = await request(server).get('/').expect(200);
          expect(res.headers['x-ratelimit-source']).toBe('redis');
          expect(res.headers['x-ratelimit-remaining']).toBe(remaining);
          expect(res.headers['ratelimit-policy']).toMatch(/q=2/);
        }
        const denied = await request(server).get('/').expect(429);
        expect(denied.headers['x-ratelimit-source']).toBe('redis');
        expect(denied.headers['content-type']).toMatch(/^application\/problem\+json/);
        expect(Number(denied.headers['retry-after'])).toBeGreaterThan(0);
        await middleware.reset('client');
        const again = await request(server).get('/').expect(200);
        expect(again.headers['x-ratelimit-source']).toBe('redis');
        await expect(middleware.limiter.get('client')).resolves.toMatchObject({
          source: 'redis',
          remaining: 1,
        });
        expect(await aclDenials(redis)).toEqual([]);
      }));
  },
);

describe('a Redis user missing a right', () => {
  const cases: Array<[string, string, string]> = [
    // [what is missing, rules, rule the report must name]
    ['a command the script calls (HSET)', without('+hset'), '+hset'],
    ['the key pattern', `${without('~rl:*')} ~other:*`, '~rl:*'],
  ];

  it.each(cases)(
    'lacking %s: falls back (no 5xx) and logs once the rule to add',
    async (_what, rules, missing) => {
      const user = uniqueName('user').replace(/[^a-z0-9]/gi, '');
      await setAclUser(redis, user, PASSWORD, rules);
      const logger = recordingLogger();
      const middleware = rateLimit({
        name: uniqueName('noperm'),
        limit: 100,
        window: '1h',
        redis: urlFor(user),
        key: () => 'client',
        timeout: 1000,
        breaker: { threshold: 3, halfOpenAfter: 60_000 },
        logger,
      });
      const storeErrors: unknown[] = [];
      middleware.limiter.on('storeError', error => storeErrors.push(error));
      try {
        const server = createApp('express5', middleware);
        for (let i = 0; i < 8; i++) {
          const res = await request(server).get('/');
          expect(res.status).toBe(200);
          expect(res.headers['x-ratelimit-source']).toBe('memory');
        }
        await eventually(() => logger.error.mock.calls.length > 0, 3000);
        expect(storeErrors.length).toBeGreaterThan(0);
        // A few more failures (here: the half-open probe) add no report.
        await request(server).get('/').expect(200);
        const reports = logger.error.mock.calls.map(call => String(call[0]));
        expect(reports).toHaveLength(1);
        expect(reports[0]).toContain(`lacks '${missing}'`);
        expect(reports[0]).toContain(`ACL SETUSER ${user} ${missing}`);
        expect(reports[0]).toContain(redisAclRules());
      } finally {
        await middleware.limiter.close();
      }
    },
  );

  // Each listed command is needed, and its absence is named: by the report
  // when a feature fails without it, in Redis's ACL log when the package
  // copes (SCRIPT LOAD: the EVAL path loads the script instead).
  it.each([...REDIS_COMMANDS])(
    'lacking %s: the report or the ACL log names it, and Redis is unharmed',
    async command => {
      const user = `no${command.replace('|', '')}`;
      await setAclUser(redis, user, PASSWORD, without(`+${command}`));
      const logger = recordingLogger();
      await touchEveryFeature(urlFor(user), flushScripts, logger);
      if (command === 'script|load') {
        // Nothing fails without it: the first call after a connect costs an
        // EVAL more, and Redis logs the denial.
        await eventually(async () =>
          (await aclDenials(redis)).some(denial => denial.object === command),
        );
        expect(logger.error).not.toHaveBeenCalled();
      } else {
        await eventually(() => logger.error.mock.calls.length > 0, 3000);
        const reports = logger.error.mock.calls.map(call => String(call[0]));
        expect(reports).toHaveLength(1);
        expect(reports[0]).toContain(`lacks '+${command}'`);
        expect(reports[0]).toContain(`ACL SETUSER ${user} +${command} `);
        // Decisions need all but the instance registry's commands.
        expect(reports[0]).toContain(
          REGISTRY_COMMANDS.includes(command)
            ? "(fallbackLimit: 'share')"
            : 'Redis decisions fall back',
        );
      }
      // The diagnosis (redis.acl_check_cmd) must never take Redis down.
      expect(await redis.command('PING')).toBe('PONG');
    },
  );

  it('lacking DEL: reset() rejects with RateLimitStoreError, reported once', async () => {
    await setAclUser(redis, 'nodel', PASSWORD, without('+del'));
    const logger = recordingLogger();
    const limiter = new RateLimiter({
      name: uniqueName('nodel'),
      limit: 5,
      window: '1h',
      redis: urlFor('nodel'),
      timeout: 1000,
      logger,
    });
    try {
      await whenConnected(urlFor('nodel'), async () => {
        await expect(limiter.consume('k')).resolves.toMatchObject({ source: 'redis' });
      });
      for (let i = 0; i < 2; i++) {
        await expect(limiter.reset('k')).rejects.toBeInstanceOf(RateLimitStoreError);
      }
      expect(logger.error).toHaveBeenCalledTimes(1);
      expect(String(logger.error.mock.calls[0]?.[0])).toContain('ACL SETUSER nodel +del');
    } finally {
      await limiter.close();
    }
  });
});

// The client-option form, for a user who builds the client.
describe('a passed-in client for the least-privilege user', () => {
  it('decides in Redis without a denial when built as the README shows', async () => {
    await setAclUser(redis, 'limiter', PASSWORD, redisAclRules());
    const client = new Redis({
      host: '127.0.0.1',
      port: redis.port,
      username: 'limiter',
      password: PASSWORD,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      enableReadyCheck: false,
      disableClientInfo: true,
    });
    const logger = recordingLogger();
    try {
      const run = await exerciseEveryFeature(client, flushScripts, logger);
      expect(run.storeErrors).toEqual([]);
      expect(await aclDenials(redis)).toEqual([]);
    } finally {
      client.disconnect();
    }
  });
});
