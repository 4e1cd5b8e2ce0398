import { RateLimiter, isRateLimitError } from '../../lib/index.js';
import type { RateLimitMetrics } from '../../lib/metrics.js';
import { freePort } from '../helpers/free-port.js';
import { eventually, failFastClient, uniqueName } from '../helpers/redis.js';

/*
 * User hooks written as `async` functions that reject (found by an attack:
 * an async `fallback` listener, metrics sink or logger ended the process with
 * an unhandled rejection; sync throws were already contained). A rejection
 * is reported like a throw and never changes a decision.
 */

it('async listeners, metrics and logger that reject neither crash the process nor change a decision', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  // A client that never connects: every decision falls back to memory.
  const client = failFastClient(await freePort());
  const rejecting = (what: string) => async () => {
    throw new Error(`async ${what} rejected`);
  };
  const metrics: RateLimitMetrics = {
    attach: () => () => undefined,
    decision: rejecting('metrics.decision'),
    redisLatency: rejecting('metrics.redisLatency'),
    reconciled: rejecting('metrics.reconciled'),
  };
  const limiter = new RateLimiter({
    name: uniqueName('async-hooks'),
    limit: 2,
    window: '1m',
    redis: client,
    metrics,
    logger: {
      warn: rejecting('logger.warn'),
      error: rejecting('logger.error'),
      info: rejecting('logger.info'),
    },
  });
  const reported: unknown[] = [];
  limiter.on('storeError', error => reported.push(error));
  limiter.on('fallback', rejecting('fallback listener'));
  try {
    const allowed = [];
    for (let i = 0; i < 3; i++) allowed.push((await limiter.consume('k')).allowed);
    expect(allowed).toEqual([true, true, false]);
    await eventually(() =>
      ['fallback listener', 'metrics.decision'].every(hook =>
        reported.some(error => isRateLimitError(error) && error.message.includes(hook)),
      ),
    );
    // Past a macrotask, so any rejection left unhandled has been seen.
    await new Promise(resolve => setTimeout(resolve, 20));
    expect(unhandled).toEqual([]);
  } finally {
    process.off('unhandledRejection', onUnhandled);
    await limiter.close();
    client.disconnect();
  }
});
