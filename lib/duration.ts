import { RateLimitConfigError } from './errors.js';
import { redactingReplacer, redactUrl } from './secrets.js';

const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const pattern = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/;

/** Node's timers hold at most 2^31 - 1 ms; a longer delay fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** 100 years: keeps `now + window` a safe integer. No timer is ever set from a window. */
export const MAX_WINDOW_MS = 100 * 365 * 86_400_000;

/**
 * Parses a window length: a number of milliseconds, or a string such as
 * `'500ms' '30s' '15m' '1h' '1d'`. The result is a whole, positive number of ms.
 * @throws RateLimitConfigError naming `option` when the value is not a
 *   duration, not a whole positive number of ms, or above `maxMs`.
 */
export function parseDuration(
  value: unknown,
  option: string,
  maxMs: number = Number.MAX_SAFE_INTEGER,
): number {
  let ms: number;
  if (typeof value === 'number') {
    ms = value;
  } else if (typeof value === 'string') {
    const match = pattern.exec(value.trim());
    if (!match) {
      throw new RateLimitConfigError(
        `${option} must be a number of ms or a string like '500ms', '30s', '15m', '1h', '1d', got ${JSON.stringify(value)}`,
        option,
      );
    }
    const exact = Number(match[1]) * (units[match[2] as string] as number);
    // '4.1m' multiplies to 245999.99999999997: snap float noise, keep real fractions.
    const rounded = Math.round(exact);
    ms = Math.abs(exact - rounded) < 1e-6 ? rounded : exact;
  } else {
    throw new RateLimitConfigError(
      `${option} must be a number of ms or a duration string, got ${describe(value)}`,
      option,
    );
  }
  if (!Number.isSafeInteger(ms) || ms <= 0) {
    throw new RateLimitConfigError(
      `${option} must be a positive whole number of milliseconds, got ${describe(value)}`,
      option,
    );
  }
  if (ms > maxMs) {
    throw new RateLimitConfigError(
      `${option} must be at most ${maxMs} ms${maxMs === MAX_TIMER_MS ? " (Node's timer limit)" : ''}, got ${describe(value)}`,
      option,
    );
  }
  return ms;
}

/**
 * Formats a value for an error message without throwing on odd inputs, and
 * without the passwords a mistaken `redis` value may hold.
 */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(redactUrl(value));
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'symbol' || typeof value === 'bigint') return String(value);
  if (value === null || typeof value !== 'object') return String(value);
  try {
    return JSON.stringify(value, redactingReplacer) ?? String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}
