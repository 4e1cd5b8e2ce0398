import type { Logger } from './types.js';
import { warnWithCode } from './warnings.js';

/** Limiters created after serving began, and still open, before the warning fires. */
export const LATE_LIMITERS_BEFORE_WARNING = 100;

let serving = false;
let liveLateLimiters = 0;
let warned = false;
const noop = (): void => undefined;

/**
 * Notes that this process has started deciding requests. Called by the
 * middleware on its first request.
 */
export function markServing(): void {
  serving = true;
}

/**
 * Counts a limiter created after serving began; call the returned function
 * when it is closed. A limiter belongs at start-up: built per request it
 * shares no counters with the others and holds a Redis client and breaker
 * until closed (express-rate-limit warns about the same mistake). One
 * warning per process, with code ERR_RRL_LIMITER_PER_REQUEST, once many such
 * limiters are open at once. Counting open ones keeps test suites, which
 * build and close a limiter per test, quiet.
 */
export function noteLimiterCreated(logger: Logger): () => void {
  if (!serving) return noop;
  liveLateLimiters++;
  if (!warned && liveLateLimiters >= LATE_LIMITERS_BEFORE_WARNING) {
    warned = true;
    warnWithCode(
      logger,
      'ERR_RRL_LIMITER_PER_REQUEST',
      `${liveLateLimiters} limiters created after the app started serving requests are open. Create each limiter once, at start-up, and reuse it: a limiter built per request shares no counters with the others and holds a Redis client and breaker until close()`,
    );
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    liveLateLimiters--;
  };
}

/** Forgets what was seen, for tests. @internal */
export function resetServingWatch(): void {
  serving = false;
  liveLateLimiters = 0;
  warned = false;
}
