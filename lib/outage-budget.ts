/**
 * What one instance may admit per key per window while Redis is down.
 *
 * - `fallbackLimit` a number: that number (the operator chose it).
 * - `'share'`: `ceil(limit / liveInstances)`, never below 1. With N live
 *   instances behind a round-robin balancer, one key gets at most
 *   `N × ceil(limit / N) ≤ limit + N − 1` over a window the outage covers,
 *   instead of `N × limit`.
 *
 * Weight 1/N rather than "this instance's share of recent admissions": 1/N
 * needs nothing but the live count the registry already reads, while the
 * admissions share would need per-rule admission counts published to Redis
 * by every instance every second and summed by every other one, and it goes
 * stale exactly when traffic moves (an instance dies, the balancer
 * reshuffles). See the README, "A fleet-wide outage budget".
 *
 * One function for the whole package so that per-policy limits can be
 * computed the same way: call it once per policy with that policy's limit.
 *
 * @param limit the rule's (or policy's) limit in Redis, cost units per window
 * @param fallbackLimit the `fallbackLimit` option: a number, `'share'`, or
 *   `undefined` for the default (`limit`)
 * @param liveInstances instances seen in Redis within the horizon, this one
 *   included; anything below 1 (not read yet) counts as 1
 * @returns cost units per key per window this instance admits from memory
 */
export function outageBudget(
  limit: number,
  fallbackLimit: number | 'share' | undefined,
  liveInstances: number,
): number {
  if (fallbackLimit === undefined) return limit;
  if (fallbackLimit !== 'share') return fallbackLimit;
  const instances = liveInstances >= 1 ? Math.floor(liveInstances) : 1;
  return Math.max(1, Math.ceil(limit / instances));
}
