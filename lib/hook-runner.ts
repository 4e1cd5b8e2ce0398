import { RateLimitHookError } from './errors.js';
import type { Logger } from './types.js';

/**
 * Runs code the user supplied (event listeners, logger, metrics sink) at arm's
 * length from ours. Two reasons:
 * - Our stack may be inside a third-party emitter: cockatiel fires its
 *   half-open event before its own `try`, so a throw there leaves the probe
 *   unsettled and the breaker half-open for good.
 * - A throw must never change a decision or become an unhandled rejection.
 *
 * So each call is wrapped, and listener calls are also handed off with
 * `queueMicrotask`, after our state is consistent. A throw becomes one report
 * (`report`, which the limiter turns into a `storeError` event), never a
 * second throw; a report that itself throws is logged once and dropped.
 */
export class HookRunner {
  private readonly logged = new Set<string>();

  constructor(
    private readonly report: (error: RateLimitHookError) => void,
    private readonly logger: Logger,
  ) {}

  /**
   * Calls `fn` now, returning its value, or `undefined` if it threw (then
   * reported). A promise it returns (an `async` listener, metrics sink or
   * logger) is watched: its rejection is reported the same way, never left
   * unhandled, where Node would end the process.
   */
  call<T>(hook: string, fn: () => T): T | undefined {
    try {
      const value = fn();
      if (isThenable(value)) value.then(undefined, (error: unknown) => this.fail(hook, error));
      return value;
    } catch (error) {
      this.fail(hook, error);
      return undefined;
    }
  }

  /** Calls `fn` after the current task's synchronous work, in its own try/catch. */
  defer(hook: string, fn: () => void): void {
    queueMicrotask(() => this.call(hook, fn));
  }

  /** Handles a rejection of a promise we started and nobody awaits. */
  readonly caught = (hook: string) => (error: unknown) => this.fail(hook, error);

  private fail(hook: string, error: unknown): void {
    const wrapped = new RateLimitHookError(hook, error);
    try {
      this.report(wrapped);
    } catch (second) {
      this.logOnce(hook, second);
    }
  }

  /** One log line per hook: a listener that throws on every request must not flood the log. */
  logOnce(hook: string, error: unknown): void {
    if (this.logged.has(hook)) return;
    this.logged.add(hook);
    try {
      this.logger.error(
        `resilient-rate-limit: ${hook} threw (${error instanceof Error ? error.message : String(error)}); the decision was not affected. Further throws from it are not logged.`,
      );
    } catch {
      // The logger is user code too; there is nowhere left to report to.
    }
  }
}

/** A value with a `then` method (a promise from another realm or library too). */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === 'object' || typeof value === 'function') &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}
