// The package's public surface. Anything not exported here is internal.

/** Express/Connect middleware: `app.use(rateLimit({ limit, window, redis }))`. */
export { rateLimit } from './middleware.js';
import { rateLimit } from './middleware.js';
/** `import rateLimit from 'resilient-rate-limit'` (and `require(...).default`) give the same function. */
export default rateLimit;
export type { RateLimitOptions, RateLimitMiddleware, NextFunction } from './middleware.js';
/** The request/response types callbacks get by default: Express's when installed, else Node's. */
export type { DefaultRequest, DefaultResponse } from './framework-types.js';

/** The default key's address normalisation, for custom `key` functions. */
export { ipKey } from './key-generator.js';

/** The framework-free core, for queue workers, bots and custom frameworks. */
export { RateLimiter } from './rate-limiter.js';
export type { FallbackEvent, FallbackReason, RateLimiterEvents } from './rate-limiter.js';
export type {
  RateLimiterOptions,
  RateLimiterBaseOptions,
  RuleOptions,
  PolicyOptions,
  BreakerOptions,
  RedisClient,
} from './options.js';

/** The least-privilege Redis ACL rules this package needs, and the commands behind them. */
export { redisAclRules, REDIS_COMMANDS } from './redis-acl.js';

/** The bounded LRU store that decides during outages (and in memory-only mode). */
export { MemoryStore } from './stores/memory-store.js';
export type { MemoryStoreOptions } from './stores/memory-store.js';

/** Optional Prometheus metrics on the prom-client module you pass in. */
export { createPrometheusMetrics } from './metrics.js';
export type {
  RateLimitMetrics,
  MetricsSource,
  PrometheusMetricsOptions,
  PromClient,
} from './metrics.js';

/** Errors, each with a stable `code`, and guards that survive duplicate installs. */
export {
  RateLimitError,
  RateLimitConfigError,
  RateLimitArgumentError,
  RateLimitCapacityError,
  RateLimitTimeoutError,
  RateLimitStoreError,
  RateLimitHookError,
  isRateLimitError,
  isRateLimitConfigError,
  isRateLimitCapacityError,
} from './errors.js';

/** The clock contract, for tests that control time. */
export { systemClock } from './clock.js';
export type {
  AlgorithmName,
  Clock,
  DecisionSource,
  Logger,
  PolicyResult,
  RateLimitResult,
  RateLimitStore,
} from './types.js';
export type { HeaderMode } from './headers.js';
