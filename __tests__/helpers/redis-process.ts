import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { runInThisContext } from 'node:vm';
import { freePort } from './free-port.js';
import { rawCommand, replyToText } from './resp.js';

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
const OUTPUT_TAIL_CHARS = 4000;

// Every redis-server we spawned and have not yet seen exit. The exit hook is
// only installed while the set is non-empty so that re-evaluating this module
// once per jest test file does not pile up process listeners.
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

// Jest hands each test file a copy of `process` whose 'exit' event never
// fires; vm.runInThisContext evaluates in Node's main context, where
// `process` is the real one.
const hostProcess: NodeJS.Process = (() => {
  try {
    const candidate = runInThisContext('process') as NodeJS.Process | undefined;
    if (candidate && typeof candidate.on === 'function') return candidate;
  } catch {
    // Fall through to the (possibly sandboxed) global.
  }
  return process;
})();

function killLeftovers(): void {
  for (const child of liveChildren) {
    try {
      // SIGKILL also ends a SIGSTOPped process, so no SIGCONT is needed here.
      child.kill('SIGKILL');
    } catch {
      // Already gone.
    }
  }
  liveChildren.clear();
}

function track(child: ChildProcess): void {
  liveChildren.add(child);
  if (!exitHookInstalled) {
    hostProcess.on('exit', killLeftovers);
    exitHookInstalled = true;
  }
}

function untrack(child: ChildProcess): void {
  liveChildren.delete(child);
  if (liveChildren.size === 0 && exitHookInstalled) {
    hostProcess.off('exit', killLeftovers);
    exitHookInstalled = false;
  }
}

const sleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms));

class AddressInUseError extends Error {}

export class RedisProcess {
  readonly host = '127.0.0.1' as const;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private running = false;
  private frozen = false;
  private outputTail = '';

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
    return this.outputTail;
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
    const child = spawn(REDIS_SERVER, args, { cwd: this.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.running = true;
    this.frozen = false;
    this.outputTail = '';
    track(child);
    // A test that forgets stop() must not keep jest (or a worker) alive: the
    // event loop is allowed to drain, and the 'exit' hook above then kills
    // the server. Polling timers keep us alive while we actually wait on it.
    child.unref();
    (child.stdout as Socket | null)?.unref();
    (child.stderr as Socket | null)?.unref();
    const append = (chunk: Buffer): void => {
      this.outputTail = (this.outputTail + chunk.toString('utf8')).slice(-OUTPUT_TAIL_CHARS);
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    this.exited = new Promise<void>(resolve => {
      let done = false;
      const onGone = (): void => {
        if (done) return;
        done = true;
        clearTimeout(drainTimer);
        this.running = false;
        this.frozen = false;
        untrack(child);
        // Close our pipe ends even if a forked grandchild still holds the
        // write side, so no PIPEWRAP handle outlives the process.
        child.stdout?.destroy();
        child.stderr?.destroy();
        resolve();
      };
      let drainTimer: NodeJS.Timeout | undefined;
      // 'exit' can precede the last stdout chunk (e.g. "Address already in
      // use"), so prefer 'close'; the timer covers a pipe held open elsewhere.
      child.once('close', onGone);
      child.once('exit', () => {
        drainTimer = setTimeout(onGone, 200);
      });
      child.once('error', err => {
        this.outputTail += `\nspawn error: ${err.message}`;
        onGone();
      });
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
        if (/address already in use/i.test(this.outputTail)) {
          throw new AddressInUseError(`port ${this.port} in use:\n${this.outputTail}`);
        }
        throw new Error(
          `redis-server on port ${this.port} exited during startup:\n${this.outputTail}`,
        );
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new Error(
          `redis-server on port ${this.port} did not answer within ${this.startTimeoutMs} ms:\n${this.outputTail}`,
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
