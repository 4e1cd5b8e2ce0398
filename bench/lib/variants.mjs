// @ts-check
// The server variants the benches know, shared by the driver and the server.
export const VARIANTS = [
  'bare',
  'bare-aa',
  'bare-headers',
  'rrl-memory',
  'rrl-memory-noheaders',
  'rrl-redis',
  'rrl-share-redis',
  'rrl-breaker-open',
  'erl-memory',
  'erl-redis',
  'rlf-memory',
  'rlf-redis',
];
