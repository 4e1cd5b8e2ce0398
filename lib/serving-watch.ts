import type { Logger } from './types.js';

/** Limiters created after serving began before the warning fires. */
export const LATE_LIMITERS_BEFORE_WARNING = 50;

let serving = false;
let lateLimiters = 0;
let warned = false;

/**
 * Notes that this process has started deciding requests. Called by the
 * middleware on its first request.
 */
export function markServing(): void {
  serving = true;
}

/**
 * Counts a limiter created after serving began. A limiter belongs at start-up:
 * built per request it costs a Redis client lookup, breaker wiring and
 * counters that no other request shares (express-rate-limit warns about the
 * same mistake). One warning per process, with code
 * ERR_RRL_LIMITER_PER_REQUEST, once it has happened many times over.
 */
export function noteLimiterCreated(logger: Logger): void {
  if (!serving || warned) return;
  lateLimiters++;
  if (lateLimiters < LATE_LIMITERS_BEFORE_WARNING) return;
  warned = true;
  logger.warn(
    `resilient-rate-limit: ERR_RRL_LIMITER_PER_REQUEST: ${lateLimiters} limiters were created after the app started serving requests. Create each limiter once, at start-up, and reuse it: a limiter built per request shares no counters with the others and holds a Redis client and breaker until close().`,
  );
}

/** Forgets what was seen, for tests. @internal */
export function resetServingWatch(): void {
  serving = false;
  lateLimiters = 0;
  warned = false;
}
