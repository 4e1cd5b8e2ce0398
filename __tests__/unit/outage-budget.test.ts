import { outageBudget } from '../../lib/outage-budget.js';
import { RateLimiter } from '../../lib/rate-limiter.js';
import { parseLimiterOptions } from '../../lib/options.js';

describe('outageBudget', () => {
  it('is the limit by default and the number given otherwise, whatever N', () => {
    expect(outageBudget(30, undefined, 3)).toBe(30);
    expect(outageBudget(30, 7, 3)).toBe(7);
    expect(outageBudget(30, 7, 100)).toBe(7);
  });

  it.each([
    [30, 1, 30],
    [30, 3, 10],
    [30, 4, 8],
    [30, 7, 5],
    [3, 10, 1],
    [1, 50, 1],
    [100, 0, 100],
    [100, Number.NaN, 100],
  ])("'share' of %i among %p instances is %i per instance", (limit, n, expected) => {
    expect(outageBudget(limit, 'share', n)).toBe(expected);
  });

  it('keeps N instances together within limit + N - 1 and never below 1 each', () => {
    for (let limit = 1; limit <= 60; limit++) {
      for (let n = 1; n <= 12; n++) {
        const each = outageBudget(limit, 'share', n);
        expect(each).toBeGreaterThanOrEqual(1);
        expect(n * each).toBeLessThanOrEqual(limit + n - 1);
        expect(n * each).toBeGreaterThanOrEqual(limit);
      }
    }
  });
});

describe("fallbackLimit: 'share' options", () => {
  it("accepts 'share' and defaults the instance horizon to 30 s", () => {
    const config = parseLimiterOptions({ limit: 30, window: '1m', fallbackLimit: 'share' });
    expect(config.fallbackLimit).toBe('share');
    expect(config.instanceHorizonMs).toBe(30_000);
    expect(
      parseLimiterOptions({ limit: 1, window: 1, instanceHorizon: '2s' }).instanceHorizonMs,
    ).toBe(2000);
  });

  it('enforces the whole limit without Redis, where there is no fleet to share with', async () => {
    const limiter = new RateLimiter({ limit: 30, window: '1m', fallbackLimit: 'share' });
    expect(limiter.liveInstances).toBeUndefined();
    expect(limiter.fallbackLimit).toBe(30);
    await limiter.close();
  });

  it('does not warn that a share exceeds the limit', async () => {
    const logger = { warn: jest.fn(), error: jest.fn(), info: jest.fn() };
    const limiter = new RateLimiter({
      name: 'share-no-warning',
      limit: 1,
      window: '1m',
      fallbackLimit: 'share',
      logger,
    });
    expect(logger.warn).not.toHaveBeenCalled();
    await limiter.close();
  });
});
