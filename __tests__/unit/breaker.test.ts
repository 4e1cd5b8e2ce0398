import {
  BrokenCircuitError,
  CircuitState,
  ConsecutiveBreaker,
  circuitBreaker,
  handleAll,
  type CircuitBreakerPolicy,
} from 'cockatiel';
import fc from 'fast-check';
import { StoreBreaker } from '../../lib/breaker.js';

const THRESHOLD = 3;
const HALF_OPEN_AFTER = 1000;

const newPolicy = (): CircuitBreakerPolicy =>
  circuitBreaker(handleAll, {
    halfOpenAfter: HALF_OPEN_AFTER,
    breaker: new ConsecutiveBreaker(THRESHOLD),
  });
/** A breaker as BreakerRegistry builds one: its own policy, closed calls made directly. */
const ownBreaker = (policy = newPolicy()): StoreBreaker =>
  new StoreBreaker(policy, HALF_OPEN_AFTER, () => true, true);

const ok = (): Promise<string> => Promise.resolve('ok');
const fail = (): Promise<never> => Promise.reject(new Error('down'));

async function openBreaker(breaker: StoreBreaker): Promise<void> {
  for (let i = 0; i < THRESHOLD; i++) await breaker.execute(fail).catch(() => undefined);
  expect(breaker.state).toBe('open');
}

describe('StoreBreaker.execute on its own policy', () => {
  afterEach(() => {
    jest.useRealTimers();
  });

  it('calls Redis directly while closed, passing values and errors through', async () => {
    const policy = newPolicy();
    const execute = jest.spyOn(policy, 'execute');
    const breaker = ownBreaker(policy);
    await expect(breaker.execute(ok)).resolves.toBe('ok');
    const error = new Error('ECONNRESET');
    await expect(breaker.execute(() => Promise.reject(error))).rejects.toBe(error);
    expect(execute).not.toHaveBeenCalled();
    expect(policy.lastFailure).toEqual({ error });
  });

  it(`opens after ${THRESHOLD} consecutive failures, once, and a success in between resets the count`, async () => {
    const policy = newPolicy();
    const breaks = jest.fn();
    policy.onBreak(breaks);
    const breaker = ownBreaker(policy);
    await breaker.execute(fail).catch(() => undefined);
    await breaker.execute(fail).catch(() => undefined);
    await breaker.execute(ok);
    await breaker.execute(fail).catch(() => undefined);
    await breaker.execute(fail).catch(() => undefined);
    expect(breaker.state).toBe('closed');
    await breaker.execute(fail).catch(() => undefined);
    expect(breaker.state).toBe('open');
    expect(breaks).toHaveBeenCalledTimes(1);
  });

  it('counts a call that throws before returning a promise as a failure', async () => {
    const breaker = ownBreaker();
    const thrown = new Error('sync');
    for (let i = 0; i < THRESHOLD; i++) {
      await expect(
        breaker.execute(() => {
          throw thrown;
        }),
      ).rejects.toBe(thrown);
    }
    expect(breaker.state).toBe('open');
  });

  it('opens once when many concurrent calls fail together', async () => {
    const policy = newPolicy();
    const breaks = jest.fn();
    policy.onBreak(breaks);
    const breaker = ownBreaker(policy);
    await Promise.all(Array.from({ length: 20 }, () => breaker.execute(fail).catch(() => 0)));
    expect(breaker.state).toBe('open');
    expect(breaks).toHaveBeenCalledTimes(1);
  });

  it('short-circuits while open without calling Redis', async () => {
    const breaker = ownBreaker();
    await openBreaker(breaker);
    const call = jest.fn(ok);
    await expect(breaker.execute(call)).rejects.toBeInstanceOf(BrokenCircuitError);
    expect(call).not.toHaveBeenCalled();
  });

  it('admits exactly one probe when half-open, and closes when it succeeds', async () => {
    jest.useFakeTimers();
    const breaker = ownBreaker();
    await openBreaker(breaker);
    jest.advanceTimersByTime(HALF_OPEN_AFTER);
    let answer!: (value: string) => void;
    let calls = 0;
    const probe = jest.fn((): Promise<string> =>
      ++calls === 1 ? new Promise<string>(resolve => (answer = resolve)) : Promise.resolve('after'),
    );
    const first = breaker.execute(probe);
    expect(breaker.state).toBe('half-open');
    const others = Array.from({ length: 5 }, () => breaker.execute(probe));
    await jest.advanceTimersByTimeAsync(0);
    expect(probe).toHaveBeenCalledTimes(1);
    answer('probe');
    await expect(first).resolves.toBe('probe');
    expect(breaker.state).toBe('closed');
    // The calls that waited for the probe run afterwards, on the closed breaker.
    await expect(Promise.all(others)).resolves.toEqual(Array(5).fill('after'));
    expect(probe).toHaveBeenCalledTimes(6);
  });

  it('reopens when the half-open probe fails', async () => {
    jest.useFakeTimers();
    const policy = newPolicy();
    const breaks = jest.fn();
    policy.onBreak(breaks);
    const breaker = ownBreaker(policy);
    await openBreaker(breaker);
    jest.advanceTimersByTime(HALF_OPEN_AFTER);
    await expect(breaker.execute(fail)).rejects.toThrow('down');
    expect(breaker.state).toBe('open');
    expect(breaks).toHaveBeenCalledTimes(2);
    await expect(breaker.execute(ok)).rejects.toBeInstanceOf(BrokenCircuitError);
  });

  it('goes through cockatiel when someone listens to onSuccess/onFailure', async () => {
    const policy = newPolicy();
    const successes = jest.fn();
    policy.onSuccess(successes);
    const execute = jest.spyOn(policy, 'execute');
    await ownBreaker(policy).execute(ok);
    expect(execute).toHaveBeenCalledTimes(1);
    expect(successes).toHaveBeenCalledTimes(1);
  });

  it('leaves a passed-in policy to cockatiel', async () => {
    const policy = newPolicy();
    const execute = jest.spyOn(policy, 'execute');
    await new StoreBreaker(policy, undefined).execute(ok);
    expect(execute).toHaveBeenCalledTimes(1);
  });

  it('ends in the same state as cockatiel for any sequence of outcomes', async () => {
    type Step = { outcome: 'ok' | 'fail'; waitMs: number };
    const step = fc.record({
      outcome: fc.constantFrom<'ok' | 'fail'>('ok', 'fail'),
      waitMs: fc.constantFrom(0, 0, 0, HALF_OPEN_AFTER),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(step, { maxLength: 30 }), async (steps: Step[]) => {
        jest.useFakeTimers();
        try {
          const ours = ownBreaker();
          const theirs = newPolicy();
          for (const { outcome, waitMs } of steps) {
            jest.advanceTimersByTime(waitMs);
            const fn = outcome === 'ok' ? ok : fail;
            const a = await ours.execute(fn).then(
              v => v,
              (e: unknown) => (e instanceof BrokenCircuitError ? 'broken' : 'failed'),
            );
            const b = await theirs.execute(fn).then(
              v => v,
              (e: unknown) => (e instanceof BrokenCircuitError ? 'broken' : 'failed'),
            );
            expect(a).toBe(b);
            expect(ours.policy.state).toBe(theirs.state);
          }
          expect(ours.policy.state === CircuitState.Closed).toBe(
            theirs.state === CircuitState.Closed,
          );
        } finally {
          jest.useRealTimers();
        }
      }),
      { numRuns: 200 },
    );
  });
});
