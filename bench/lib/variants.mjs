// @ts-check
// The server variants the benches know, shared by the driver and the server.
export const VARIANTS = [
  'bare',
  'bare-aa',
  'bare-headers',
  'rrl-memory',
  'rrl-memory-noheaders',
  'rrl-redis-readme',
  'rrl-redis-readme-aa',
  'rrl-redis',
  'rrl-redis-plain',
  'rrl-share-redis',
  'rrl-breaker-open',
  'erl-memory',
  'erl-redis',
  'rlf-memory',
  'rlf-redis',
];

// `npm run bench` without --variants: every figure issue #16 asks for, in
// about 7 minutes of HTTP rounds (the others stay available by name).
export const DEFAULT_VARIANTS = [
  'bare',
  'bare-aa',
  'rrl-redis-readme',
  'rrl-redis-readme-aa',
  'rrl-redis',
  'rrl-redis-plain',
  'rlf-redis',
  'erl-redis',
  'rrl-memory',
  'rlf-memory',
  'erl-memory',
];

/** Decides in the live redis-server (its Redis CPU per decision is reported). */
export const usesRedis = (/** @type {string} */ variant) => variant.includes('redis');
/** Needs a Redis port: the live one, or for rrl-breaker-open a dead one. */
export const needsRedisPort = (/** @type {string} */ variant) =>
  usesRedis(variant) || variant === 'rrl-breaker-open';
