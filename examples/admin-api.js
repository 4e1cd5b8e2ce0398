// @ts-check
// The reference scenario: an admin API with one limiter per route.
//
//   POST /tenants                tenant creation       3 per day     fail-closed
//   POST /bots/:id/actions       bot operations       20 per hour    fail-closed
//   PUT  /users/:id/credentials  credential updates    5 per hour    fail-closed
//   GET  /api/*                  general API         100 per minute  fail-open
//
// Callers are keyed by their X-Api-Key header, or by IP when they send none.
// With `redis` set, counters live in Redis; when Redis fails, the fail-closed
// routes keep limiting from memory and the general API lets requests through.
//
//   const { app } = createAdminApi({ redis: process.env.REDIS_URL });
//   app.listen(3000);
'use strict';

const { createHash } = require('node:crypto');
const express = require('express');
const { MemoryStore, rateLimit } = require('resilient-rate-limit');

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
 * @property {{ tenantCreation: Limiter, botActions: Limiter, credentialUpdates: Limiter, generalApi: Limiter }} limiters
 * @property {MemoryStore} memory The fallback store the four limiters share.
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
    tenantCreation: rateLimit({
      ...shared,
      name: 'tenant-creation',
      limit: 3,
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
  };

  const app = express();
  app.disable('x-powered-by');

  let tenantSeq = 0;
  app.post('/tenants', limiters.tenantCreation, (_req, res) => {
    tenantSeq += 1;
    res.status(201).json({ id: `tenant-${tenantSeq}`, created: true });
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

  app.use((_req, res) => {
    res.status(404).json({ error: 'not found' });
  });

  // JSON instead of Express's HTML page and stack trace. The limiters never
  // send a Redis fault here; this catches errors from the routes themselves.
  app.use(
    /**
     * @param {unknown} err
     * @param {import('express').Request} _req
     * @param {import('express').Response} res
     * @param {import('express').NextFunction} _next
     */
    (err, _req, res, _next) => {
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

module.exports = { createAdminApi, callerKey };
