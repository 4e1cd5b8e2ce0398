// @ts-check
// `npm run demo`: the admin API from ./admin-api.js, driven by a script.
//
// Act 1 (when redis-server is on the PATH) starts a private Redis, sends 20
// requests a second while Redis is SIGKILLed and restarted, and prints one row
// per second: which store decided, which statuses went out, how slow the
// slowest request was. It comes first because it is the point of the
// package: no 5xx, and a quota used up in Redis stays used up. Act 2
// (memory-only) pushes each route past its limit and tabulates what came
// back. Act 3 (memory-only) shows three kinds of rule: sign-in counting only
// failed attempts, tenant creation limited by plan, and a search route with a
// burst and a daily policy, with the headers that announce them. Every line
// fits 80 columns. The process exits on its own when done, with code 1 if
// anything came out other than the demo says.
'use strict';

const { Buffer } = require('node:buffer');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { performance } = require('node:perf_hooks');
const { setTimeout: sleep } = require('node:timers/promises');
const { createAdminApi, loginKey, TENANTS_PER_DAY } = require('./admin-api.js');

/**
 * @typedef {'redis' | 'memory' | 'bypass'} Source
 * @typedef {{ status: number, source: string, ms: number }} Reply   status 0: no HTTP response
 * @typedef {{ id: string, name: string, method: string, route: string, limit: string,
 *             failClosed: boolean, path: (n: number) => string }} Route
 */

/** @type {Route[]} */
const ROUTES = [
  {
    id: 'tenants',
    name: 'tenants',
    method: 'POST',
    route: 'POST /tenants',
    limit: '3/day',
    failClosed: true,
    path: () => '/tenants',
  },
  {
    id: 'bots',
    name: 'bots',
    method: 'POST',
    route: 'POST /bots/:id/actions',
    limit: '20/hour',
    failClosed: true,
    path: n => `/bots/bot-${n % 5}/actions`,
  },
  {
    id: 'credentials',
    name: 'credentials',
    method: 'PUT',
    route: 'PUT /users/:id/credentials',
    limit: '5/hour',
    failClosed: true,
    path: n => `/users/user-${n % 7}/credentials`,
  },
  {
    id: 'api',
    name: 'api',
    method: 'GET',
    route: 'GET /api/*',
    limit: '100/min',
    failClosed: false,
    path: n => `/api/projects/${n % 50}`,
  },
];
const ROUTE = Object.fromEntries(ROUTES.map(route => [route.id, route]));

const TIMEOUT_MS = 100;
const BREAKER = { threshold: 3, halfOpenAfter: 2000 };
const SLOT_MS = 50; // 20 requests a second
// Which route each 50 ms slot of a second goes to: 1 tenant creation, 4 bot
// actions, 3 credential updates and 12 general API calls per second.
const PATTERN = 'aabacabaaatabaacabac'
  .split('')
  .map(c => ({ t: 'tenants', b: 'bots', c: 'credentials', a: 'api' })[c] ?? 'api');
const KILL_AT_S = 3;
const RESTART_AT_S = 7;
const GIVE_UP_AT_S = 20;

// ---------------------------------------------------------------------------
// HTTP client (node:http with keep-alive; one request = one Reply)

/**
 * @param {http.Agent} agent
 * @param {number} port
 * @param {string} method
 * @param {string} urlPath
 * @param {string} apiKey
 * @returns {Promise<Reply>}
 */
function send(agent, port, method, urlPath, apiKey) {
  const started = performance.now();
  return new Promise(resolve => {
    const finish = (/** @type {number} */ status, /** @type {string} */ source) =>
      resolve({ status, source, ms: performance.now() - started });
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: urlPath,
        agent,
        timeout: 5000,
        headers: { 'x-api-key': apiKey, 'content-length': 0 },
      },
      res => {
        const source = String(res.headers['x-ratelimit-source'] ?? '-');
        res.resume();
        res.on('end', () => finish(res.statusCode ?? 0, source));
        res.on('error', () => finish(0, source));
      },
    );
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', () => finish(0, '-'));
    req.end();
  });
}

/**
 * @param {import('express').Express} app
 * @returns {Promise<{ server: http.Server, port: number }>}
 */
function listen(app) {
  return new Promise((resolve, reject) => {
    const server = http.createServer(app);
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve({ server, port: typeof address === 'object' && address ? address.port : 0 });
    });
  });
}

/** @param {http.Server} server */
function closeServer(server) {
  return new Promise(resolve => {
    server.close(() => resolve(undefined));
    server.closeAllConnections();
  });
}

// ---------------------------------------------------------------------------
// Small formatting helpers

/** @param {unknown} value @param {number} width */
const left = (value, width) => String(value).padEnd(width);
/** @param {unknown} value @param {number} width */
const right = (value, width) => String(value).padStart(width);
/** @param {number} status */
const statusClass = status =>
  status >= 200 && status < 300 ? '2xx' : status === 429 ? '429' : '5xx';
/** @param {string} message */
const stripPrefix = message => message.replace(/^resilient-rate-limit: /, '');
const WIDTH = 80;

/**
 * Prints `text` wrapped to 80 columns, every line after the first indented
 * like the first.
 * @param {string} indent
 * @param {string} text
 */
function printWrapped(indent, text) {
  const lines = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && indent.length + line.length + 1 + word.length > WIDTH) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  if (line !== '') lines.push(line);
  for (const [i, text] of lines.entries()) {
    console.log((i === 0 ? indent : ' '.repeat(indent.length)) + text);
  }
}

/**
 * A logger for the limiters that prints each line indented and tagged, so
 * library messages stand apart from the demo's own output.
 * @returns {import('resilient-rate-limit').Logger}
 */
function printingLogger() {
  /** @param {string} level */
  const line = level => (/** @type {string} */ message) =>
    printWrapped(`    [library ${level}] `, stripPrefix(message));
  return { warn: line('warn'), error: line('error'), info: line('info') };
}

// ---------------------------------------------------------------------------
// Act 2: memory-only

async function memoryOnlyAct() {
  console.log('Act 2: memory-only (no Redis). One API key drives each route past its limit.');
  console.log('');
  const api = createAdminApi({ logger: printingLogger() });
  const { server, port } = await listen(api.app);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  /** @type {Record<string, number>} */
  const plan = { tenants: 5, bots: 25, credentials: 7, api: 120 };
  const rows = [];
  try {
    for (const route of ROUTES) {
      const counts = { '2xx': 0, 429: 0, '5xx': 0 };
      /** @type {Set<string>} */
      const sources = new Set();
      const requests = plan[route.id] ?? 0;
      for (let n = 0; n < requests; n++) {
        const reply = await send(agent, port, route.method, route.path(n), 'act1-admin-key');
        counts[statusClass(reply.status)] += 1;
        sources.add(reply.source);
      }
      rows.push({ route, requests, counts, sources: [...sources].join(', ') });
    }
  } finally {
    agent.destroy();
    await closeServer(server);
    await api.close();
  }

  const header = [
    left('route', 27),
    left('limit', 7),
    left('outage', 6),
    right('sent', 4),
    right('2xx', 4),
    right('429', 4),
    right('5xx', 4),
    ' source',
  ].join(' ');
  console.log('  ' + header);
  console.log('  ' + '-'.repeat(header.length));
  for (const { route, requests, counts, sources } of rows) {
    console.log(
      '  ' +
        [
          left(route.route, 27),
          left(route.limit, 7),
          left(route.failClosed ? 'memory' : 'bypass', 6),
          right(requests, 4),
          right(counts['2xx'], 4),
          right(counts[429], 4),
          right(counts['5xx'], 4),
          ' ' + sources,
        ].join(' '),
    );
  }
  console.log('  outage: what the route does while Redis is out (memory store or let through).');
  console.log('');
  return rows.reduce((sum, row) => sum + row.counts['5xx'], 0);
}

// ---------------------------------------------------------------------------
// Act 3: rules (memory-only)

/**
 * One request that keeps what Act 3 prints: status and headers.
 * @param {http.Agent} agent
 * @param {number} port
 * @param {string} method
 * @param {string} urlPath
 * @param {{ apiKey?: string, json?: unknown }} [options]
 * @returns {Promise<{ status: number, headers: http.IncomingHttpHeaders }>}
 */
function call(agent, port, method, urlPath, { apiKey, json } = {}) {
  const body = json === undefined ? '' : JSON.stringify(json);
  /** @type {http.OutgoingHttpHeaders} */
  const headers = { 'content-length': Buffer.byteLength(body) };
  if (apiKey !== undefined) headers['x-api-key'] = apiKey;
  if (json !== undefined) headers['content-type'] = 'application/json';
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: urlPath, agent, timeout: 5000, headers },
      res => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

/** @param {string | string[] | undefined} value */
const header = value => (Array.isArray(value) ? value.join(', ') : (value ?? '-'));

/**
 * @param {ReturnType<typeof createAdminApi>} api
 * @param {http.Agent} agent
 * @param {number} port
 * @param {string[]} unexpected
 */
async function loginScene(api, agent, port, unexpected) {
  const limiter = api.limiters.login.limiter;
  const key = loginKey('alice', '127.0.0.1');
  const limit = 5;
  printWrapped(
    '  ',
    `POST /login: ${limit} failed sign-ins per 15 min per account + IP. Every attempt ` +
      'is counted when it arrives; a successful one is given back when its ' +
      'response finishes.',
  );
  console.log('');
  console.log('    attempt  password    status  failed sign-ins counted');
  /** @type {[string, number, string][]} */
  const script = [
    ['wrong', 401, ''],
    ['wrong', 401, ''],
    ['right', 200, '(given back)'],
    ['wrong', 401, ''],
    ['wrong', 401, ''],
    ['wrong', 401, ''],
    ['right', 429, '(locked, right password or not)'],
  ];
  let counted = 0;
  for (const [i, [password, expected, note]] of script.entries()) {
    const { status } = await call(agent, port, 'POST', '/login', {
      json: { account: 'alice', password: password === 'right' ? 'wonderland' : 'guess' },
    });
    if (status === 401) counted += 1;
    // The refund runs when the response finishes, which is about when the
    // client reads it: give it a moment before reading the counter.
    let state = await limiter.get(key);
    for (let n = 0; n < 20 && limit - (state?.remaining ?? limit) !== counted; n++) {
      await sleep(5);
      state = await limiter.get(key);
    }
    const shown = limit - (state?.remaining ?? limit);
    console.log(
      `    ${right(i + 1, 7)}  ${left(password, 10)}  ${right(status, 6)}  ` +
        `${shown} of ${limit} ${note}`.trimEnd(),
    );
    if (status !== expected) unexpected.push(`login attempt ${i + 1}: ${status}, not ${expected}`);
    if (shown !== counted)
      unexpected.push(`login attempt ${i + 1}: ${shown} counted, not ${counted}`);
  }
  console.log('');
}

/**
 * @param {http.Agent} agent
 * @param {number} port
 * @param {string[]} unexpected
 */
async function plansScene(agent, port, unexpected) {
  printWrapped(
    '  ',
    'POST /tenants: one counter per caller, judged against the limit of the ' +
      `caller's plan (free ${TENANTS_PER_DAY.free}, pro ${TENANTS_PER_DAY.pro}, ` +
      `enterprise ${TENANTS_PER_DAY.enterprise} per day), which comes from its API key.`,
  );
  console.log('');
  console.log(
    `    ${left('API key', 14)} ${left('plan', 5)} ${left('4 attempts', 16)} RateLimit-Policy`,
  );
  for (const [apiKey, plan] of [
    ['demo-free-key', 'free'],
    ['demo-pro-key', 'pro'],
  ]) {
    const statuses = [];
    let policy = '-';
    for (let n = 0; n < 4; n++) {
      const reply = await call(agent, port, 'POST', '/tenants', { apiKey });
      statuses.push(reply.status);
      if (n === 0) policy = header(reply.headers['ratelimit-policy']);
    }
    console.log(
      `    ${left(apiKey, 14)} ${left(plan, 5)} ${left(statuses.join(' '), 16)} ${policy}`,
    );
    const limit = plan === 'pro' ? TENANTS_PER_DAY.pro : TENANTS_PER_DAY.free;
    const admitted = statuses.filter(status => status === 201).length;
    if (admitted !== Math.min(4, limit)) {
      unexpected.push(`${plan} plan: ${admitted} of 4 tenants created, not ${Math.min(4, limit)}`);
    }
    if (!policy.includes(`q=${limit};`)) unexpected.push(`${plan} plan: policy ${policy}`);
  }
  console.log('');
}

/**
 * @param {http.Agent} agent
 * @param {number} port
 * @param {string[]} unexpected
 */
async function policiesScene(agent, port, unexpected) {
  printWrapped(
    '  ',
    'GET /search: two policies, burst (10 per second) and daily (1000 per day). ' +
      'A request passes only if both admit it; a denied one counts in neither. ' +
      '11 requests in a row, then one more after Retry-After:',
  );
  console.log('');
  console.log(`    ${right('#', 2)}  status  ${left('RateLimit', 40)}  Retry-After`);
  /** @param {number} n @param {{ status: number, headers: http.IncomingHttpHeaders }} reply */
  const row = (n, reply) =>
    console.log(
      (
        `    ${right(n, 2)}  ${right(reply.status, 6)}  ${left(header(reply.headers.ratelimit), 40)}` +
        `  ${reply.headers['retry-after'] ?? ''}`
      ).trimEnd(),
    );
  const apiKey = 'demo-search-client';
  const started = performance.now();
  const replies = [];
  for (let n = 1; n <= 11; n++)
    replies.push(await call(agent, port, 'GET', '/search?q=redis', { apiKey }));
  const burstMs = performance.now() - started;
  for (const [i, reply] of replies.entries()) {
    if (i === 1) console.log('    ..');
    if (i === 0 || i >= 9) row(i + 1, reply);
  }
  const denied = replies[10];
  const retryAfter = Number(denied?.headers['retry-after'] ?? 1);
  await sleep(retryAfter * 1000);
  const later = await call(agent, port, 'GET', '/search?q=redis', { apiKey });
  row(12, later);
  console.log('');
  console.log(`    RateLimit-Policy: ${header(later.headers['ratelimit-policy'])}`);
  const dailyBefore = dailyLeft(replies[9]);
  const dailyAfter = dailyLeft(later);
  if (denied) {
    printWrapped(
      '    ',
      `On the 429, X-RateLimit-Limit ${header(denied.headers['x-ratelimit-limit'])}, ` +
        `-Remaining ${header(denied.headers['x-ratelimit-remaining'])} and Retry-After ` +
        `${header(denied.headers['retry-after'])} come from the binding policy (burst). ` +
        `The day had ${dailyBefore} left after #10 and ${dailyAfter} after #12: ` +
        (dailyBefore - dailyAfter === 1
          ? 'the denied #11 took nothing from it.'
          : 'the denied #11 was counted!'),
    );
  }
  console.log('');
  const admitted = replies.filter(reply => reply.status === 200).length;
  if (burstMs > 900) {
    unexpected.push(`the 11 search requests took ${burstMs.toFixed(0)} ms: over one burst window`);
  } else if (admitted !== 10 || denied?.status !== 429) {
    unexpected.push(`search: ${admitted} of 11 admitted, the 11th got ${denied?.status}`);
  }
  if (later.status !== 200 || dailyBefore - dailyAfter !== 1) {
    unexpected.push(`search #12: ${later.status} ${header(later.headers.ratelimit)}`);
  }
}

/**
 * The daily policy's remaining, from the RateLimit header; NaN if absent.
 * @param {{ headers: http.IncomingHttpHeaders } | undefined} reply
 */
function dailyLeft(reply) {
  const match = /"daily";r=(\d+)/.exec(header(reply?.headers.ratelimit));
  return match ? Number(match[1]) : NaN;
}

async function rulesAct() {
  printWrapped(
    '',
    'Act 3: rules (memory-only). Sign-in that counts only failures, a limit by ' +
      'plan, and two policies on one route.',
  );
  console.log('');
  const api = createAdminApi({ logger: printingLogger() });
  const { server, port } = await listen(api.app);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  /** @type {string[]} */
  const unexpected = [];
  try {
    await loginScene(api, agent, port, unexpected);
    await plansScene(agent, port, unexpected);
    await policiesScene(agent, port, unexpected);
  } finally {
    agent.destroy();
    await closeServer(server);
    await api.close();
  }
  for (const line of unexpected) printWrapped('  UNEXPECTED: ', line);
  return unexpected.length;
}

// ---------------------------------------------------------------------------
// A private redis-server

/** @returns {string | undefined} redis-server's path, if it is on the PATH */
function findRedisServer() {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, 'redis-server');
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      if (fs.statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** @returns {Promise<number>} */
function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/**
 * Resolves once something on `port` answers PING with +PONG.
 * @param {number} port
 * @returns {Promise<boolean>}
 */
function pingOnce(port) {
  return new Promise(resolve => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    const done = (/** @type {boolean} */ ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(200, () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', chunk => {
      reply += chunk.toString('latin1');
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
    socket.on('error', () => done(false));
  });
}

class RedisChild {
  /**
   * @param {string} bin
   * @param {number} port
   * @param {string} dir
   */
  constructor(bin, port, dir) {
    this.bin = bin;
    this.port = port;
    this.dir = dir;
    /** @type {import('node:child_process').ChildProcess | undefined} */
    this.child = undefined;
    this.output = '';
  }

  async start() {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1'];
    args.push('--save', '', '--appendonly', 'no', '--dir', this.dir);
    const child = spawn(this.bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.output = '';
    const keep = (/** @type {Buffer} */ chunk) => {
      this.output = (this.output + chunk.toString()).slice(-2000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    let exited = false;
    child.once('exit', () => (exited = true));
    child.once('error', () => (exited = true));
    const deadline = performance.now() + 5000;
    while (performance.now() < deadline) {
      if (exited) break;
      if (await pingOnce(this.port)) return;
      await sleep(20);
    }
    this.kill('SIGKILL');
    throw new Error(`redis-server did not start on port ${this.port}:\n${this.output.trim()}`);
  }

  /** @param {NodeJS.Signals} signal */
  kill(signal) {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
  }

  /** Stops it and waits until it is gone (SIGTERM, then SIGKILL after 2 s). */
  async stop() {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise(resolve => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => this.kill('SIGKILL'), 2000);
    await gone;
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------
// Act 1: Redis killed and restarted under load

/** @returns {{ sources: Record<string, number>, '2xx': number, 429: number, '5xx': number }} */
const emptyCell = () => ({ sources: {}, '2xx': 0, 429: 0, '5xx': 0 });

const CELL = 12;

/**
 * "m1 r3  3/1": 1 request decided by memory and 3 by Redis; 3 got 2xx, 1 got
 * 429. `x` counts requests that got no HTTP response at all.
 * @param {ReturnType<typeof emptyCell>} cell
 */
function formatCell(cell) {
  const entries = Object.entries(cell.sources).filter(([, n]) => n > 0);
  const source = entries.map(([name, n]) => `${name === 'no response' ? 'x' : name[0]}${n}`);
  const counts = `${cell['2xx']}/${cell[429]}`;
  return left(source.join(' '), CELL - counts.length - 1) + ' ' + counts;
}

/** @param {string} redisBin */
async function outageAct(redisBin) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rrl-demo-'));
  const redis = new RedisChild(redisBin, port, dir);
  /** @type {http.Server | undefined} */
  let server;
  /** @type {ReturnType<typeof createAdminApi> | undefined} */
  let api;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  // Whatever happens, leave no redis-server behind.
  const killOnExit = () => redis.kill('SIGKILL');
  process.once('exit', killOnExit);

  try {
    await redis.start();

    /** @type {{ t: number, marker?: string, text?: string }[]} */
    const events = [];
    let t0 = performance.now();
    const now = () => (performance.now() - t0) / 1000;
    /** @param {string} level */
    const record = level => (/** @type {string} */ message) =>
      events.push({ t: now(), text: `${level}: ${stripPrefix(message)}` });
    const logger = { warn: record('warn'), error: record('error'), info: record('info') };

    api = createAdminApi({
      redis: `redis://127.0.0.1:${port}`,
      breaker: BREAKER,
      timeout: TIMEOUT_MS,
      logger,
    });
    const listening = await listen(api.app);
    server = listening.server;
    const appPort = listening.port;

    // The four limiters share one client and so one breaker: every limiter
    // emits its events, so listening on one of them is enough.
    const limiter = api.limiters.generalApi.limiter;
    let breakerClosedAt = -1;
    limiter.on('breakerOpen', () => events.push({ t: now(), marker: 'OPEN' }));
    limiter.on('breakerHalfOpen', () => events.push({ t: now(), marker: 'HALF' }));
    limiter.on('breakerClose', () => {
      breakerClosedAt = now();
      events.push({ t: breakerClosedAt, marker: 'CLOSE' });
    });
    // The client connects in the background; until it has, requests are
    // decided locally like in any outage. Wait for the first Redis decision.
    const warmupStart = performance.now();
    let warm = false;
    while (!warm && performance.now() - warmupStart < 5000) {
      await sleep(50);
      const reply = await send(agent, appPort, 'GET', '/api/warmup', 'demo-warmup');
      warm = reply.source === 'redis';
    }
    if (!warm) throw new Error('the limiters never reached Redis during warm-up');
    events.length = 0;

    printWrapped(
      '',
      `Act 1: a Redis outage under traffic. A private redis-server (127.0.0.1:${port}) ` +
        `is SIGKILLed at ${KILL_AT_S} s and restarted at ${RESTART_AT_S} s while 20 requests/s ` +
        'reach the admin API. Watch for: no 5xx, and tenant admins who used up their ' +
        '3 creations in Redis staying limited while memory decides.',
    );
    console.log('');
    console.log('  Legend: a cell is one route in one second, e.g. "m1 r3  3/1": 1 request');
    console.log('  decided by memory, 3 by Redis (b = bypass); 3 got 2xx, 1 got 429.');
    console.log('  Under each route: its limit and what it does while Redis is out (mem =');
    console.log('  limit from memory, byp = let through). Events: KILL/START redis-server;');
    console.log('  breaker OPEN, HALF (probe), CLOSE. The demo opens the breaker after 3');
    console.log('  failures and probes after 2 s (defaults: 5 and 30 s) to fit in seconds.');
    console.log('  Indented lines: the library log.');
    console.log('');
    const head1 = [
      left('', 3),
      left('', 10),
      ...ROUTES.map(r => left(r.name, CELL)),
      right('', 3),
      right('max', 6),
    ].join(' ');
    const head2 = [
      right('sec', 3),
      left('event', 10),
      ...ROUTES.map(r => left(`${r.limit} ${r.failClosed ? 'mem' : 'byp'}`, CELL)),
      right('5xx', 3),
      right('ms', 6),
    ].join(' ');
    console.log(('  ' + head1).trimEnd());
    console.log('  ' + head2);
    console.log('  ' + '-'.repeat(head2.length));

    /** @type {{ cells: Record<string, ReturnType<typeof emptyCell>>, maxMs: number, pending: Promise<void>[] }[]} */
    const seconds = [];
    /** @type {Record<string, number>} */
    const sent = { tenants: 0, bots: 0, credentials: 0, api: 0 };
    const totals = { requests: 0, '5xx': 0, maxMs: 0, outageMaxMs: 0 };
    /** @type {Record<string, number>} */
    const bySource = {};
    /** @type {{ sec: number, key: string, status: number, source: string }[]} */
    const tenantLog = [];
    let printedEvents = 0;
    let printing = Promise.resolve();
    /** @type {Promise<void> | undefined} */
    let restarting;
    let recoveredAt = -1;

    /** @param {number} sec */
    const printRow = sec => {
      const row = seconds[sec];
      if (!row) return;
      const inSecond = events.filter(e => e.t < sec + 1);
      const fresh = inSecond.slice(printedEvents);
      printedEvents = inSecond.length;
      const markers = fresh.filter(e => e.marker).map(e => e.marker);
      const fiveXx = ROUTES.reduce((sum, r) => sum + (row.cells[r.id]?.['5xx'] ?? 0), 0);
      console.log(
        '  ' +
          [
            right(sec, 3),
            left(markers.join(' ').slice(0, 10), 10),
            ...ROUTES.map(r => left(formatCell(row.cells[r.id] ?? emptyCell()), CELL)),
            right(fiveXx, 3),
            right(row.maxMs.toFixed(1), 6),
          ].join(' '),
      );
      for (const event of fresh) {
        if (event.text) printWrapped(`     ${event.t.toFixed(2).padStart(5)}s `, event.text);
      }
    };

    // Recovered: a whole second after the restart in which every route was
    // decided by Redis again.
    /** @param {number} sec */
    const allRedis = sec => {
      const row = seconds[sec];
      if (!row) return false;
      return ROUTES.every(r => {
        const cell = row.cells[r.id];
        return cell !== undefined && Object.keys(cell.sources).every(s => s === 'redis');
      });
    };

    t0 = performance.now();
    for (let slot = 0; ; slot++) {
      const sec = Math.floor((slot * SLOT_MS) / 1000);
      const slotInSecond = slot % PATTERN.length;
      if (slotInSecond === 0) {
        if (sec > 0) {
          const done = sec - 1;
          const pending = seconds[done]?.pending ?? [];
          printing = printing.then(() => Promise.all(pending)).then(() => printRow(done));
          await printing;
          if (restarting && breakerClosedAt >= 0 && allRedis(done) && done > RESTART_AT_S) {
            recoveredAt = done;
            break;
          }
          if (sec >= GIVE_UP_AT_S) break;
        }
        seconds[sec] = { cells: {}, maxMs: 0, pending: [] };
        if (sec === KILL_AT_S) {
          redis.kill('SIGKILL');
          events.push({ t: now(), marker: 'KILL' });
        }
        if (sec === RESTART_AT_S) {
          events.push({ t: now(), marker: 'START' });
          restarting = redis.start().catch(error => {
            events.push({ t: now(), text: `restart failed: ${error.message}` });
          });
        }
      }
      const wait = t0 + slot * SLOT_MS - performance.now();
      if (wait > 0) await sleep(wait);

      const routeId = PATTERN[slotInSecond] ?? 'api';
      const route = ROUTE[routeId];
      if (!route) continue;
      const n = sent[routeId] ?? 0;
      sent[routeId] = n + 1;
      // Distinct callers per route, sized so only tenant creation (3/day)
      // meets its limit: each tenant admin key gets 4 attempts, one per second.
      const key =
        routeId === 'tenants'
          ? `demo-tenant-admin-${Math.floor(n / 4)}`
          : routeId === 'bots'
            ? `demo-bot-operator-${n % 8}`
            : routeId === 'credentials'
              ? `demo-credential-admin-${n % 12}`
              : `demo-api-client-${n % 4}`;
      const row = seconds[sec];
      if (!row) continue;
      const outage = sec >= KILL_AT_S && breakerClosedAt < 0;
      row.pending.push(
        send(agent, appPort, route.method, route.path(n), key).then(reply => {
          const cell = (row.cells[routeId] ??= emptyCell());
          const source = reply.status === 0 ? 'no response' : reply.source;
          cell.sources[source] = (cell.sources[source] ?? 0) + 1;
          cell[statusClass(reply.status)] += 1;
          row.maxMs = Math.max(row.maxMs, reply.ms);
          totals.requests += 1;
          if (statusClass(reply.status) === '5xx') totals['5xx'] += 1;
          totals.maxMs = Math.max(totals.maxMs, reply.ms);
          if (outage) totals.outageMaxMs = Math.max(totals.outageMaxMs, reply.ms);
          bySource[source] = (bySource[source] ?? 0) + 1;
          if (routeId === 'tenants') tenantLog.push({ sec, key, status: reply.status, source });
        }),
      );
    }
    await restarting;

    console.log('');
    const sources = Object.entries(bySource)
      .map(([name, n]) => `${name} ${n}`)
      .join(', ');
    printWrapped(
      '  ',
      `Summary: ${totals.requests} requests (${sources}), ${totals['5xx']} 5xx, ` +
        `max latency ${totals.maxMs.toFixed(1)} ms (${totals.outageMaxMs.toFixed(1)} ms during the outage).`,
    );
    const firstKey = tenantLog.filter(entry => entry.key === 'demo-tenant-admin-0');
    const fourth = firstKey[3];
    if (fourth) {
      const held = fourth.status === 429;
      printWrapped(
        '  ',
        `Tenant admin 0 used its 3 creations in Redis before the kill; its 4th attempt ` +
          `(second ${fourth.sec}, decided by ${fourth.source}) got ${fourth.status}: ` +
          (held ? 'the quota survived the failover.' : 'the quota was reset by the failover!'),
      );
    }
    if (recoveredAt >= 0) {
      printWrapped(
        '  ',
        `Breaker closed at ${breakerClosedAt.toFixed(2)} s; every route decided by Redis again ` +
          `from second ${recoveredAt}.`,
      );
    } else {
      console.log(`  Redis decisions did not come back within ${GIVE_UP_AT_S} s.`);
    }
    return { fiveXx: totals['5xx'], recovered: recoveredAt >= 0 };
  } finally {
    agent.destroy();
    if (server) await closeServer(server);
    if (api) await api.close();
    await redis.stop();
    process.removeListener('exit', killOnExit);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------

async function main() {
  const started = performance.now();
  let failed = false;
  const redisBin = findRedisServer();
  if (redisBin === undefined) {
    console.log('Act 1 (the Redis outage) needs redis-server, which is not on the PATH.');
    console.log('Get it: sudo apt-get install redis-server (macOS: brew install redis).');
  } else {
    const { fiveXx, recovered } = await outageAct(redisBin);
    if (fiveXx > 0 || !recovered) failed = true;
  }
  console.log('');
  if ((await memoryOnlyAct()) > 0) failed = true;
  if ((await rulesAct()) > 0) failed = true;
  console.log(
    `Demo ${failed ? 'FAILED' : 'done'} in ${((performance.now() - started) / 1000).toFixed(1)} s.`,
  );
  if (failed) process.exitCode = 1;
}

main().catch(error => {
  console.error(`demo failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
