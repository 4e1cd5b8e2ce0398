import { execFileSync, spawn } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { RedisProcess } from '../helpers/redis-process.js';

// The memory store sweeps expired entries on a timer that must never keep the
// process alive. These tests run the BUILT package in a child `node` that uses
// limiters, serves one request through the middleware, closes its server and
// then simply ends: it must exit on its own, with code 0.
//
// The package is built by scripts/build.mjs into a private directory (a copy
// of lib/ and the configs, with node_modules linked in and the package linked
// to itself), so the children load it by its name through the `exports` map
// and the shared dist/ that other tests and tools read is left alone.

const ROOT = resolve(__dirname, '../..');
const EXIT_DEADLINE_MS = 5_000;

let packageDir: string;

beforeAll(() => {
  packageDir = mkdtempSync(join(tmpdir(), 'rrl-process-exit-'));
  cpSync(join(ROOT, 'lib'), join(packageDir, 'lib'), { recursive: true });
  for (const file of ['package.json', 'tsconfig.json', 'tsconfig.build.json']) {
    copyFileSync(join(ROOT, file), join(packageDir, file));
  }
  const modules = join(packageDir, 'node_modules');
  mkdirSync(modules);
  for (const entry of readdirSync(join(ROOT, 'node_modules'))) {
    if (!entry.startsWith('.'))
      symlinkSync(join(ROOT, 'node_modules', entry), join(modules, entry), 'dir');
  }
  symlinkSync(packageDir, join(modules, 'resilient-rate-limit'), 'dir');
  execFileSync(process.execPath, [join(ROOT, 'scripts', 'build.mjs')], {
    cwd: packageDir,
    stdio: 'pipe',
  });
}, 120_000);

afterAll(() => {
  // rm does not follow symlinks: only the private copy goes.
  if (packageDir !== undefined) rmSync(packageDir, { recursive: true, force: true });
});

type Outcome = {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  stdout: string;
  stderr: string;
};

/** Runs `node ...args` in the private package directory; kills it after `deadlineMs`. */
function runNode(args: string[], deadlineMs: number): Promise<Outcome> {
  return new Promise((resolvePromise, reject) => {
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    const child = spawn(process.execPath, args, {
      cwd: packageDir,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, deadlineMs);
    child.on('error', error => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, timedOut, stdout, stderr });
    });
  });
}

// Shared by the CommonJS and ESM children: `express`, `http`, `rateLimit`,
// `RateLimiter`, `MemoryStore` and `resolved` are bound by each prelude.
// No limiter is closed and no timer is cleared on purpose.
const SCENARIO = `
(async () => {
  const limiters = [
    new RateLimiter({ name: 'exit-shared-store', limit: 2, window: '1h' }),
    new RateLimiter({ name: 'exit-own-store', limit: 2, window: '1h', memory: { maxKeys: 10 } }),
    new RateLimiter({ name: 'exit-given-store', limit: 2, window: '1h', memory: new MemoryStore({ maxKeys: 10, sweepIntervalMs: 50 }) }),
    new RateLimiter({ name: 'exit-clocked', limit: 2, window: '1h', clock: { now: () => Date.now() } }),
  ];
  const consumed = [];
  for (const limiter of limiters) consumed.push(await limiter.consume('client'));

  const app = express();
  app.use(rateLimit({ name: 'exit-http', limit: 5, window: '1h' }));
  app.get('/', (req, res) => res.json({ source: req.rateLimit.source }));
  const server = app.listen(0, '127.0.0.1');
  await new Promise(ready => server.once('listening', ready));
  const response = await new Promise((done, fail) => {
    http
      .get({ host: '127.0.0.1', port: server.address().port, path: '/', agent: false }, res => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', chunk => (body += chunk));
        res.on('end', () => done({ status: res.statusCode, headers: res.headers, body: JSON.parse(body) }));
      })
      .on('error', fail);
  });
  server.close();
  console.log(JSON.stringify({
    resolved,
    remaining: consumed.map(result => result.remaining),
    sources: consumed.map(result => result.source),
    status: response.status,
    source: response.headers['x-ratelimit-source'],
    body: response.body,
  }));
})().catch(error => {
  console.error(error);
  process.exitCode = 1;
});
`;

const CJS_PRELUDE = `
const http = require('node:http');
const express = require('express');
const { rateLimit, RateLimiter, MemoryStore } = require('resilient-rate-limit');
const resolved = require.resolve('resilient-rate-limit');
`;

const ESM_PRELUDE = `
import http from 'node:http';
import express from 'express';
import { rateLimit, RateLimiter, MemoryStore } from 'resilient-rate-limit';
const resolved = import.meta.resolve('resilient-rate-limit');
`;

function expectCleanExit(outcome: Outcome, entry: RegExp): void {
  expect({ timedOut: outcome.timedOut, stderr: outcome.stderr }).toEqual({
    timedOut: false,
    stderr: '',
  });
  expect(outcome.code).toBe(0);
  expect(JSON.parse(outcome.stdout)).toEqual({
    resolved: expect.stringMatching(entry),
    remaining: [1, 1, 1, 1],
    sources: ['memory', 'memory', 'memory', 'memory'],
    status: 200,
    source: 'memory',
    body: { source: 'memory' },
  });
}

describe('a process using the built package', () => {
  it('is killed by the harness when something keeps it alive (control)', async () => {
    const outcome = await runNode(['-e', 'setInterval(() => {}, 1000)'], 300);
    expect(outcome.timedOut).toBe(true);
  });

  it('exits by itself with code 0 after using it through require()', async () => {
    const outcome = await runNode(['-e', CJS_PRELUDE + SCENARIO], EXIT_DEADLINE_MS);
    expectCleanExit(outcome, /[\\/]dist[\\/]cjs[\\/]index\.js$/);
  }, 15_000);

  it('exits by itself with code 0 after using it through import', async () => {
    const outcome = await runNode(
      ['--input-type=module', '-e', ESM_PRELUDE + SCENARIO],
      EXIT_DEADLINE_MS,
    );
    expectCleanExit(outcome, /\/dist\/esm\/index\.js$/);
  }, 15_000);

  it("exits by itself with a fallbackLimit: 'share' limiter left open (the registry timer holds nothing)", async () => {
    const redis = await RedisProcess.start();
    try {
      const script = `
const { Redis } = require('ioredis');
const { RateLimiter } = require('resilient-rate-limit');
(async () => {
  const client = new Redis({ host: '127.0.0.1', port: ${redis.port}, enableOfflineQueue: false, maxRetriesPerRequest: 0 });
  await new Promise(ready => client.once('ready', ready));
  const silent = { warn() {}, info() {}, error() {} };
  const limiter = new RateLimiter({ name: 'exit-share', limit: 30, window: '1h', redis: client, fallbackLimit: 'share', logger: silent });
  const result = await limiter.consume('client');
  // Replies come in order: the registry's first refresh, sent at construction, is done.
  const registered = await client.zcard('rl:instances:30000ms');
  console.log(JSON.stringify({ source: result.source, registered, live: limiter.liveInstances }));
  client.disconnect(); // the limiter is not closed, on purpose
})().catch(error => { console.error(error); process.exitCode = 1; });
`;
      const outcome = await runNode(['-e', script], EXIT_DEADLINE_MS);
      expect({ timedOut: outcome.timedOut, stderr: outcome.stderr }).toEqual({
        timedOut: false,
        stderr: '',
      });
      expect(outcome.code).toBe(0);
      expect(JSON.parse(outcome.stdout)).toEqual({ source: 'redis', registered: 1, live: 1 });
    } finally {
      await redis.stop();
    }
  }, 15_000);
});
