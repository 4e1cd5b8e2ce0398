import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import express from 'express';
import type { ErrorRequestHandler, Express, RequestHandler } from 'express';
import express4 from 'express4';
import type { RateLimitResult } from '../../lib/index.js';

/** The servers the middleware is tested under. */
export type AppKind = 'express5' | 'express4' | 'http';
export const APP_KINDS: readonly AppKind[] = ['express5', 'express4', 'http'];

export type Next = (error?: unknown) => void;
/** Connect-style middleware, as `rateLimit()` returns. */
export type Middleware = (req: IncomingMessage, res: ServerResponse, next: Next) => unknown;

export type AppSettings = {
  /** Express's `trust proxy` setting; ignored by the `http` kind, which has no `req.ip`. */
  trustProxy?: boolean | number | string;
};

type LimitedRequest = IncomingMessage & { rateLimit?: RateLimitResult };

/**
 * An app that runs `middlewares` in order, then answers
 * 200 `{ ok: true, rateLimit: req.rateLimit }`; an error passed to `next`
 * answers 500 `{ error: err.message }`. The result can be handed to supertest.
 */
export function createApp(kind: AppKind, ...middlewares: Middleware[]): RequestListener {
  return createAppWith(kind, {}, ...middlewares);
}

/** `createApp` with server settings such as `trust proxy`. */
export function createAppWith(
  kind: AppKind,
  settings: AppSettings,
  ...middlewares: Middleware[]
): RequestListener {
  if (kind === 'http') return createHttpListener(middlewares);
  const app: Express = kind === 'express5' ? express() : express4();
  if (settings.trustProxy !== undefined) app.set('trust proxy', settings.trustProxy);
  for (const middleware of middlewares) app.use(middleware as RequestHandler);
  app.get('/', (req, res) => {
    res.status(200).json({ ok: true, rateLimit: (req as LimitedRequest).rateLimit });
  });
  const onError: ErrorRequestHandler = (error: unknown, _req, res, _next) => {
    res.status(500).json({ error: messageOf(error) });
  };
  app.use(onError);
  return app as unknown as RequestListener;
}

// A bare node:http server: calls each middleware by hand, Connect-style.
function createHttpListener(middlewares: Middleware[]): RequestListener {
  return (req, res) => {
    let index = 0;
    const next: Next = error => {
      if (error !== undefined && error !== null) {
        sendJson(res, 500, { error: messageOf(error) });
        return;
      }
      const middleware = middlewares[index++];
      if (middleware === undefined) {
        sendJson(res, 200, { ok: true, rateLimit: (req as LimitedRequest).rateLimit });
        return;
      }
      try {
        const returned = middleware(req, res, next);
        if (returned instanceof Promise) returned.catch(next);
      } catch (thrown) {
        next(thrown);
      }
    };
    next();
  };
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.end(JSON.stringify(body));
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
