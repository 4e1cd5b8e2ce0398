import type { IncomingMessage } from 'node:http';

/**
 * A per-middleware record of the requests it has counted and for which key,
 * so it can say whether a request was already counted. A limiter mounted
 * twice on one route (as `app.use` and on the route itself) would otherwise
 * count every request twice. Entries live as long as the request object; the
 * key string is stored by reference, so the check allocates no string.
 */
export function createSingleCount(): (req: IncomingMessage, key: string) => boolean {
  const counted = new WeakMap<IncomingMessage, string>();
  return (req, key) => {
    if (counted.get(req) === key) return true;
    counted.set(req, key);
    return false;
  };
}
