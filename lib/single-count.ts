import type { IncomingMessage } from 'node:http';

// The counters each request has already been counted against, as
// "name|key". One entry for the common single-limiter request, an array when
// a request passes several limiters.
const counted = new WeakMap<IncomingMessage, string | string[]>();

/**
 * Records that `req` was counted against `counter` ("name|key") and says
 * whether it already had been. A limiter mounted twice on one route (as
 * `app.use` and on the route itself) would otherwise count every request
 * twice. Entries live as long as the request object.
 */
export function countedBefore(req: IncomingMessage, counter: string): boolean {
  const seen = counted.get(req);
  if (seen === undefined) {
    counted.set(req, counter);
    return false;
  }
  if (seen === counter) return true;
  if (typeof seen === 'string') {
    counted.set(req, [seen, counter]);
    return false;
  }
  if (seen.includes(counter)) return true;
  seen.push(counter);
  return false;
}
