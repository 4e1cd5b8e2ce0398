import type { Clock } from '../../lib/clock.js';

/** A clock that moves only when told to: inject it instead of sleeping. */
export class ManualClock implements Clock {
  private current: number;

  constructor(start = 1_700_000_000_000) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  /** Moves time forward by `ms`. */
  tick(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`cannot tick by ${ms} ms`);
    this.current += ms;
  }

  /** Sets the time to `ms` (epoch ms). */
  set(ms: number): void {
    this.current = ms;
  }
}
