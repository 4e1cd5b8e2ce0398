import { describe } from './duration.js';
import { RateLimitArgumentError } from './errors.js';

/** Checks a key passed to consume/get/reset: a non-empty string. */
export function checkKey(key: unknown): asserts key is string {
  if (typeof key !== 'string' || key === '') {
    throw new RateLimitArgumentError(`key must be a non-empty string, got ${describe(key)}`);
  }
}

/** Checks a cost: a whole number of units from 1 to `limit`. */
export function checkCost(cost: unknown, limit: number): asserts cost is number {
  if (typeof cost !== 'number' || !Number.isSafeInteger(cost) || cost < 1 || cost > limit) {
    throw new RateLimitArgumentError(
      `cost must be a whole number from 1 to the limit (${limit}), got ${describe(cost)}`,
    );
  }
}

/** Checks a per-call limit: a positive whole number. */
export function checkLimit(limit: unknown): asserts limit is number {
  if (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1) {
    throw new RateLimitArgumentError(
      `limit must be a positive whole number, got ${describe(limit)}`,
    );
  }
}
