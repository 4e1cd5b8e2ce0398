// One app instance of the soak: an Express 5 app with the limiters of
// soak/routes.mjs on one Redis URL, keyed by the X-Client header.
//
//   node soak/app.mjs <port> <redisPort>      (env SOAK_SABOTAGE=fallback|limit)
//
// Writes JSON lines to stdout: {"type":"ready"} once listening and deciding in
// Redis, {"type":"stats"} every second (heap, memory store sizes, breaker),
// {"type":"event"} for breaker transitions and reconciliations, and
// {"type":"log"} for what the package logs.
import process from 'node:process';
import express from 'express';
// The built package through its own `exports` map: what ships.
import { MemoryStore, rateLimit } from 'resilient-rate-limit';
import { ROUTES, limiterOptions } from './routes.mjs';

const [portText, redisPortText] = process.argv.slice(2);
if (!/^\d+$/.test(portText ?? '') || !/^\d+$/.test(redisPortText ?? '')) {
  console.error('usage: node soak/app.mjs <port> <redisPort>');
  process.exit(2);
}
const sabotage = process.env.SOAK_SABOTAGE ?? '';
const redisUrl = `redis://127.0.0.1:${redisPortText}`;

/** @param {Record<string, unknown>} line */
const emit = line => process.stdout.write(JSON.stringify({ t: Date.now(), ...line }) + '\n');
const logger = {
  warn: (/** @type {string} */ msg) => emit({ type: 'log', level: 'warn', msg }),
  info: (/** @type {string} */ msg) => emit({ type: 'log', level: 'info', msg }),
  error: (/** @type {string} */ msg) => emit({ type: 'log', level: 'error', msg }),
};

const app = express();
/** @type {Array<{ id: string, store: MemoryStore, middleware: ReturnType<typeof rateLimit> }>} */
const limiters = [];
let storeErrors = 0;
let fallbacks = 0;
for (const route of ROUTES) {
  const store = new MemoryStore({ maxKeys: route.maxKeys });
  const middleware = rateLimit({
    ...limiterOptions(route, sabotage),
    redis: redisUrl,
    memory: store,
    key: req => String(req.headers['x-client'] ?? ''),
    logger,
  });
  const limiter = middleware.limiter;
  limiter.on('storeError', () => storeErrors++);
  limiter.on('fallback', () => fallbacks++);
  limiter.on('reconciled', info =>
    emit({ type: 'event', event: 'reconciled', rule: route.id, ...info }),
  );
  limiters.push({ id: route.id, store, middleware });
  const handler = (/** @type {express.Request} */ _req, /** @type {express.Response} */ res) => {
    res.json({ ok: true });
  };
  if (route.method === 'GET') app.get(route.path, middleware, handler);
  else app.post(route.path, middleware, handler);
}

// Every limiter on the shared URL client hears the one breaker: listen on one.
const first = limiters[0].middleware.limiter;
for (const event of /** @type {const} */ (['breakerOpen', 'breakerHalfOpen', 'breakerClose'])) {
  first.on(event, () => emit({ type: 'event', event }));
}

let ticks = 0;
// Every 5th sample follows a full collection (node --expose-gc), so heapUsed
// is the live set there and the driver can compare start and end.
function stats(collect = false) {
  const afterGc = collect && typeof globalThis.gc === 'function';
  if (afterGc) globalThis.gc();
  const memory = process.memoryUsage();
  return {
    type: 'stats',
    afterGc,
    heapUsed: memory.heapUsed,
    rss: memory.rss,
    breaker: first.breakerState,
    storeErrors,
    fallbacks,
    stores: Object.fromEntries(limiters.map(l => [l.id, l.store.size])),
    maxKeys: Object.fromEntries(limiters.map(l => [l.id, l.store.maxKeys])),
    evictions: Object.fromEntries(limiters.map(l => [l.id, l.store.evictions])),
    pending: Object.fromEntries(
      limiters.map(l => [l.id, l.middleware.limiter.pendingReconciliation]),
    ),
  };
}
app.get('/stats', (_req, res) => {
  res.json(stats());
});

const sleep = (/** @type {number} */ ms) => new Promise(resolve => setTimeout(resolve, ms));

// The URL client connects in the background; wait until Redis decides rather
// than start the soak with an outage of our own making.
async function warmUp() {
  for (let i = 0; i < 40; i++) {
    const result = await first.consume(`warmup-${process.pid}`);
    if (result.source === 'redis') return;
    await sleep(250);
  }
  throw new Error('Redis did not decide within 10 s');
}

await warmUp();
const server = app.listen(Number(portText), '127.0.0.1', () => {
  emit({ type: 'ready', pid: process.pid, port: Number(portText), sabotage });
});
server.keepAliveTimeout = 60_000;
const statsTimer = setInterval(() => emit(stats(++ticks % 5 === 0)), 1000);

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  clearInterval(statsTimer);
  emit(stats());
  setTimeout(() => process.exit(0), 1000).unref();
  server.closeAllConnections();
  server.close();
  await Promise.all(limiters.map(l => l.middleware.limiter.close()));
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
