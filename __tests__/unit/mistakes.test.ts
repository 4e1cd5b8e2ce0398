import { createClient } from 'redis';
import { rateLimit } from '../../lib/middleware.js';
import { isRateLimitConfigError, type RateLimitConfigError } from '../../lib/errors.js';
import { RateLimiter } from '../../lib/rate-limiter.js';
import type { RateLimiterOptions } from '../../lib/options.js';
import { recordingLogger } from '../helpers/redis.js';

// The mistakes people bring from express-rate-limit, rate-limiter-flexible
// and @fastify/rate-limit that options alone reveal. Each is caught once,
// with the code README "Error codes" documents. (The ones that need requests
// or Redis are in __tests__/integration/mistakes.test.ts.)

const created: RateLimiter[] = [];
afterEach(async () => {
  await Promise.all(created.splice(0).map(limiter => limiter.close()));
});

function build(options: RateLimiterOptions): RateLimiter {
  const limiter = new RateLimiter(options);
  created.push(limiter);
  return limiter;
}

function configError(options: unknown): RateLimitConfigError {
  try {
    rateLimit(options as Parameters<typeof rateLimit>[0]);
  } catch (error) {
    expect(isRateLimitConfigError(error)).toBe(true);
    return error as RateLimitConfigError;
  }
  throw new Error('expected a RateLimitConfigError');
}

const coded = (logger: ReturnType<typeof recordingLogger>, level: 'warn' | 'info', code: string) =>
  logger[level].mock.calls.filter(([message]) => String(message).includes(`[${code}]`));

describe('names from other rate limiters (ERR_RRL_CONFIG)', () => {
  it.each([
    ['message', 'handler'],
    ['statusCode', 'handler'],
    ['errorResponseBuilder', 'handler'],
    ['store', "'redis'"],
    ['passOnStoreError', 'failClosed: false'],
    ['insuranceLimiter', 'failClosed: true'],
    ['timeWindow', "'window'"],
    ['windowMs', "'window'"],
    ['blockDuration', 'not supported'],
    ['allowList', "'skip'"],
    ['storeClient', "'redis'"],
  ])("rejects '%s' with a hint naming %s", (option, hint) => {
    const error = configError({ limit: 5, window: '1m', [option]: 1 });
    expect(error.code).toBe('ERR_RRL_CONFIG');
    expect(error.option).toBe(option);
    expect(error.message).toContain(`unknown option '${option}'`);
    expect(error.message).toContain(hint);
  });

  it("says that rate-limiter-flexible's `duration` counts seconds", () => {
    const error = configError({ limit: 5, duration: 60 });
    expect(error.option).toBe('duration');
    expect(error.message).toContain('seconds');
    expect(error.message).toContain("window: '60s'");
  });
});

describe('a node-redis client (ERR_RRL_CONFIG)', () => {
  it('is named as such instead of being printed as {}', () => {
    const client = createClient({ url: 'redis://127.0.0.1:1' }); // never connected
    const error = configError({ limit: 5, window: '1m', redis: client });
    expect(error.code).toBe('ERR_RRL_CONFIG');
    expect(error.option).toBe('redis');
    expect(error.message).toContain('a node-redis client: this package needs ioredis');
    expect(error.message).not.toContain('{}');
  });
});

describe('a window that looks like seconds (ERR_RRL_WINDOW_SECONDS)', () => {
  it('warns once for window: 60, and says how to write 60 s', () => {
    const logger = recordingLogger();
    build({ name: 'seconds-60', limit: 5, window: 60, logger });
    const warnings = coded(logger, 'warn', 'ERR_RRL_WINDOW_SECONDS');
    expect(warnings).toHaveLength(1);
    expect(String(warnings[0]?.[0])).toContain("'60s'");
    expect(logger.warn).toHaveBeenCalledTimes(1);
  });

  it.each([1000, 60_000, '60ms', '500ms', '1m'])('says nothing for window %p', window => {
    const logger = recordingLogger();
    build({ name: `window-${window}`, limit: 5, window, logger });
    expect(logger.warn).not.toHaveBeenCalled();
  });
});

describe('two limiters with one name and different rules (ERR_RRL_NAME_CONFLICT)', () => {
  it('warns once per name, naming both rules', () => {
    const logger = recordingLogger();
    build({ name: 'shared-rule', limit: 100, window: '1m', logger });
    build({ name: 'shared-rule', limit: 100, window: '1m', logger }); // same rule: fine
    expect(logger.warn).not.toHaveBeenCalled();
    build({ name: 'shared-rule', limit: 5, window: '1m', logger });
    build({ name: 'shared-rule', limit: 5, window: '1s', algorithm: 'token-bucket', logger });
    const warnings = coded(logger, 'warn', 'ERR_RRL_NAME_CONFLICT');
    expect(warnings).toHaveLength(1);
    expect(String(warnings[0]?.[0])).toContain('fixed-window, 100 per 60000 ms');
    expect(String(warnings[0]?.[0])).toContain('fixed-window, 5 per 60000 ms');
    expect(logger.warn).toHaveBeenCalledTimes(1);
  });

  it('does not warn for the same name under another prefix, or once the other limiter closed', async () => {
    const logger = recordingLogger();
    const first = build({ name: 'renamed-rule', limit: 100, window: '1m', logger });
    build({ name: 'renamed-rule', limit: 5, window: '1m', prefix: 'other:', logger });
    await first.close();
    build({ name: 'renamed-rule', limit: 5, window: '1m', logger });
    expect(logger.warn).not.toHaveBeenCalled();
  });
});
