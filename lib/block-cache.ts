import type { RateLimitResult } from './types.js';

type Block = { retryAt: number; until: number; resetAt: number; limit: number };

/**
 * How long a denial is replayed without asking Redis again, in ms. A reset
 * or refund on another instance (or limiter), or a Redis data loss, is seen
 * at most this late.
 */
export const MAX_REPLAY_MS = 1000;

/**
 * Remembers keys Redis denied outright (nothing left for a one-unit request)
 * for up to MAX_REPLAY_MS (or less, until the wait Redis gave them has
 * passed), so a client hammering its limit costs at most one Redis round
 * trip per second instead of one per request. Unless something changed the
 * key in Redis since (a reset, a refund, a lost key), Redis would answer the
 * same (denials consume nothing), so the replayed answer says `redis`.
 * Only one-unit requests are answered from it: a larger one has its own,
 * later wait. Bounded: when full it is cleared, which only costs a round
 * trip per key.
 *
 * A `reset()` on this instance clears the key here (forget()); anything done
 * elsewhere is seen within MAX_REPLAY_MS.
 */
export class BlockCache {
  private readonly blocks = new Map<string, Block>();

  constructor(private readonly maxKeys: number) {}

  get size(): number {
    return this.blocks.size;
  }

  remember(
    storageKey: string,
    result: Pick<RateLimitResult, 'allowed' | 'limit' | 'remaining' | 'resetAt' | 'retryAfterMs'>,
    cost: number,
    now: number,
  ): void {
    if (result.allowed || cost !== 1 || result.remaining !== 0 || result.retryAfterMs <= 0) return;
    if (this.blocks.size >= this.maxKeys) this.blocks.clear();
    const retryAt = now + result.retryAfterMs;
    this.blocks.set(storageKey, {
      retryAt,
      // A sliding window's reset moves at the window edge: trust it until then.
      until: Math.min(retryAt, Math.max(result.resetAt, now + 1), now + MAX_REPLAY_MS),
      resetAt: result.resetAt,
      limit: result.limit,
    });
  }

  /** The cached denial for `storageKey` at `now`, if one holds for a one-unit request. */
  check(storageKey: string, key: string, cost: number, now: number): RateLimitResult | undefined {
    if (cost !== 1) return undefined;
    const block = this.blocks.get(storageKey);
    if (block === undefined) return undefined;
    if (now >= block.until) {
      this.blocks.delete(storageKey);
      return undefined;
    }
    return {
      allowed: false,
      limit: block.limit,
      remaining: 0,
      resetAt: block.resetAt,
      retryAfterMs: block.retryAt - now,
      source: 'redis',
      key,
    };
  }

  /** Discards the cached denial of one key (a reset or refund made it stale). */
  forget(storageKey: string): void {
    this.blocks.delete(storageKey);
  }
}
