import { RateLimitTimeoutError } from './errors.js';

/**
 * Rejects with RateLimitTimeoutError if `promise` has not settled within
 * `ms`. ioredis commands cannot be cancelled, so the command may still land
 * in Redis later; callers treat that as over-counting, the safe side.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new RateLimitTimeoutError(ms)), ms);
    // A budget, not work: it must never be what keeps a process alive.
    timer.unref?.();
    promise.then(
      value => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
