import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.js';
import { rawCommand, replyToText } from './resp.js';
import { spawnSupervised, type SupervisedChild } from './supervised-child.js';

export interface RedisProcessOptions {
  /** Fixed port; when omitted a free one is picked (and re-picked if another process races us to it). */
  port?: number;
  /** Extra redis-server arguments, e.g. ['--maxmemory', '1mb', '--maxmemory-policy', 'noeviction']. */
  args?: string[];
  /** Working directory; when omitted a private temp dir is created and removed by stop(). */
  cwd?: string;
  /** How long to wait for the server to answer; default 5000 ms. */
  startTimeoutMs?: number;
}

const REDIS_SERVER = process.env.REDIS_SERVER_BIN ?? 'redis-server';
const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms));

class AddressInUseError extends Error {}

export class RedisProcess {
  readonly host = '127.0.0.1' as const;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private running = false;
  private frozen = false;
  private supervised: SupervisedChild | undefined;

  private constructor(
    readonly port: number,
    private readonly extraArgs: readonly string[],
    private readonly cwd: string,
    private readonly ownsCwd: boolean,
    private readonly startTimeoutMs: number,
  ) {}

  static async start(options: RedisProcessOptions = {}): Promise<RedisProcess> {
    const ownsCwd = options.cwd === undefined;
    const cwd = options.cwd ?? mkdtempSync(join(tmpdir(), 'rrl-redis-'));
    const args = options.args ?? [];
    const timeoutMs = options.startTimeoutMs ?? 5000;
    // An explicit port is retried in place (it may just be lingering); a
    // picked port that turns out taken is simply replaced with another one.
    const attempts = options.port === undefined ? 5 : 1;
    let lastError: unknown;
    for (let i = 0; i < attempts; i++) {
      const port = options.port ?? (await freePort());
      const proc = new RedisProcess(port, args, cwd, ownsCwd, timeoutMs);
      try {
        await proc.launch(options.port !== undefined);
        return proc;
      } catch (err) {
        lastError = err;
        await proc.kill();
        if (!(err instanceof AddressInUseError)) break;
      }
    }
    if (ownsCwd) rmSync(cwd, { recursive: true, force: true });
    throw lastError;
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get url(): string {
    return `redis://${this.host}:${this.port}`;
  }

  get isRunning(): boolean {
    return this.running;
  }

  get isFrozen(): boolean {
    return this.running && this.frozen;
  }

  /** Last few KB of redis-server stdout/stderr, for failure messages. */
  get output(): string {
    return this.supervised?.output() ?? '';
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (child && this.running) {
      // The handle is unref'd (see spawnOnce); without re-ref'ing, a script
      // whose only pending work is this await could exit before 'exit' fires.
      child.ref();
      child.kill('SIGKILL');
    }
    await this.exited;
  }

  freeze(): void {
    this.signal('SIGSTOP');
    this.frozen = true;
  }

  resume(): void {
    this.signal('SIGCONT');
    this.frozen = false;
  }

  async restart(): Promise<void> {
    await this.terminate();
    // stop() may have removed our private dir; cluster nodes pass their own cwd.
    mkdirSync(this.cwd, { recursive: true });
    await this.launch(true);
  }

  async stop(): Promise<void> {
    await this.terminate();
    if (this.ownsCwd) rmSync(this.cwd, { recursive: true, force: true });
  }

  async command(...args: string[]): Promise<string> {
    return replyToText(await rawCommand(this.port, args, { host: this.host }));
  }

  async commandCount(name: string): Promise<number> {
    const info = await this.command('INFO', 'commandstats');
    const prefix = `cmdstat_${name.toLowerCase()}:`;
    const line = info.split(/\r?\n/).find(l => l.startsWith(prefix));
    const match = line ? /[:,]calls=(\d+)/.exec(line) : null;
    return match?.[1] !== undefined ? Number(match[1]) : 0;
  }

  private async terminate(): Promise<void> {
    if (this.running && this.frozen) this.signal('SIGCONT');
    await this.kill();
  }

  private signal(sig: NodeJS.Signals): void {
    if (!this.child || !this.running) {
      throw new Error(`redis-server on port ${this.port} is not running (cannot send ${sig})`);
    }
    this.child.kill(sig);
  }

  private spawnOnce(): void {
    const args = [
      '--port',
      String(this.port),
      '--bind',
      this.host,
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--protected-mode',
      'no',
      ...this.extraArgs,
    ];
    const supervised = spawnSupervised(REDIS_SERVER, args, this.cwd);
    this.supervised = supervised;
    this.child = supervised.child;
    this.running = true;
    this.frozen = false;
    this.exited = supervised.exited.then(() => {
      if (this.supervised !== supervised) return;
      this.running = false;
      this.frozen = false;
    });
  }

  /**
   * Spawns and waits until *our* process answers. Identity is checked via
   * INFO process_id because a foreign server may already own the port while
   * our child is still on its way to failing the bind.
   */
  private async launch(retryInPlace: boolean): Promise<void> {
    const deadline = Date.now() + this.startTimeoutMs;
    for (;;) {
      this.spawnOnce();
      try {
        await this.waitReady(deadline);
        return;
      } catch (err) {
        await this.kill();
        if (err instanceof AddressInUseError && retryInPlace && Date.now() + 100 < deadline) {
          await sleep(100);
          continue;
        }
        throw err;
      }
    }
  }

  private async waitReady(deadline: number): Promise<void> {
    const child = this.child;
    const pid = child?.pid;
    for (;;) {
      if (!this.running || pid === undefined) {
        if (/address already in use/i.test(this.output)) {
          throw new AddressInUseError(`port ${this.port} in use:\n${this.output}`);
        }
        throw new Error(`redis-server on port ${this.port} exited during startup:\n${this.output}`);
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new Error(
          `redis-server on port ${this.port} did not answer within ${this.startTimeoutMs} ms:\n${this.output}`,
        );
      }
      try {
        const info = replyToText(
          await rawCommand(this.port, ['INFO', 'server'], {
            host: this.host,
            timeoutMs: Math.min(500, remaining),
          }),
        );
        if (new RegExp(`^process_id:${pid}\\r?$`, 'm').test(info)) return;
      } catch {
        // Not listening yet (ECONNREFUSED) or still loading; poll again.
      }
      await sleep(25);
    }
  }
}
