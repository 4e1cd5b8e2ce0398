import type { ServerResponse } from 'node:http';
import type { RateLimitResult } from './types.js';

/** Which header families a limiter sends. */
export type HeaderMode = 'legacy' | 'standard' | 'both' | false;

/**
 * The RateLimit-Policy item of one limiter (draft-ietf-httpapi-ratelimit-headers-10),
 * built once per limit value instead of per request.
 */
export function policyItem(name: string, limit: number, windowMs: number): string {
  return `"${name}";q=${limit};w=${Math.max(1, Math.ceil(windowMs / 1000))}`;
}

const secondsUntil = (at: number, now: number): number => Math.max(0, Math.ceil((at - now) / 1000));

/** X-RateLimit-Limit / -Remaining / -Reset (Unix epoch seconds). */
export function setLegacyHeaders(
  res: ServerResponse,
  result: RateLimitResult,
  limitText = String(result.limit),
): void {
  if (res.headersSent) return;
  res.setHeader('X-RateLimit-Limit', limitText);
  res.setHeader('X-RateLimit-Remaining', String(result.remaining));
  res.setHeader('X-RateLimit-Reset', String(Math.ceil(result.resetAt / 1000)));
}

/**
 * IETF `RateLimit-Policy` and `RateLimit`, appended to what earlier limiters on
 * the route set, so each keeps its own item.
 */
export function setStandardHeaders(
  res: ServerResponse,
  name: string,
  policy: string,
  result: Pick<RateLimitResult, 'remaining' | 'resetAt'>,
  now: number,
): void {
  if (res.headersSent) return;
  append(res, 'RateLimit-Policy', policy);
  append(
    res,
    'RateLimit',
    `"${name}";r=${result.remaining};t=${secondsUntil(result.resetAt, now)}`,
  );
}

export function setSourceHeader(res: ServerResponse, source: RateLimitResult['source']): void {
  if (res.headersSent) return;
  res.setHeader('X-RateLimit-Source', source);
}

/** Retry-After in delta seconds, rounded up, at least 1. */
export function setRetryAfterHeader(res: ServerResponse, retryAfterMs: number): void {
  if (res.headersSent) return;
  res.setHeader('Retry-After', String(Math.max(1, Math.ceil(retryAfterMs / 1000))));
}

function append(res: ServerResponse, header: string, item: string): void {
  const existing = res.getHeader(header);
  res.setHeader(header, existing === undefined ? item : `${String(existing)}, ${item}`);
}
