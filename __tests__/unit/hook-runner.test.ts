import type { RateLimitHookError } from '../../lib/errors.js';
import { HookRunner } from '../../lib/hook-runner.js';

function runner(report: (error: RateLimitHookError) => void = () => undefined) {
  const errors: string[] = [];
  const logger = {
    warn: () => undefined,
    info: () => undefined,
    error: (m: string) => errors.push(m),
  };
  return { hooks: new HookRunner(report, logger), errors };
}

describe('HookRunner', () => {
  it('returns the value of a hook that does not throw', () => {
    expect(runner().hooks.call('h', () => 42)).toBe(42);
  });

  it('reports a throw once as a RateLimitHookError naming the hook and keeping the cause', () => {
    const reports: RateLimitHookError[] = [];
    const { hooks } = runner(error => reports.push(error));
    const cause = new Error('x');
    expect(
      hooks.call('metrics.decision', () => {
        throw cause;
      }),
    ).toBeUndefined();
    expect(reports).toHaveLength(1);
    expect(reports[0]?.code).toBe('ERR_RRL_HOOK');
    expect(reports[0]?.hook).toBe('metrics.decision');
    expect(reports[0]?.cause).toBe(cause);
  });

  it('runs deferred hooks after the current synchronous work, never on the caller stack', async () => {
    const { hooks } = runner();
    const order: string[] = [];
    hooks.defer('listener', () => {
      order.push('hook');
      throw new Error('ignored');
    });
    order.push('caller');
    await Promise.resolve();
    expect(order).toEqual(['caller', 'hook']);
  });

  it('logs a report that itself throws once per hook, then stays quiet', () => {
    const { hooks, errors } = runner(() => {
      throw new Error('report failed');
    });
    for (let i = 0; i < 3; i++)
      hooks.call('fallback listener', () => {
        throw new Error('x');
      });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain('fallback listener');
  });

  it('turns a rejection it is handed into a report', async () => {
    const reports: RateLimitHookError[] = [];
    const { hooks } = runner(error => reports.push(error));
    await Promise.reject(new Error('late')).catch(hooks.caught('reconciliation'));
    expect(reports.map(r => r.hook)).toEqual(['reconciliation']);
  });
});
