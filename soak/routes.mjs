// The soak's rules, shared by the app instances (soak/app.mjs), which apply
// them, and the driver (soak/soak.mjs), which checks what they admitted.

/** Ms budget of one Redis decision (the package's `timeout`). */
export const TIMEOUT_MS = 100;
/** Opens after 3 consecutive failures, probes Redis again after 1 s. */
export const BREAKER = { threshold: 3, halfOpenAfter: 1000 };
/** Clients per route (`X-Client: c0..c19`): few, so limits are hit constantly. */
export const CLIENTS = 20;
/** Memory store bound of each tracked limiter (far above its 20 keys). */
export const MAX_KEYS = 1000;

/**
 * @typedef {{
 *   id: string, method: 'GET' | 'POST', path: string,
 *   algorithm: 'fixed-window' | 'sliding-window' | 'token-bucket',
 *   limit: number, windowMs: number, failClosed: boolean, fallbackLimit?: number,
 *   maxKeys: number, flood?: boolean,
 * }} Route
 */

/** @type {Route[]} */
export const ROUTES = [
  {
    id: 'tenants',
    method: 'POST',
    path: '/tenants',
    algorithm: 'fixed-window',
    limit: 5,
    windowMs: 10_000,
    failClosed: true,
    fallbackLimit: 3,
    maxKeys: MAX_KEYS,
  },
  {
    id: 'login',
    method: 'POST',
    path: '/login',
    algorithm: 'sliding-window',
    limit: 10,
    windowMs: 5_000,
    failClosed: true,
    fallbackLimit: 5,
    maxKeys: MAX_KEYS,
  },
  {
    id: 'bots',
    method: 'POST',
    path: '/bots',
    algorithm: 'token-bucket',
    limit: 20,
    windowMs: 10_000,
    failClosed: true,
    fallbackLimit: 10,
    maxKeys: MAX_KEYS,
  },
  {
    id: 'api',
    method: 'GET',
    path: '/api',
    algorithm: 'fixed-window',
    limit: 50,
    windowMs: 5_000,
    failClosed: false,
    maxKeys: MAX_KEYS,
  },
  // Every request a new key (`X-Client: anon-<n>`): the memory store fills to
  // maxKeys and evicts for the whole run. Not part of the per-key bound check.
  {
    id: 'search',
    method: 'GET',
    path: '/search',
    algorithm: 'sliding-window',
    limit: 3,
    windowMs: 10_000,
    failClosed: true,
    fallbackLimit: 3,
    maxKeys: 500,
    flood: true,
  },
];

/**
 * Options the app passes to rateLimit() for `route`. `sabotage` deliberately
 * breaks them (the driver still checks against ROUTES) to show the checks fail:
 * `fallback` multiplies fallbackLimit by 100, `limit` adds 1 to every limit.
 * @param {Route} route
 * @param {string} [sabotage]
 */
export function limiterOptions(route, sabotage = '') {
  const options = {
    name: route.id,
    algorithm: route.algorithm,
    limit: route.limit,
    window: route.windowMs,
    failClosed: route.failClosed,
    timeout: TIMEOUT_MS,
    breaker: BREAKER,
  };
  if (route.fallbackLimit !== undefined) options.fallbackLimit = route.fallbackLimit;
  if (sabotage === 'fallback' && route.fallbackLimit !== undefined && !route.flood) {
    options.fallbackLimit = route.fallbackLimit * 100;
  }
  if (sabotage === 'limit') options.limit = route.limit + 1;
  return options;
}
