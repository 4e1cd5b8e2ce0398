import type { IncomingMessage, ServerResponse } from 'node:http';
// Express's types are optional: without @types/express this import resolves
// to `any` (the comment silences "cannot find module"), and the defaults
// below fall back to Node's own request and response.
// eslint-disable-next-line @typescript-eslint/ban-ts-comment
// @ts-ignore
import type { Request as ExpressRequest, Response as ExpressResponse } from 'express';
import type { RateLimitResult } from './types.js';

// Whether T is `any`. The usual `0 extends 1 & T` does not work here: an
// unresolved import is TypeScript's error type, which turns any conditional
// it is the checked type of into `any`. Boxed, it is compared like `any`:
// assignable to an object with a member no real type has.
declare const noRealTypeHasThis: unique symbol;
type IsAny<T> = { value: T } extends { value: { [noRealTypeHasThis]: true } } ? true : false;

/**
 * The request type `key`, `skip`, `cost` and `handler` receive when no type
 * argument is given: Express's `Request` when the app has Express's types,
 * else `IncomingMessage`. Connect and `node:http` apps that also have
 * Express's types installed pass their own: `rateLimit<IncomingMessage>({ ... })`.
 */
export type DefaultRequest = IsAny<ExpressRequest> extends true ? IncomingMessage : ExpressRequest;

/** The response type `handler` receives: Express's `Response` when available. */
export type DefaultResponse =
  IsAny<ExpressResponse> extends true ? ServerResponse : ExpressResponse;

// `req.rateLimit` on Express's Request. Express's types build their Request
// on this global interface, meant for merging (as passport does for
// `req.user`); without Express's types it merges into nothing anyone uses.
declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Request {
      /** The decision of the last resilient-rate-limit middleware this request passed. */
      rateLimit?: RateLimitResult;
    }
  }
}
