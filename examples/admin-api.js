// @ts-check
// The reference scenario: an admin API with one limiter per route.
//
//   POST /login                  sign-in              5 failed per 15 min  fail-closed
//                                  (per account + IP: successful sign-ins are given back)
//   POST /tenants                tenant creation      by plan, per day     fail-closed
//                                  (free 3, pro 20, enterprise 100)
//   POST /bots/:id/actions       bot operations      20 per hour           fail-closed
//   PUT  /users/:id/credentials  credential updates   5 per hour           fail-closed
//   GET  /api/*                  general API        100 per minute         fail-open
//   GET  /search                 search              10 per second, and    fail-closed
//                                                  1000 per day (two policies)
//
// Callers are keyed by their X-Api-Key header, or by IP when they send none;
// sign-in is keyed by account and IP. The plan comes from the API key (a
// small in-memory map below stands in for your billing data). With `redis`
// set, counters live in Redis; when Redis fails, the fail-closed routes keep
// limiting from memory and the general API lets requests through.
//
//   const { app } = createAdminApi({ redis: process.env.REDIS_URL });
//   app.listen(3000);
'use strict';

const { createHash } = require('node:crypto');
const express = require('express');
const { MemoryStore, ipKey, rateLimit } = require('resilient-rate-limit');

/**
 * @typedef {import('resilient-rate-limit').Logger} Logger
 * @typedef {import('resilient-rate-limit').BreakerOptions} BreakerOptions
 * @typedef {import('resilient-rate-limit').RateLimitMiddleware} Limiter
 *
 * @typedef {object} AdminApiOptions
 * @property {string} [redis] A redis:// URL; absent: memory-only.
 * @property {BreakerOptions} [breaker] Circuit breaker settings (default 5 failures, 30 s).
 * @property {number} [timeout] Ms budget for one Redis decision (default 100).
 * @property {Logger} [logger] Where the limiters log (default console).
 *
 * @typedef {object} AdminApi
 * @property {import('express').Express} app
 * @property {{ login: Limiter, tenantCreation: Limiter, botActions: Limiter, credentialUpdates: Limiter, generalApi: Limiter, search: Limiter }} limiters
 * @property {MemoryStore} memory The fallback store the limiters share.
 * @property {() => Promise<void>} close Closes the limiters and the memory store.
 */

/**
 * Who is limited: the API key when there is one (hashed, so raw keys never
 * end up in Redis key names), else the client IP as Express sees it.
 * @param {import('express').Request} req
 * @returns {string}
 */
function callerKey(req) {
  const apiKey = req.get('x-api-key');
  if (apiKey) return 'key:' + createHash('sha256').update(apiKey).digest('base64url').slice(0, 22);
  return 'ip:' + (req.ip ?? req.socket.remoteAddress ?? 'unknown');
}

/**
 * An account name as sign-in compares it: trimmed and lower-cased, so
 * 'Alice' and 'alice' are one account with one count.
 * @param {unknown} account
 * @returns {string}
 */
function accountName(account) {
  return typeof account === 'string' ? account.trim().toLowerCase() : '';
}

/**
 * Who is limited at sign-in: the account and the client's address together.
 * By account alone, anyone could lock a victim out by failing on purpose; by
 * address alone, one address could guess at every account.
 * @param {unknown} account
 * @param {string | undefined} ip
 * @returns {string}
 */
function loginKey(account, ip) {
  return `login:${accountName(account)}|${ipKey(ip ?? 'unknown')}`;
}

// DEMO ONLY: a user store with plain-text passwords. A real app looks the
// account up and checks a password hash (argon2, scrypt, bcrypt).
const DEMO_PASSWORDS = new Map([['alice', 'wonderland']]);

// DEMO ONLY: which plan an API key is on, standing in for your billing data.
// Keys not listed (and callers without a key) are on the free plan.
/** @type {Map<string, Plan>} */
const DEMO_PLANS = new Map([
  ['demo-pro-key', 'pro'],
  ['demo-enterprise-key', 'enterprise'],
]);

/** @typedef {'free' | 'pro' | 'enterprise'} Plan */
/** Tenant creations per day, by plan. */
const TENANTS_PER_DAY = Object.freeze({ free: 3, pro: 20, enterprise: 100 });

/**
 * The caller's plan, from its API key. Never from a header the caller could
 * set to anything: an `X-Plan: enterprise` would buy itself a bigger limit.
 * @param {import('express').Request} req
 * @returns {Plan}
 */
function planOf(req) {
  const apiKey = req.get('x-api-key');
  return (apiKey === undefined ? undefined : DEMO_PLANS.get(apiKey)) ?? 'free';
}

/**
 * @param {AdminApiOptions} [options]
 * @returns {AdminApi}
 */
function createAdminApi({ redis, breaker, timeout, logger } = {}) {
  // One bounded fallback store per app, rather than the process-wide default,
  // so two apps in one process (the demo builds two) never share counters.
  const memory = new MemoryStore({ maxKeys: 10_000 });
  // Options left undefined take the library's defaults.
  const shared = { key: callerKey, memory, redis, breaker, timeout, logger };

  const limiters = {
    // Only failed sign-ins count: each attempt is counted when it arrives (so
    // a burst of parallel guesses cannot slip past the limit) and a 2xx is
    // given back when its response finishes. An aborted attempt stays counted.
    login: rateLimit({
      ...shared,
      name: 'login',
      key: req => loginKey(req.body?.account, req.ip),
      limit: 5,
      window: '15m',
      skipSuccessfulRequests: true,
      failClosed: true,
    }),
    // One counter per caller, judged against the caller's plan on each call:
    // a caller who upgrades keeps what it used today and gets the new limit.
    // A function limit needs the `name`, which names that shared counter.
    tenantCreation: rateLimit({
      ...shared,
      name: 'tenant-creation',
      limit: req => TENANTS_PER_DAY[planOf(req)],
      window: '1d',
      failClosed: true,
    }),
    botActions: rateLimit({
      ...shared,
      name: 'bot-actions',
      limit: 20,
      window: '1h',
      failClosed: true,
    }),
    credentialUpdates: rateLimit({
      ...shared,
      name: 'credential-updates',
      limit: 5,
      window: '1h',
      failClosed: true,
    }),
    generalApi: rateLimit({
      ...shared,
      name: 'general-api',
      limit: 100,
      window: '1m',
      failClosed: false,
    }),
    // Two quotas on one route: a request passes only if both admit it, and a
    // denied request counts in neither (a caller held back by the burst limit
    // loses nothing of its day). Headers announce both policies; Retry-After
    // and X-RateLimit-* describe the one that binds.
    search: rateLimit({
      ...shared,
      name: 'search',
      policies: [
        { name: 'burst', limit: 10, window: '1s' },
        { name: 'daily', limit: 1000, window: '1d' },
      ],
      failClosed: true,
    }),
  };

  const app = express();
  app.disable('x-powered-by');

  // The body parser runs first: the login key needs the account.
  app.post('/login', express.json({ limit: '1kb' }), limiters.login, (req, res) => {
    const { account, password } = req.body ?? {};
    const expected = DEMO_PASSWORDS.get(accountName(account));
    if (expected !== undefined && password === expected) {
      res.json({ account: accountName(account), signedIn: true });
    } else {
      res.status(401).json({ error: 'wrong account or password' });
    }
  });

  let tenantSeq = 0;
  app.post('/tenants', limiters.tenantCreation, (req, res) => {
    tenantSeq += 1;
    res.status(201).json({ id: `tenant-${tenantSeq}`, created: true, plan: planOf(req) });
  });

  app.post('/bots/:id/actions', limiters.botActions, (req, res) => {
    res.status(202).json({ bot: req.params.id, action: 'queued' });
  });

  app.put('/users/:id/credentials', limiters.credentialUpdates, (req, res) => {
    res.json({ user: req.params.id, credentialsUpdated: true });
  });

  // Express 5 names its wildcards: '/api/*path' is Express 4's '/api/*'.
  app.get('/api/*path', limiters.generalApi, (req, res) => {
    const { path } = req.params;
    res.json({ path: '/' + (Array.isArray(path) ? path.join('/') : path), ok: true });
  });

  // req.rateLimit.policies: what each policy has left after this request.
  app.get('/search', limiters.search, (req, res) => {
    const quota = (req.rateLimit?.policies ?? []).map(({ name, limit, remaining }) => ({
      name,
      limit,
      remaining,
    }));
    res.json({ q: String(req.query.q ?? ''), results: [], quota });
  });

  app.use((_req, res) => {
    res.status(404).json({ error: 'not found' });
  });

  // JSON instead of Express's HTML page and stack trace. The limiters never
  // send a Redis fault here; this catches errors from the routes themselves,
  // and the body parser's 4xx (malformed JSON, a body over 1 kB).
  app.use(
    /**
     * @param {unknown} err
     * @param {import('express').Request} _req
     * @param {import('express').Response} res
     * @param {import('express').NextFunction} _next
     */
    (err, _req, res, _next) => {
      const status = /** @type {{ status?: unknown }} */ (err)?.status;
      if (typeof status === 'number' && status >= 400 && status < 500) {
        res.status(status).json({ error: err instanceof Error ? err.message : 'bad request' });
        return;
      }
      (logger ?? console).error(`admin-api: ${err instanceof Error ? err.message : String(err)}`);
      res.status(500).json({ error: 'internal error' });
    },
  );

  return {
    app,
    limiters,
    memory,
    async close() {
      await Promise.all(Object.values(limiters).map(limiter => limiter.limiter.close()));
      memory.close();
    },
  };
}

module.exports = { createAdminApi, callerKey, loginKey, planOf, TENANTS_PER_DAY };
