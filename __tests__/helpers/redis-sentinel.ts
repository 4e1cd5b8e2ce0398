import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.js';
import { RedisProcess } from './redis-process.js';
import { rawCommand, replyToText, type RespReply } from './resp.js';
import { spawnSupervised, type SupervisedChild } from './supervised-child.js';

const REDIS_SERVER = process.env.REDIS_SERVER_BIN ?? 'redis-server';
const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms));

export interface SentinelOptions {
  /** Master group name; default 'mymaster'. */
  masterName?: string;
  /** `sentinel down-after-milliseconds`; default 500. */
  downAfterMs?: number;
  /** `sentinel failover-timeout`; default 3000. */
  failoverTimeoutMs?: number;
  /** How long to wait for the sentinel to answer; default 5000 ms. */
  startTimeoutMs?: number;
}

/**
 * One `redis-server <conf> --sentinel` process monitoring one master with
 * quorum 1. RedisProcess cannot run it: sentinel mode needs the config file as
 * the first argument, and sentinel rewrites that file, so it lives in a
 * private temp dir.
 */
export class SentinelProcess {
  readonly host = '127.0.0.1' as const;
  private running = true;
  private readonly child: ChildProcess;
  private readonly exited: Promise<void>;

  private constructor(
    readonly port: number,
    readonly masterName: string,
    private readonly dir: string,
    private readonly supervised: SupervisedChild,
  ) {
    this.child = supervised.child;
    this.exited = supervised.exited.then(() => {
      this.running = false;
    });
  }

  static async start(masterPort: number, options: SentinelOptions = {}): Promise<SentinelProcess> {
    const masterName = options.masterName ?? 'mymaster';
    let lastError: unknown;
    // A picked port may be taken between freePort() and bind: try another.
    for (let attempt = 0; attempt < 5; attempt++) {
      const port = await freePort();
      const dir = mkdtempSync(join(tmpdir(), 'rrl-sentinel-'));
      const conf = join(dir, 'sentinel.conf');
      writeFileSync(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          'protected-mode no',
          `dir ${dir}`,
          `sentinel monitor ${masterName} 127.0.0.1 ${masterPort} 1`,
          `sentinel down-after-milliseconds ${masterName} ${options.downAfterMs ?? 500}`,
          `sentinel failover-timeout ${masterName} ${options.failoverTimeoutMs ?? 3000}`,
          `sentinel parallel-syncs ${masterName} 1`,
          '',
        ].join('\n'),
      );
      const supervised = spawnSupervised(REDIS_SERVER, [conf, '--sentinel'], dir);
      const sentinel = new SentinelProcess(port, masterName, dir, supervised);
      try {
        await sentinel.waitReady(options.startTimeoutMs ?? 5000);
        return sentinel;
      } catch (err) {
        lastError = err;
        await sentinel.stop();
        if (!/address already in use/i.test(String((err as Error).message))) break;
      }
    }
    throw lastError;
  }

  get pid(): number | undefined {
    return this.running ? this.child.pid : undefined;
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Last few KB of the sentinel's log, for failure messages. */
  get output(): string {
    return this.supervised.output();
  }

  command(args: readonly string[], timeoutMs = 1000): Promise<RespReply> {
    return rawCommand(this.port, args, { host: this.host, timeoutMs });
  }

  /** The port `SENTINEL get-master-addr-by-name` names now, if any. */
  async masterPort(): Promise<number | undefined> {
    const reply = await this.command(['SENTINEL', 'get-master-addr-by-name', this.masterName]);
    if (!Array.isArray(reply) || reply[1] === undefined || reply[1] === null) return undefined;
    return Number(reply[1]);
  }

  /** `SENTINEL replicas <name>`, each entry as a field → value record. */
  async replicas(): Promise<Record<string, string>[]> {
    const reply = await this.command(['SENTINEL', 'replicas', this.masterName]);
    if (!Array.isArray(reply)) return [];
    return reply.map(entry => {
      const record: Record<string, string> = {};
      if (!Array.isArray(entry)) return record;
      for (let i = 0; i + 1 < entry.length; i += 2) {
        record[String(entry[i])] = replyToText(entry[i + 1] ?? null);
      }
      return record;
    });
  }

  /** SIGKILLs this sentinel (and only it), waits for it to exit, removes its dir. */
  async stop(): Promise<void> {
    if (this.running) {
      this.child.ref();
      this.child.kill('SIGKILL');
    }
    await this.exited;
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const pid = this.child.pid;
    for (;;) {
      if (!this.running || pid === undefined) {
        throw new Error(
          `sentinel on port ${this.port} exited during startup:\n${this.supervised.output()}`,
        );
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new Error(
          `sentinel on port ${this.port} did not answer within ${timeoutMs} ms:\n${this.supervised.output()}`,
        );
      }
      try {
        // Our process, not a foreign server that already owned the port.
        const info = replyToText(await this.command(['INFO', 'server'], Math.min(500, remaining)));
        if (new RegExp(`^process_id:${pid}\\r?$`, 'm').test(info)) return;
      } catch {
        // Not listening yet; poll again.
      }
      await sleep(25);
    }
  }
}

/**
 * A master, one replica of it and one sentinel (quorum 1) that fails the
 * master over to the replica `downAfterMs` after it stops answering.
 * start() returns once the replica is in sync and the sentinel knows it (so a
 * failover can pick it); stop() kills exactly the three processes it started.
 */
export class RedisSentinelSet {
  private stopped = false;

  private constructor(
    readonly master: RedisProcess,
    readonly replica: RedisProcess,
    readonly sentinel: SentinelProcess,
  ) {}

  static async start(options: SentinelOptions = {}): Promise<RedisSentinelSet> {
    // Diskless sync without the default 5 s wait for more replicas.
    const master = await RedisProcess.start({ args: ['--repl-diskless-sync-delay', '0'] });
    let replica: RedisProcess | undefined;
    let sentinel: SentinelProcess | undefined;
    try {
      replica = await RedisProcess.start({
        args: ['--replicaof', master.host, String(master.port)],
      });
      const started = replica;
      await waitFor('replica in sync', 5000, async () => {
        const [onMaster, onReplica] = await Promise.all([
          master.command('INFO', 'replication'),
          started.command('INFO', 'replication'),
        ]);
        return (
          /^connected_slaves:1\r?$/m.test(onMaster) &&
          /^slave0:.*state=online/m.test(onMaster) &&
          /^master_link_status:up\r?$/m.test(onReplica)
        );
      });
      // Started after the replica is attached, so the sentinel's first INFO
      // of the master already lists it.
      sentinel = await SentinelProcess.start(master.port, options);
      const replicaPort = replica.port;
      const known = sentinel;
      await waitFor('sentinel to know the replica', 5000, async () => {
        const replicas = await known.replicas();
        // master-link-status comes from the replica's own INFO, which a
        // sentinel needs (recently) before it will promote that replica.
        return replicas.some(
          r =>
            r.port === String(replicaPort) &&
            r.flags === 'slave' &&
            r['master-link-status'] === 'ok',
        );
      });
      return new RedisSentinelSet(master, replica, sentinel);
    } catch (err) {
      await Promise.allSettled([master.stop(), replica?.stop(), sentinel?.stop()]);
      throw err;
    }
  }

  get masterName(): string {
    return this.sentinel.masterName;
  }

  /** For ioredis's `sentinels` option. */
  get sentinels(): { host: string; port: number }[] {
    return [{ host: this.sentinel.host, port: this.sentinel.port }];
  }

  /** Resolves once the sentinel names `port` as the master; rejects after `withinMs`. */
  async waitForMaster(port: number, withinMs = 10_000): Promise<void> {
    await waitFor(`sentinel to name port ${port} as master`, withinMs, async () => {
      return (await this.sentinel.masterPort().catch(() => undefined)) === port;
    }).catch((err: Error) => {
      throw new Error(`${err.message}\nsentinel log:\n${this.sentinel.output}`);
    });
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all([this.sentinel.stop(), this.replica.stop(), this.master.stop()]);
  }
}

async function waitFor(
  what: string,
  withinMs: number,
  predicate: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + withinMs;
  let lastError: unknown;
  for (;;) {
    try {
      if (await predicate()) return;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      const cause = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${withinMs} ms waiting for ${what}${cause}`);
    }
    await sleep(50);
  }
}
