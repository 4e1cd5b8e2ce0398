// CommonJS: require() gives rateLimit, named and as `default`.
// eslint-disable-next-line @typescript-eslint/no-require-imports -- what a CommonJS user writes
import pkg = require('resilient-rate-limit');

export const named = pkg.rateLimit({ limit: 5, window: '1m' });
export const asDefault = pkg.default({ limit: 5, window: '1m' });
