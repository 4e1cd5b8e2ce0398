import type { IncomingMessage } from 'node:http';
import type { Logger } from './types.js';

type ExpressRequest = IncomingMessage & { app?: { get?(setting: string): unknown } };

/**
 * Warns once when the default IP key is likely wrong because of proxy
 * settings, as express-rate-limit's validations do. Both mistakes are silent
 * otherwise: either every client shares the proxy's address (one limit for
 * all), or every client can pick its own address (no limit at all).
 */
export function createProxyCheck(logger: Logger): (req: IncomingMessage) => void {
  let done = false;
  return req => {
    if (done) return;
    const trust = (req as ExpressRequest).app?.get?.('trust proxy');
    if (trust === true) {
      done = true;
      logger.warn(
        "resilient-rate-limit: Express 'trust proxy' is true, so any client can choose its address with X-Forwarded-For and escape the limit; set it to the number of proxies in front of the app (or their addresses)",
      );
    } else if (trust === false && req.headers['x-forwarded-for'] !== undefined) {
      done = true;
      logger.warn(
        "resilient-rate-limit: a request carries X-Forwarded-For but Express 'trust proxy' is off, so clients behind the proxy share its address and one limit; if the app is behind a proxy, set app.set('trust proxy', <number of proxies>)",
      );
    }
  };
}
