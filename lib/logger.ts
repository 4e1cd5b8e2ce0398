import { isThenable } from './hook-runner.js';
import { describe } from './duration.js';
import { RateLimitConfigError } from './errors.js';
import type { Logger } from './types.js';

const noop = (): void => undefined;

/**
 * Checks a user's logger and returns one that can be called from anywhere.
 * `warn` is required (outages are reported through it); a missing `error`
 * falls back to `warn` and a missing `info` is a no-op, so `{ warn, error }`
 * works. A method present but not a function is a RateLimitConfigError.
 * Every call is wrapped: a logger that throws loses its line, never a
 * decision, and never runs its throw through our (or cockatiel's) stack.
 * @throws RateLimitConfigError when `logger` is not an object with a `warn` method.
 */
export function toSafeLogger(logger: unknown): Logger {
  const given = logger as Partial<Record<keyof Logger, unknown>> | null;
  if (typeof logger !== 'object' || given === null || typeof given.warn !== 'function') {
    throw new RateLimitConfigError(
      `logger must have a warn() method (error() and info() optional), got ${describe(logger)}`,
      'logger',
    );
  }
  for (const method of ['error', 'info'] as const) {
    if (given[method] !== undefined && typeof given[method] !== 'function') {
      throw new RateLimitConfigError(
        `logger.${method} must be a function when present, got ${describe(given[method])}`,
        'logger',
      );
    }
  }
  const target = logger as Logger;
  const wrap =
    (method: keyof Logger | undefined) =>
    (message: string, ...rest: unknown[]): void => {
      if (method === undefined) return;
      try {
        // An async logger's rejection too: Node would end the process on it.
        const written: unknown = target[method](message, ...rest);
        if (isThenable(written)) written.then(undefined, () => undefined);
      } catch {
        // Logging is best effort; nothing of ours depends on it.
      }
    };
  const safe: Logger = {
    warn: wrap('warn'),
    error: wrap(typeof given.error === 'function' ? 'error' : 'warn'),
    info: typeof given.info === 'function' ? wrap('info') : noop,
  };
  return safe;
}
