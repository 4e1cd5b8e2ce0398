import type { IncomingMessage } from 'node:http';

/**
 * A per-middleware record of the requests it has counted and for which key,
 * so it can say whether a request was already counted. A limiter mounted
 * twice on one route (as `app.use` and on the route itself) would otherwise
 * count every request twice. The record is a property of the request under
 * a symbol of this middleware's own, so it lives exactly as long as the
 * request and no other code sees it; the key string is stored by reference,
 * so the check allocates no string. (A WeakMap did the same at about a tenth
 * of the memory-only middleware's CPU: every request added an ephemeron.)
 */
export function createSingleCount(): (req: IncomingMessage, key: string) => boolean {
  const mark = Symbol('resilient-rate-limit counted');
  return (req, key) => {
    const record = req as IncomingMessage & { [mark]?: string };
    if (record[mark] === key) return true;
    record[mark] = key;
    return false;
  };
}
