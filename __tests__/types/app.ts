// A TypeScript Express 5 app written from the README, as a user would: the
// quick start, a limiter declared on its own, the recommended client. It is
// type-checked (never run) against the built package by `npm run
// check:types`, once with ioredis 6 and once with ioredis 5. The lines
// expected to error must keep erroring: they prove the types are not `any`.
import express from 'express';
import { Redis } from 'ioredis';
import {
  RateLimiter,
  type PolicyOptions,
  type PolicyResult,
  isRateLimitConfigError,
  rateLimit,
  type RateLimitResult,
} from 'resilient-rate-limit';

const app = express();
app.set('trust proxy', 1);

// README "Quick start", as written there.
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const tenantLimiter = rateLimit({
  name: 'tenant-create',
  limit: 3,
  window: '1d',
  redis: redisUrl,
  key: req => req.header('x-api-key') ?? req.ip ?? 'anonymous',
});
app.post('/tenants', tenantLimiter, (req, res) => res.json({ left: req.rateLimit?.remaining }));
app.use(
  '/api',
  rateLimit({ name: 'api', limit: 100, window: '1m', redis: redisUrl, failClosed: false }),
);

// README "Recommended ioredis settings": your own client, with a listener.
const logger = { warn: (_details: object, _message: string) => undefined };
const redis = new Redis(redisUrl, {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  autoResendUnfulfilledCommands: false,
  connectTimeout: 1000,
  enableAutoPipelining: true,
  retryStrategy: times => Math.min(50 * 2 ** Math.min(times, 6), 2000),
});
redis.on('error', error => logger.warn({ err: error }, 'redis'));
app.use(rateLimit({ name: 'api', limit: 100, window: '1m', redis }));

// README "TypeScript": a limiter declared on its own, every callback typed.
const limiter = rateLimit({
  limit: 20,
  window: '1h',
  redis,
  key: req => req.header('x-api-key') ?? req.ip ?? 'anonymous',
  handler: (req, res, next, result) => res.status(429).json({ retryInMs: result.retryAfterMs }),
});
app.get('/me', limiter, (req, res) => res.json({ remaining: req.rateLimit?.remaining }));

// The other callbacks, and a route with parameters.
const botLimiter = rateLimit({
  name: 'bot-actions',
  limit: 20,
  window: '1h',
  redis,
  skip: req => req.ip === '127.0.0.1',
  cost: req => (req.query.bulk === '1' ? 3 : 1),
  handler: (req, res, _next, result) => {
    res.status(429).json({ error: 'slow down', retryInMs: result.retryAfterMs, path: req.path });
  },
});
app.post('/bots/:id/actions', botLimiter, (req, res) => {
  const info: RateLimitResult | undefined = req.rateLimit;
  res.json({ bot: req.params.id, remaining: info?.remaining, source: req.rateLimit?.source });
});

// The framework-free core.
const core = new RateLimiter({ name: 'bot-commands', limit: 20, window: '1h', redis });
void core.consume('user-1').then(result => result.allowed satisfies boolean);

try {
  rateLimit({ limit: 0, window: '1m' });
} catch (error) {
  if (isRateLimitConfigError(error)) console.error(error.code, error.option);
}

app.get('/typed', (req, res) => {
  // @ts-expect-error req.rateLimit is a RateLimitResult, not any
  res.send(req.rateLimit?.noSuchField);
});
rateLimit({
  limit: 1,
  window: '1s',
  // @ts-expect-error key returns a string
  key: req => req.ip?.length,
});
rateLimit({
  limit: 1,
  window: '1s',
  // @ts-expect-error req is Express's Request, which has no such method
  key: req => req.noSuchMethod(),
});

// README "Per-request limits" and "Count only failed logins".
const plans: Record<string, number> = { free: 3, pro: 100 };
const perPlan = rateLimit({
  name: 'tenant-create-by-plan',
  limit: async req => plans[req.header('x-plan') ?? 'free'] ?? 3,
  window: '1d',
  redis,
});
const logins = rateLimit({
  name: 'credential-updates',
  limit: 5,
  window: '1h',
  redis,
  skipSuccessfulRequests: true,
  requestWasSuccessful: (req, res) => res.statusCode < 400 && req.method === 'PUT',
});
app.put('/users/:id/credentials', logins, perPlan, (_req, res) => res.sendStatus(204));
void core.consume('user-1', 1, { limit: 5 }).then(() => core.refund('user-1'));
rateLimit({
  name: 'x',
  // @ts-expect-error limit() returns a number
  limit: () => 'five',
  window: '1s',
});

// README "Per-request limits" and "Counting only failed logins", as written there.
declare function planOf(req: express.Request): Promise<string>;
declare function createTenant(req: express.Request, res: express.Response): void;
declare function updateCredentials(req: express.Request, res: express.Response): void;
{
  const plans: Record<string, number> = { free: 3, pro: 100 };
  app.post(
    '/tenants',
    rateLimit({
      name: 'tenant-create-by-plan', // required with a function limit
      limit: async req => plans[await planOf(req)] ?? 3,
      window: '1d',
      redis,
    }),
    createTenant,
  );
  app.put(
    '/users/:id/credentials',
    rateLimit({
      name: 'credential-updates',
      limit: 5,
      window: '1h',
      redis,
      key: req => String(req.params.id),
      skipSuccessfulRequests: true, // 2xx/3xx are given back: only failures count
    }),
    updateCredentials,
  );
}

// README "Several quotas on one route": policies, each limit a number or a
// function of Express's Request; result.policies typed.
{
  const burstAndDaily = rateLimit({
    name: 'api-burst-daily',
    policies: [
      { name: 'burst', limit: 10, window: '1s' },
      {
        name: 'daily',
        limit: req => (req.header('x-plan') === 'pro' ? 10_000 : 1000),
        window: '1d',
      },
    ],
    redis,
  });
  app.get('/reports', burstAndDaily, (req, res) => {
    const each = req.rateLimit?.policies ?? [];
    res.json(each.map(p => ({ name: p.name, left: p.remaining, ok: p.allowed })));
  });
  const quotas = new RateLimiter({
    name: 'bot-quotas',
    policies: [
      { name: 'minute', limit: 20, window: '1m' },
      { name: 'day', limit: 500, window: '1d', fallbackLimit: 100 },
    ],
  });
  const minute: PolicyOptions = { name: 'minute', limit: 20, window: '1m' };
  void quotas.consume('bot-2').then(r => r.policies?.map((p: PolicyResult) => p.name));
  void minute;
  void quotas.consume('bot-1').then(result => result.policies?.[0]?.retryAfterMs);
  rateLimit({
    name: 'y',
    // @ts-expect-error a policy's window is ms or a duration string
    policies: [{ name: 'a', limit: 1, window: true }],
  });
}
