// @ts-check
// Child processes for the benches (bench/), the soak (soak/) and the chaos
// checker (chaos/): redis-server (single or a Cluster),
// the bench variant servers and any other child a script tracks. Every child
// is tracked by PID and killed on exit, error, SIGINT, SIGTERM or SIGHUP, and
// every temp dir is removed, so an interrupted run leaves nothing behind.
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const REDIS_SERVER = process.env.REDIS_SERVER_BIN ?? 'redis-server';

/** @type {Map<number, { child: import('node:child_process').ChildProcess, label: string }>} */
const children = new Map();
/** @type {Set<string>} */
const tempDirs = new Set();
/** Prefix of this module's log lines ('bench', 'soak'); set by installHooks. */
let logLabel = 'bench';
let hooksInstalled = false;

/** Kills every child still alive, by PID (SIGCONT first so a frozen one dies at once). */
export function killAll() {
  for (const [pid, { child }] of children) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    try {
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  children.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

/**
 * Kills every child (killAll) on exit, SIGINT, SIGTERM and SIGHUP. Runs by
 * itself when the first child is tracked; call it first to install the hooks
 * earlier and to log as `label` ("soak: SIGINT, stopping child processes").
 * @param {string} [label]
 */
export function installHooks(label) {
  if (label !== undefined) logLabel = label;
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killAll);
  for (const signal of /** @type {const} */ (['SIGINT', 'SIGTERM', 'SIGHUP'])) {
    process.on(signal, () => {
      console.error(`\n${logLabel}: ${signal}, stopping child processes`);
      killAll();
      process.exit(130);
    });
  }
}

/**
 * Tracks a just-spawned child by PID, so killAll kills it, and keeps the tail
 * of its stderr for error messages.
 * @param {import('node:child_process').ChildProcess} child
 * @param {string} label
 */
export function track(child, label) {
  installHooks();
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${label} did not start`);
  children.set(pid, { child, label });
  /** @type {string[]} */
  const tail = [];
  const keep = (/** @type {Buffer} */ chunk) => {
    tail.push(chunk.toString());
    if (tail.length > 50) tail.shift();
  };
  child.stderr?.on('data', keep);
  child.on('exit', () => children.delete(pid));
  return { label, tail };
}

/**
 * Stops a tracked child: SIGTERM, then SIGKILL if it is still running after
 * `graceMs`. Resolves once it has exited.
 * @param {import('node:child_process').ChildProcess} child
 * @param {number} [graceMs]
 */
export async function stopChild(child, graceMs = 2000) {
  const pid = child.pid;
  const running = () => child.exitCode === null && child.signalCode === null;
  if (pid === undefined || !running()) return;
  /** @param {NodeJS.Signals} signal */
  const send = signal => {
    try {
      if (running()) process.kill(pid, signal);
    } catch {
      // exited before its 'exit' event
    }
  };
  const exited = new Promise(resolve => child.once('exit', resolve));
  send('SIGTERM');
  const timer = setTimeout(() => send('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** A TCP port nothing listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** @param {number} ms */
export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

/**
 * Sends one inline Redis command and returns the raw reply, or throws.
 * @param {number} port
 * @param {string} command
 * @param {number} [timeoutMs]
 * @returns {Promise<string>}
 */
export function redisCommand(port, command, timeoutMs = 500) {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis ${command}: no reply in ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('connect', () => socket.write(command + '\r\n'));
    socket.on('data', chunk => {
      reply += chunk.toString();
      if (reply.endsWith('\r\n')) {
        clearTimeout(timer);
        socket.end();
        resolve(reply);
      }
    });
    socket.on('error', error => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/**
 * PING over a raw socket: true on +PONG within `timeoutMs`; never rejects.
 * @param {number} port
 * @param {number} [timeoutMs]
 */
export async function ping(port, timeoutMs = 300) {
  try {
    return (await redisCommand(port, 'PING', timeoutMs)).startsWith('+PONG');
  } catch {
    return false;
  }
}

/**
 * A redis-server on 127.0.0.1:`port` with persistence off, in a temp dir
 * (removed by killAll). Faults for the outage bench and the soak: `kill()`
 * (SIGKILL), `restart()` on the same port, `stop()` (SIGSTOP), `cont()`
 * (SIGCONT), or any `signal()`.
 * @param {number} port
 * @param {{ tempPrefix?: string, dir?: string, args?: string[] }} [options]
 *   tempPrefix: of the temp dir's name; dir: use this (tracked) dir instead;
 *   args: extra redis-server arguments
 */
export async function startRedis(
  port,
  { tempPrefix = 'rrl-bench-redis-', dir, args: extra = [] } = {},
) {
  if (dir === undefined) {
    dir = mkdtempSync(join(tmpdir(), tempPrefix));
    tempDirs.add(dir);
  }
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--protected-mode',
    'no',
    '--loglevel',
    'warning',
    ...extra,
  ];
  /** @type {import('node:child_process').ChildProcess | undefined} */
  let child;
  const launch = async () => {
    child = spawn(REDIS_SERVER, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const info = track(child, 'redis-server');
    const deadline = Date.now() + 5000;
    while (!(await ping(port))) {
      if (child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`redis-server on ${port} did not start: ${info.tail.join('')}`);
      }
      await sleep(25);
    }
  };
  const running = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  /** @param {NodeJS.Signals} signal */
  const signal = signal => {
    if (child?.pid !== undefined && running()) process.kill(child.pid, signal);
  };
  await launch();
  return {
    port,
    get pid() {
      return /** @type {number} */ (child?.pid);
    },
    version:
      execFileSync(REDIS_SERVER, ['--version'])
        .toString()
        .match(/v=(\S+)/)?.[1] ?? '?',
    signal,
    /** SIGKILL (after SIGCONT, in case it is frozen); resolves once it has exited. */
    async kill() {
      if (!child || !running()) return;
      const current = child;
      const exited = new Promise(resolve => current.once('exit', resolve));
      signal('SIGCONT');
      signal('SIGKILL');
      await exited;
    },
    /** Starts it again on the same port and dir (empty: no persistence). */
    restart: launch,
    /** Freezes it (SIGSTOP): connections stay open, nothing answers. */
    stop: () => signal('SIGSTOP'),
    /** Resumes it after stop() (SIGCONT). */
    cont: () => signal('SIGCONT'),
  };
}

const REDIS_CLI = process.env.REDIS_CLI_BIN ?? 'redis-cli';

/**
 * A Redis Cluster of `masters` redis-servers (no replicas) on 127.0.0.1, each
 * a startRedis() process (so kill/restart/stop/cont work per node; a
 * restarted node keeps its slots through nodes.conf but comes back empty).
 * Resolves once every node reports cluster_state:ok.
 * @param {{ masters?: number, nodeTimeoutMs?: number, tempPrefix?: string }} [options]
 */
export async function startCluster({
  masters = 3,
  nodeTimeoutMs = 2000,
  tempPrefix = 'rrl-cluster-',
} = {}) {
  const dir = mkdtempSync(join(tmpdir(), tempPrefix));
  tempDirs.add(dir);
  const nodes = [];
  for (let i = 0; i < masters; i++) {
    const port = await freePort();
    // An explicit bus port: the default (port + 10000) can exceed 65535.
    const busPort = await freePort();
    nodes.push(
      await startRedis(port, {
        dir,
        args: [
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout',
          String(nodeTimeoutMs),
          '--cluster-port',
          String(busPort),
        ],
      }),
    );
  }
  execFileSync(
    REDIS_CLI,
    [
      '--cluster',
      'create',
      ...nodes.map(n => `127.0.0.1:${n.port}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 },
  );
  const cluster = {
    nodes,
    /** Polls until every running node says cluster_state:ok, or throws after `timeoutMs`. */
    async waitHealthy(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const infos = await Promise.all(
          nodes.map(n => redisCommand(n.port, 'CLUSTER INFO', 500).catch(() => '')),
        );
        if (infos.every(info => info.includes('cluster_state:ok'))) return;
        if (Date.now() > deadline) throw new Error('redis cluster not healthy');
        await sleep(100);
      }
    },
  };
  await cluster.waitHealthy();
  return cluster;
}

/**
 * Starts `node bench/server.mjs <variant> <port> [redisPort] [...flags]` and
 * waits for its ready line.
 * @param {string} variant
 * @param {number | undefined} redisPort
 * @param {string[]} [flags]
 */
export async function startServer(variant, redisPort, flags = []) {
  const port = await freePort();
  const args = [join(ROOT, 'bench/server.mjs'), variant, String(port)];
  if (redisPort !== undefined) args.push(String(redisPort));
  const child = spawn(process.execPath, [...args, ...flags], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_ENV: 'production' },
  });
  const info = track(child, variant);
  await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${variant}: not ready in 15 s`)), 15_000);
    const onData = (/** @type {Buffer} */ chunk) => {
      out += chunk.toString();
      if (out.includes('"ready":true')) {
        clearTimeout(timer);
        child.stdout?.off('data', onData);
        child.stdout?.resume();
        resolve(undefined);
      }
    };
    child.stdout?.on('data', onData);
    child.on('exit', code => {
      clearTimeout(timer);
      reject(new Error(`${variant} exited (${code}) before ready: ${info.tail.join('')}`));
    });
  });
  return {
    variant,
    port,
    url: `http://127.0.0.1:${port}/`,
    pid: /** @type {number} */ (child.pid),
    stderr: info.tail,
    stop: () => stopChild(child, 2000),
  };
}

let clockTicks = 0;

/** CLK_TCK, the unit of utime/stime in /proc/<pid>/stat. */
export function clkTck() {
  if (clockTicks === 0) clockTicks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
  return clockTicks;
}

/**
 * utime + stime of a process (all its threads), in clock ticks.
 * @param {number} pid
 */
export function cpuTicks(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name may contain spaces; fields after it are space-separated.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): utime is field 14, stime field 15.
  return Number(fields[11]) + Number(fields[12]);
}

/** nproc, CPU model, Node and OS, for the report header. */
export function machineInfo() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = cpuinfo.match(/^model name\s*:\s*(.*)$/m)?.[1] ?? 'unknown';
  const nproc = execFileSync('nproc').toString().trim();
  return {
    nproc,
    model,
    node: process.version,
    kernel: execFileSync('uname', ['-r']).toString().trim(),
  };
}

/** Builds dist/ unless told not to; fails if it still is not there. */
export function ensureBuilt(build = true) {
  if (build) {
    console.error(`${logLabel}: npm run build`);
    execFileSync('npm', ['run', '-s', 'build'], {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
  }
  try {
    readFileSync(join(ROOT, 'dist/cjs/index.js'));
    readFileSync(join(ROOT, 'dist/esm/index.js'));
  } catch {
    throw new Error('dist/ is missing: run `npm run build` first');
  }
}
