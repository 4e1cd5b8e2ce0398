import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { runInThisContext } from 'node:vm';

const OUTPUT_TAIL_CHARS = 4000;

// Every child we spawned and have not yet seen exit. The exit hook is only
// installed while the set is non-empty so that re-evaluating this module once
// per jest test file does not pile up process listeners.
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

/** A spawned server process, its recent output, and when it is gone. */
export type SupervisedChild = {
  child: ChildProcess;
  /** Last few KB of stdout/stderr, for failure messages. */
  output(): string;
  /** Resolves once the process has exited and its pipes are closed. */
  exited: Promise<void>;
};

/**
 * Spawns a server process that can never outlive the test run nor keep jest
 * alive: it is unref'd (so a forgotten stop() lets the event loop drain) and
 * SIGKILLed by an exit hook on the real process if still running then.
 */
export function spawnSupervised(command: string, args: string[], cwd: string): SupervisedChild {
  const child = spawn(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let tail = '';
  track(child);
  child.unref();
  (child.stdout as Socket | null)?.unref();
  (child.stderr as Socket | null)?.unref();
  const append = (chunk: Buffer | string): void => {
    tail = (tail + chunk.toString()).slice(-OUTPUT_TAIL_CHARS);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  const exited = new Promise<void>(resolve => {
    let done = false;
    let drainTimer: NodeJS.Timeout | undefined;
    const onGone = (): void => {
      if (done) return;
      done = true;
      clearTimeout(drainTimer);
      untrack(child);
      // Close our pipe ends even if a forked grandchild still holds the write
      // side, so no PIPEWRAP handle outlives the process.
      child.stdout?.destroy();
      child.stderr?.destroy();
      resolve();
    };
    // 'exit' can precede the last stdout chunk (e.g. "Address already in
    // use"), so prefer 'close'; the timer covers a pipe held open elsewhere.
    child.once('close', onGone);
    child.once('exit', () => {
      drainTimer = setTimeout(onGone, 200);
    });
    child.once('error', err => {
      append(`\nspawn error: ${err.message}`);
      onGone();
    });
  });
  return { child, output: () => tail, exited };
}
