// ESM: the default import and the named import are the same function.
import rateLimitDefault, { rateLimit } from 'resilient-rate-limit';

const one = rateLimitDefault({ limit: 5, window: '1m' });
const two = rateLimit({ limit: 5, window: '1m' });
export const same: typeof rateLimit = rateLimitDefault;
export { one, two };
