import type { IncomingMessage, ServerResponse } from 'node:http';
import { systemClock } from './clock.js';
import { describe } from './duration.js';
import {
  RateLimitArgumentError,
  RateLimitConfigError,
  isRateLimitCapacityError,
} from './errors.js';
import {
  policyItem,
  setLegacyHeaders,
  setSourceHeader,
  setStandardHeaders,
  type HeaderMode,
} from './headers.js';
import type { DefaultRequest, DefaultResponse } from './framework-types.js';
import { createIpKeyGenerator } from './key-generator.js';
import { createProxyCheck } from './proxy-check.js';
import { toSafeLogger } from './logger.js';
import { createSingleCount } from './single-count.js';
import { warnWithCode } from './warnings.js';
import {
  LIMITER_OPTIONS,
  rejectUnknownOptions,
  type PolicyOptions,
  type RateLimiterOptions,
} from './options.js';
import { sendReducedCapacity, sendTooManyRequests } from './problem.js';
import { TOKEN_BUCKET_LIMITS } from './policy-set.js';
import { RateLimiter } from './rate-limiter.js';
import { markServing } from './serving-watch.js';
import type { Logger, RateLimitResult } from './types.js';

type Awaitable<T> = T | Promise<T>;
export type NextFunction = (error?: unknown) => void;

/**
 * Options of `rateLimit()`: the limiter's, plus how requests map onto it.
 * `Req`/`Res` default to Express's `Request`/`Response` when Express's types
 * are installed (else Node's), so a limiter declared on its own types its
 * callbacks without a type argument.
 */
export type RateLimitOptions<
  Req extends IncomingMessage = DefaultRequest,
  Res extends ServerResponse = DefaultResponse,
> = Omit<RateLimiterOptions, 'limit' | 'policies'> & {
  /**
   * Requests (cost units) per window, or a function of the request (plans,
   * tenants): the key's one counter is judged against each call's limit, and
   * the headers show it. A function needs a `name`. Required unless `policies`.
   */
  limit?: number | ((req: Req) => Awaitable<number>);
  /**
   * Instead of `limit`/`window`: 1 to 4 quotas decided together ("10 per
   * second and 1000 per day"); each `limit` may be a function of the request.
   */
  policies?: ReadonlyArray<
    Omit<PolicyOptions, 'limit'> & { limit: number | ((req: Req) => Awaitable<number>) }
  >;
  /** Who is limited. Default: client IP (`req.ip`), IPv6 grouped by `ipv6Subnet`. */
  key?: (req: Req) => Awaitable<string>;
  /** Prefix length that groups IPv6 clients (32..128), or false. Default 56. */
  ipv6Subnet?: number | false;
  /** Units a request consumes. Default 1. */
  cost?: number | ((req: Req) => Awaitable<number>);
  /** Truthy: the request is not limited and gets no headers. */
  skip?: (req: Req) => Awaitable<boolean>;
  /** The response when limited. Default: 429 application/problem+json. */
  handler?: (
    req: Req,
    res: Res,
    next: NextFunction,
    result: RateLimitResult,
    // `unknown`, not `void`, so `(req, res) => res.status(429).json(...)`
    // fits; a returned promise is awaited and its rejection goes to next().
  ) => unknown;
  /** Header families to send. Default `'both'`. */
  headers?: HeaderMode;
  /**
   * Give the request's cost back when its response finishes successfully
   * (e.g. count only failed logins). The hit is counted when the request
   * arrives, so concurrent requests cannot overshoot. Default false.
   */
  skipSuccessfulRequests?: boolean;
  /** Give the request's cost back when its response fails or never finishes. Default false. */
  skipFailedRequests?: boolean;
  /**
   * What "successful" means for the two options above. Default:
   * `res.statusCode < 400`. A response that never finishes (the client
   * aborted) counts as failed.
   */
  requestWasSuccessful?: (req: Req, res: Res) => Awaitable<boolean>;
};

/**
 * The middleware. It takes any Node request, so it mounts in Express 4 and 5,
 * Connect and a bare `node:http` server alike.
 */
export interface RateLimitMiddleware {
  (req: IncomingMessage, res: ServerResponse, next: NextFunction): void | Promise<void>;
  /** The limiter behind this middleware. */
  readonly limiter: RateLimiter;
  /** Forgets `key`'s counters (memory and Redis). */
  reset(key: string): Promise<void>;
}

const MIDDLEWARE_OPTIONS = [
  'key',
  'ipv6Subnet',
  'cost',
  'skip',
  'handler',
  'headers',
  'skipSuccessfulRequests',
  'skipFailedRequests',
  'requestWasSuccessful',
] as const;
/** The core's limit when `limit` is a function: every call passes its own. */
const PER_REQUEST_LIMIT = Number.MAX_SAFE_INTEGER;
const HEADER_MODES: readonly HeaderMode[] = ['legacy', 'standard', 'both', false];

/**
 * Express/Connect middleware around a RateLimiter. Uses only
 * `res.setHeader`, `res.getHeader`, `res.statusCode` and `res.end`, so it runs
 * under Express 4 and 5, Connect and a bare `node:http` server.
 */
export function rateLimit<
  Req extends IncomingMessage = DefaultRequest,
  Res extends ServerResponse = DefaultResponse,
>(options: RateLimitOptions<Req, Res>): RateLimitMiddleware {
  if (typeof options !== 'object' || options === null) {
    throw new RateLimitConfigError(
      `options must be an object, got ${describe(options)}`,
      'options',
    );
  }
  rejectUnknownOptions(options, [...LIMITER_OPTIONS, ...MIDDLEWARE_OPTIONS]);
  const {
    key,
    ipv6Subnet = 56,
    cost = 1,
    skip,
    handler,
    headers = 'both',
    limit: limitOption,
    policies: policyOptions,
    skipSuccessfulRequests = false,
    skipFailedRequests = false,
    requestWasSuccessful,
    ...rest
  } = options;
  // Function limits: the core holds a placeholder and every call passes its own.
  const limitFns: Array<((req: Req) => Awaitable<number>) | undefined> = Array.isArray(
    policyOptions,
  )
    ? policyOptions.map(policy =>
        typeof policy === 'object' && policy !== null && typeof policy.limit === 'function'
          ? policy.limit
          : undefined,
      )
    : [typeof limitOption === 'function' ? limitOption : undefined];
  const perRequest = limitFns.some(fn => fn !== undefined);
  if (perRequest && rest.algorithm === 'token-bucket') {
    throw new RateLimitConfigError(TOKEN_BUCKET_LIMITS, 'limit');
  }
  if (perRequest && rest.name === undefined) {
    throw new RateLimitConfigError(
      "name is required when limit is a function (or a policy's limit is): it names the counters every limit shares",
      'name',
    );
  }
  const limiterOptions: RateLimiterOptions = Array.isArray(policyOptions)
    ? {
        ...rest,
        policies: policyOptions.map((policy, i) =>
          limitFns[i] ? { ...policy, limit: PER_REQUEST_LIMIT } : (policy as PolicyOptions),
        ),
      }
    : {
        ...rest,
        limit: typeof limitOption === 'function' ? PER_REQUEST_LIMIT : limitOption,
        // Anything else given as policies: the core says what is wrong with it.
        ...(policyOptions === undefined ? {} : { policies: policyOptions as never }),
      };
  for (const [option, value] of [
    ['skipSuccessfulRequests', skipSuccessfulRequests],
    ['skipFailedRequests', skipFailedRequests],
  ] as const) {
    if (typeof value !== 'boolean') {
      throw new RateLimitConfigError(`${option} must be a boolean, got ${describe(value)}`, option);
    }
  }
  checkFunction(requestWasSuccessful, 'requestWasSuccessful');
  const refunds = skipSuccessfulRequests || skipFailedRequests;
  if (
    ipv6Subnet !== false &&
    (!Number.isInteger(ipv6Subnet) || ipv6Subnet < 32 || ipv6Subnet > 128)
  ) {
    throw new RateLimitConfigError(
      `ipv6Subnet must be an integer from 32 to 128 or false, got ${describe(ipv6Subnet)}`,
      'ipv6Subnet',
    );
  }
  checkFunction(key, 'key');
  checkFunction(skip, 'skip');
  checkFunction(handler, 'handler');
  if (typeof cost !== 'function' && (!Number.isSafeInteger(cost) || cost < 1)) {
    throw new RateLimitConfigError(
      `cost must be a positive integer or a function, got ${describe(cost)}`,
      'cost',
    );
  }
  if (!HEADER_MODES.includes(headers)) {
    throw new RateLimitConfigError(
      `headers must be 'legacy', 'standard', 'both' or false, got ${describe(headers)}`,
      'headers',
    );
  }

  // Before the limiter exists: a throw after it would leak its Redis client.
  const ruleLimits = Array.isArray(limiterOptions.policies)
    ? limiterOptions.policies.map(policy => (policy as { limit?: unknown } | null)?.limit)
    : [limiterOptions.limit];
  for (const ruleLimit of ruleLimits) {
    if (
      typeof cost === 'number' &&
      typeof ruleLimit === 'number' &&
      ruleLimit !== PER_REQUEST_LIMIT &&
      Number.isSafeInteger(ruleLimit) &&
      ruleLimit >= 1 &&
      cost > ruleLimit
    ) {
      throw new RateLimitConfigError(`cost (${cost}) must not exceed limit (${ruleLimit})`, 'cost');
    }
  }
  const limiter = new RateLimiter(limiterOptions);
  const logger = toSafeLogger(limiterOptions.logger ?? console);
  const keyFor = key ?? defaultKey<Req>(ipv6Subnet, logger);
  const countedBefore = createSingleCount();
  let warnedDoubleCount = false;
  const warnDoubleCount = (): void => {
    if (warnedDoubleCount) return;
    warnedDoubleCount = true;
    warnWithCode(
      logger,
      'ERR_RRL_DOUBLE_COUNT',
      `'${limiter.name}' ran twice on one request for the same key (mounted with app.use and on the route, or on two routers?); the request is counted once`,
    );
  };
  const legacy = headers === 'legacy' || headers === 'both';
  const standard = headers === 'standard' || headers === 'both';
  // Each policy's RateLimit-Policy item (a limiter without policies has one,
  // named after it), and those of any other limit that decided
  // (fallbackLimit, which moves with the live instance count under 'share';
  // per-request limits): built once each, in a small cache that starts over
  // rather than grow.
  const policies = limiter.policies;
  const items = policies.map(p => policyItem(p.name, p.limit, p.windowMs));
  const otherItems = new Map<string, string>();
  const policyFor = (i: number, limit: number): string => {
    const own = policies[i]!;
    if (limit === own.limit) return items[i]!;
    const id = `${i}:${limit}`;
    let item = otherItems.get(id);
    if (item === undefined) {
      if (otherItems.size >= 64) otherItems.clear();
      item = policyItem(own.name, limit, own.windowMs);
      otherItems.set(id, item);
    }
    return item;
  };
  const limitText = String(limiter.limit);
  // A cost must fit every policy's limit.
  const smallestLimit = Math.min(...policies.map(p => p.limit));
  const clock = limiterOptions.clock ?? systemClock;

  // With policies, RateLimit-Policy and RateLimit carry one item per policy
  // (draft-10 lets a server announce every quota it applies); the legacy
  // X-RateLimit-* headers describe the binding one.
  const sendHeaders = (res: Res, result: RateLimitResult): void => {
    if (headers === false) return;
    setSourceHeader(res, result.source);
    if (result.source === 'bypass') return;
    if (legacy)
      setLegacyHeaders(res, result, result.limit === limiter.limit ? limitText : undefined);
    if (standard) {
      const now = clock.now();
      const each = result.policies;
      if (each === undefined) {
        setStandardHeaders(res, limiter.name, policyFor(0, result.limit), result, now);
      } else {
        for (let i = 0; i < each.length; i++) {
          const figures = each[i]!;
          setStandardHeaders(res, figures.name, policyFor(i, figures.limit), figures, now);
        }
      }
    }
  };

  // The steps below stay synchronous unless a user function or Redis returns
  // a promise: no promise, closure or microtask per request otherwise.
  // Response-aware counting: the hit was counted on arrival; once the
  // response is over, give it back if it is of the kind not to count. Off
  // the request's path: nothing here delays the response.
  const refundWhenDone = (req: Req, res: Res, counted: RateLimitResult, units: number): void => {
    let settled = false;
    const settle = (finished: boolean): void => {
      if (settled) return;
      settled = true;
      // A response that never finished (the client went away) failed.
      if (!finished) return giveBack(false);
      if (!requestWasSuccessful) return giveBack(res.statusCode < 400);
      let success: unknown;
      try {
        success = requestWasSuccessful(req, res);
      } catch (error) {
        return reportHookError(error);
      }
      if (isPromise(success)) success.then(value => giveBack(Boolean(value)), reportHookError);
      else giveBack(Boolean(success));
    };
    const giveBack = (success: boolean): void => {
      if (success ? !skipSuccessfulRequests : !skipFailedRequests) return;
      // A refund gives back units of the live window: once a window that
      // counted this request has ended (a slow response, a short burst
      // policy), they would come out of a later window's hits, so the
      // request stays counted instead (over-counting is the safe side).
      const now = clock.now();
      if ((counted.policies ?? [counted]).some(policy => now >= policy.resetAt)) return;
      // A refund that cannot reach Redis is reported by the limiter itself.
      limiter.refund(counted.key, units).catch(reportHookError);
    };
    res.once('finish', () => settle(true));
    res.once('close', () => settle(false));
  };
  const reportHookError = (error: unknown): void => {
    logger.warn(
      `resilient-rate-limit: '${limiter.name}' could not decide whether to give a request's cost back; it stays counted`,
      error,
    );
  };

  const respond = (
    req: Req,
    res: Res,
    next: NextFunction,
    result: RateLimitResult,
    units: number,
  ): void | Promise<void> => {
    (req as Req & { rateLimit?: RateLimitResult }).rateLimit = result;
    sendHeaders(res, result);
    if (result.allowed) {
      if (refunds && result.source !== 'bypass') refundWhenDone(req, res, result, units);
      next();
    } else if (handler) {
      // Express 4 and Connect do not catch errors from async middleware.
      try {
        const handled = handler(req, res, next, result);
        if (isPromise(handled)) return handled.then(() => undefined, next);
      } catch (error) {
        next(error);
      }
    } else {
      const violated = result.policies?.filter(p => !p.allowed).map(p => p.name);
      sendTooManyRequests(res, limiter.name, result.retryAfterMs, violated);
    }
    return undefined;
  };

  const fail = (res: Res, next: NextFunction, error: unknown): void => {
    if (isRateLimitCapacityError(error)) {
      if (headers !== false) setSourceHeader(res, 'memory');
      sendReducedCapacity(res, limiter.name, error.retryAfterMs);
    } else {
      next(error);
    }
  };

  const decide = (
    req: Req,
    res: Res,
    next: NextFunction,
    id: unknown,
    units: unknown,
    callLimits: readonly unknown[] | undefined,
  ): void | Promise<void> => {
    let result: RateLimitResult | Promise<RateLimitResult>;
    try {
      let limit = smallestLimit;
      if (callLimits !== undefined) {
        for (const value of callLimits) {
          if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
            throw new RateLimitArgumentError(
              `limit() must return a positive whole number, got ${describe(value)}`,
            );
          }
        }
        limit = Math.min(...(callLimits as number[]));
      }
      if (typeof id !== 'string' || id === '') {
        throw new RateLimitArgumentError(
          `key() must return a non-empty string, got ${describe(id)}`,
        );
      }
      if (typeof units !== 'number' || !Number.isSafeInteger(units) || units < 1 || units > limit) {
        throw new RateLimitArgumentError(
          `cost() must return a whole number from 1 to the limit (${limit}), got ${describe(units)}`,
        );
      }
      if (countedBefore(req, id)) {
        warnDoubleCount();
        next();
        return undefined;
      }
      result = limiter.decide(id, units, callLimits as number[] | undefined);
    } catch (error) {
      fail(res, next, error);
      return undefined;
    }
    if (!isPromise(result)) return respond(req, res, next, result, units);
    return result.then(
      settled => respond(req, res, next, settled, units),
      (error: unknown) => fail(res, next, error),
    );
  };

  const withLimit = (
    req: Req,
    res: Res,
    next: NextFunction,
    id: unknown,
    units: unknown,
  ): void | Promise<void> => {
    if (!perRequest) return decide(req, res, next, id, units, undefined);
    let callLimits: unknown[];
    try {
      callLimits = limitFns.map((limitFor, i) => (limitFor ? limitFor(req) : policies[i]!.limit));
    } catch (error) {
      next(error);
      return undefined;
    }
    if (callLimits.some(isPromise)) {
      return Promise.all(callLimits).then(
        resolved => decide(req, res, next, id, units, resolved),
        next,
      );
    }
    return decide(req, res, next, id, units, callLimits);
  };

  const withCost = (req: Req, res: Res, next: NextFunction, id: unknown): void | Promise<void> => {
    let units: unknown;
    try {
      units = typeof cost === 'function' ? cost(req) : cost;
    } catch (error) {
      next(error);
      return undefined;
    }
    if (isPromise(units)) {
      return units.then(resolved => withLimit(req, res, next, id, resolved), next);
    }
    return withLimit(req, res, next, id, units);
  };

  const limit = (req: Req, res: Res, next: NextFunction): void | Promise<void> => {
    let id: unknown;
    try {
      id = keyFor(req);
    } catch (error) {
      next(error);
      return undefined;
    }
    if (isPromise(id)) return id.then(resolved => withCost(req, res, next, resolved), next);
    return withCost(req, res, next, id);
  };

  let served = false;
  // Typed for any Node request so it mounts anywhere; the callbacks above
  // see the Req/Res the options were typed with.
  const middleware = (
    incoming: IncomingMessage,
    response: ServerResponse,
    next: NextFunction,
  ): void | Promise<void> => {
    const req = incoming as Req;
    const res = response as Res;
    if (!served) {
      served = true;
      markServing();
    }
    if (skip === undefined) return limit(req, res, next);
    let skipped: unknown;
    try {
      skipped = skip(req);
    } catch (error) {
      next(error);
      return undefined;
    }
    if (isPromise(skipped)) {
      return skipped.then(value => (value ? next() : limit(req, res, next)), next);
    }
    // Truthy skips, as in express-rate-limit: `skip: () => 1` means skip.
    return skipped ? next() : limit(req, res, next);
  };

  return Object.assign(middleware, {
    limiter,
    reset: (id: string) => limiter.reset(id),
  });
}

function defaultKey<Req extends IncomingMessage>(
  ipv6Subnet: number | false,
  logger: Logger,
): (req: Req) => string {
  let warnedNotIp = false;
  const ipKeyOf = createIpKeyGenerator(ipv6Subnet, value => {
    if (warnedNotIp) return;
    warnedNotIp = true;
    warnWithCode(
      logger,
      'ERR_RRL_KEY_NOT_IP',
      `the default key found no IP address in req.ip ${JSON.stringify(value.slice(0, 64))}, so each such value gets its own limit; check 'trust proxy' and what your proxy writes to X-Forwarded-For, or pass a \`key\` function`,
    );
  });
  const checkProxy = createProxyCheck(logger);
  return req => {
    checkProxy(req);
    return ipKeyOf(req);
  };
}

function isPromise(value: unknown): value is Promise<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

function checkFunction(value: unknown, option: string): void {
  if (value !== undefined && typeof value !== 'function') {
    throw new RateLimitConfigError(`${option} must be a function, got ${describe(value)}`, option);
  }
}
