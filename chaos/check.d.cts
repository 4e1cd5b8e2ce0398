// Types of check.cjs (plain CommonJS, shared by jest and chaos/chaos.mjs).

export type AlgorithmName = 'fixed-window' | 'sliding-window' | 'token-bucket';
export type Rule = { algorithm: AlgorithmName; limit: number; windowMs: number };
/** One decision of one key; s, r and hint (result.resetAt) on the reference clock, in ms. */
export type Hit = {
  s: number;
  r: number;
  inst: number;
  cost: number;
  ok: boolean;
  src: 'redis' | 'memory' | 'bypass' | 'error';
  hint?: number;
};
/** An instance's clock offset changed by deltaMs at `at`. */
export type Jump = { inst: number; at: number; deltaMs: number };
/** Redis may have lost data between `from` and `to`. */
export type Loss = { from: number; to: number; kind: string };
/** A reset() call of the key, sent at s and settled at r. */
export type Reset = { s: number; r: number };
/** Redis (a node of it) was frozen from `from` to `to`. */
export type Freeze = { from: number; to: number };
export type Context = {
  instances: number;
  freezes?: Freeze[];
  timeoutMs: number;
  jumps: Jump[];
  losses: Loss[];
  resets?: Reset[];
};
export type Window = {
  count: number;
  bound: number;
  from: number;
  to: number;
  kind: string;
  redis: number;
  memory: number[];
  allowance: { base: number; loss: number; jump: number };
};
export type KeyResult = { windows: number; worst: Window | undefined; violations: Window[] };

/** Checks one key of one rule against the tight per-window bound. */
export function checkKey(rule: Rule, decisions: Hit[], context: Context): KeyResult;
/** Exceptions and bypasses, and answers slower than timeoutMs + marginMs. */
export function badDecisions(
  decisions: Hit[],
  timeoutMs: number,
  marginMs: number,
): { errors: Hit[]; slow: Hit[] };
/** A key's decisions split at reset() calls (overlapping ones dropped). */
export function epochs(hits: Hit[], resets: Reset[]): Hit[][];
