/** Where time comes from. Inject one in tests instead of sleeping. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

// Reads Date.now lazily on each call, so jest fake timers move it too.
export const systemClock: Clock = { now: () => Date.now() };
