import type { ServerResponse } from 'node:http';
import { setRetryAfterHeader } from './headers.js';

const PROBLEM_TYPES = 'https://iana.org/assignments/http-problem-types';

/**
 * 429 with an RFC 9457 body (draft-10's quota-exceeded problem type).
 * `violated`: the policies that denied, as named in RateLimit-Policy
 * (default: the limiter's one, `name`).
 */
export function sendTooManyRequests(
  res: ServerResponse,
  name: string,
  retryAfterMs: number,
  violated: readonly string[] = [name],
): void {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  send(res, 429, retryAfterMs, {
    type: `${PROBLEM_TYPES}#quota-exceeded`,
    title: 'Too Many Requests',
    status: 429,
    detail: `Rate limit '${name}' exceeded; retry in ${seconds} s.`,
    'violated-policies': violated,
  });
}

/**
 * 503 when the fallback store is full in `whenFull: 'reject'` mode: the one
 * deliberate 5xx, only on fail-closed routes.
 */
export function sendReducedCapacity(res: ServerResponse, name: string, retryAfterMs: number): void {
  send(res, 503, retryAfterMs, {
    type: `${PROBLEM_TYPES}#temporary-reduced-capacity`,
    title: 'Service Unavailable',
    status: 503,
    detail: `Rate limit '${name}' cannot be checked right now; retry shortly.`,
  });
}

function send(res: ServerResponse, status: number, retryAfterMs: number, body: object): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.statusCode = status;
  setRetryAfterHeader(res, retryAfterMs);
  res.setHeader('Content-Type', 'application/problem+json');
  res.end(JSON.stringify(body));
}
