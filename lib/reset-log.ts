/**
 * Which keys were reset (or refunded) after a given moment, so a Redis answer
 * to a call that started before the reset is not cached or mirrored over it:
 * a per-key epoch, kept only as long as a call can be in flight. Only calls
 * that started before the reset or refund was sent: the answers of later ones
 * arrive in the order Redis ran them (one connection per key), so the last
 * one mirrored is the newest state. Marking those stale too would keep an
 * older answer as the view and lose the newer count (found by an attack: a
 * refund racing a consume, then FLUSHDB, admitted one more than `limit`).
 */
export class ResetLog {
  private seq = 0;
  private readonly resets = new Map<string, { seq: number; at: number }>();

  /** @param horizonMs how long a call can be in flight at most (ms). */
  constructor(private readonly horizonMs: number) {}

  /** A mark to compare later resets against; take it when a call starts. */
  mark(): number {
    return this.seq;
  }

  note(storageKey: string, now: number): void {
    this.seq++;
    // Re-inserted, so the map stays in time order and pruning stops early.
    this.resets.delete(storageKey);
    this.resets.set(storageKey, { seq: this.seq, at: now });
    for (const [key, reset] of this.resets) {
      if (reset.at > now - this.horizonMs) break;
      this.resets.delete(key);
    }
  }

  /** Whether `storageKey` was reset after `mark` was taken. */
  since(storageKey: string, mark: number): boolean {
    if (this.seq === mark) return false;
    const reset = this.resets.get(storageKey);
    return reset !== undefined && reset.seq > mark;
  }
}
