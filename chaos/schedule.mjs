// @ts-check
// The seeded part of a chaos run: a PRNG and the fault plan drawn from it.
// The same seed gives the same plan and the same sequence of request choices;
// only the timing of the machine varies between runs.

/**
 * mulberry32: a small, fast 32-bit PRNG, plenty for schedules.
 * @param {number} seed
 * @returns {() => number} uniform in [0, 1)
 */
export function prng(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * @typedef {'kill' | 'stop' | 'scriptFlush' | 'flushdb' | 'evict' | 'jump' | 'reset'} FaultKind
 * @typedef {{ at: number, kind: FaultKind, lastsMs: number, node: number, inst: number,
 *   deltaMs: number, keys: number, jumpAfterMs: number }} Fault
 *   at: ms after the start; lastsMs: how long Redis stays down / frozen /
 *   squeezed; node: which Redis node (cluster); inst: which app instance
 *   (jump, reset); deltaMs: clock jump; keys: how many keys to reset;
 *   jumpAfterMs: for kill and stop, -1 or when, into the outage, instance
 *   `inst` jumps its clock by deltaMs too (skew while Redis is away; only
 *   when jumps are among the kinds).
 */

/** How often each fault is drawn (weights). */
export const FAULT_WEIGHTS = /** @type {const} */ ({
  kill: 3,
  stop: 3,
  scriptFlush: 2,
  flushdb: 2,
  evict: 2,
  jump: 3,
  reset: 2,
});

/**
 * Clock jumps in s. Multiples of 6 s, the least common multiple of the chaos
 * windows (2 s and 3 s): a skewed instance's aligned sliding windows then
 * line up with Redis's, so a jump changes time, not window alignment.
 */
export const JUMPS_S = [6, 12, 30, 60, 90];

/**
 * The fault plan of one run: faults one after another (a fault ends before
 * the next starts), separated by 0.8-3 s of calm, the last ending at least
 * `tailMs` before `durationMs` so the run ends with recovery.
 * @param {() => number} random
 * @param {{ durationMs: number, instances: number, nodes: number, tailMs?: number,
 *   kinds?: FaultKind[] }} options
 * @returns {Fault[]}
 */
export function planFaults(random, { durationMs, instances, nodes, tailMs = 4000, kinds }) {
  const allowed = kinds ?? /** @type {FaultKind[]} */ (Object.keys(FAULT_WEIGHTS));
  if (allowed.length === 0) return [];
  const total = allowed.reduce((n, kind) => n + FAULT_WEIGHTS[kind], 0);
  const pick = () => {
    let x = random() * total;
    for (const kind of allowed) {
      x -= FAULT_WEIGHTS[kind];
      if (x < 0) return kind;
    }
    return /** @type {FaultKind} */ (allowed[allowed.length - 1]);
  };
  /** @type {Fault[]} */
  const faults = [];
  let at = 1500 + Math.floor(random() * 1500);
  for (;;) {
    const kind = pick();
    const lastsMs =
      kind === 'kill' || kind === 'stop'
        ? 300 + Math.floor(random() * 2700)
        : kind === 'evict'
          ? 1000 + Math.floor(random() * 2000)
          : 0;
    if (at + lastsMs + tailMs > durationMs) break;
    const jump = (JUMPS_S[Math.floor(random() * JUMPS_S.length)] ?? 6) * 1000;
    faults.push({
      at,
      kind,
      lastsMs,
      node: Math.floor(random() * nodes),
      inst: Math.floor(random() * instances),
      deltaMs: random() < 0.5 ? -jump : jump,
      keys: 1 + Math.floor(random() * 5),
      jumpAfterMs:
        (kind === 'kill' || kind === 'stop') && allowed.includes('jump') && random() < 0.35
          ? Math.floor(random() * lastsMs)
          : -1,
    });
    at += lastsMs + 800 + Math.floor(random() * 2200);
  }
  return faults;
}
