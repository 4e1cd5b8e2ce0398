/** Where time comes from. Inject one in tests instead of sleeping. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /**
   * Optional: milliseconds on a clock that never steps (`performance.now()`).
   * With it, how long ago this instance saw a key in Redis survives a step of
   * the wall clock (NTP, a VM resumed); without it, ages follow `now()`.
   */
  monotonic?(): number;
}

// Reads Date.now and performance.now lazily on each call, so jest fake timers
// move them too.
export const systemClock: Clock = { now: () => Date.now(), monotonic: () => performance.now() };
