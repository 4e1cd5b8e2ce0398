import { RateLimitTimeoutError } from '../../lib/errors.js';
import { DeadlineQueue, withTimeout } from '../../lib/timeout.js';

/**
 * A manual clock and timer for DeadlineQueue: `advance(ms)` moves the clock
 * and runs the timer if it is due, like an event loop with no delay.
 */
class ManualTimers {
  now = 0;
  armed: { at: number; fn: () => void; unrefed: boolean } | undefined;
  arms = 0;

  readonly queue = new DeadlineQueue(
    (fn, ms) => {
      const timer = { at: this.now + ms, fn, unrefed: false };
      this.armed = timer;
      this.arms++;
      return { unref: () => (timer.unrefed = true) } as unknown as ReturnType<typeof setTimeout>;
    },
    () => (this.armed = undefined),
    () => this.now,
  );

  advance(ms: number): void {
    const end = this.now + ms;
    while (this.armed && this.armed.at <= end) {
      const timer = this.armed;
      this.armed = undefined;
      this.now = Math.max(this.now, timer.at);
      timer.fn();
    }
    this.now = end;
  }
}

describe('DeadlineQueue', () => {
  it('fires each of many concurrent deadlines once, never early and within 1 ms of it', () => {
    const timers = new ManualTimers();
    const fired = new Map<number, number>();
    const budgets = Array.from({ length: 500 }, (_, i) => 1 + ((i * 7919) % 250) + (i % 3) / 3);
    budgets.forEach((ms, i) =>
      timers.queue.add(ms, error => {
        expect(error).toBeInstanceOf(RateLimitTimeoutError);
        expect(fired.has(i)).toBe(false);
        fired.set(i, timers.now);
      }),
    );
    expect(timers.queue.pending).toBe(500);
    for (let t = 0; t < 300; t++) timers.advance(1);
    expect(fired.size).toBe(500);
    budgets.forEach((ms, i) => {
      const at = fired.get(i) as number;
      expect(at).toBeGreaterThanOrEqual(ms);
      expect(at).toBeLessThanOrEqual(ms + 1);
    });
    expect(timers.queue.pending).toBe(0);
    expect(timers.queue.lanesKept).toBe(0);
  });

  it('fires exactly at the deadline when the clock jumps past it', () => {
    const timers = new ManualTimers();
    const reject = jest.fn();
    timers.queue.add(100, reject);
    timers.advance(99);
    expect(reject).not.toHaveBeenCalled();
    timers.advance(1);
    expect(reject).toHaveBeenCalledTimes(1);
    expect((reject.mock.calls[0] as unknown[])[0]).toMatchObject({
      message: 'resilient-rate-limit: Redis did not answer within 100 ms',
    });
  });

  it('never fires a cancelled deadline', () => {
    const timers = new ManualTimers();
    const rejects = Array.from({ length: 10 }, () => jest.fn());
    const entries = rejects.map((reject, i) => timers.queue.add(50 + i, reject));
    entries.forEach((entry, i) => {
      if (i % 2 === 0) timers.queue.cancel(entry);
    });
    timers.queue.cancel(entries[0]!); // twice: no effect
    expect(timers.queue.pending).toBe(5);
    timers.advance(100);
    rejects.forEach((reject, i) => expect(reject).toHaveBeenCalledTimes(i % 2 === 0 ? 0 : 1));
    expect(timers.queue.pending).toBe(0);
  });

  it('cancels any entry of a lane, first, middle or last, and keeps the others in order', () => {
    const timers = new ManualTimers();
    const fired: number[] = [];
    const entries = Array.from({ length: 6 }, (_, i) => {
      timers.advance(1);
      return timers.queue.add(100, () => fired.push(i));
    });
    for (const i of [0, 3, 5]) timers.queue.cancel(entries[i]!);
    // Added behind a cancelled last entry: still in the lane.
    timers.queue.add(100, () => fired.push(6));
    timers.advance(200);
    expect(fired).toEqual([1, 2, 4, 6]);
    expect(timers.queue.lanesKept).toBe(0);
  });

  it('keeps one timer for steady traffic, rearmed about once per timeout, not once per call', () => {
    const timers = new ManualTimers();
    const rejected = jest.fn();
    let inFlight: Array<ReturnType<DeadlineQueue['add']>> = [];
    // 10 calls per ms for 1 s, each answered 2 ms later, timeout 100 ms.
    for (let t = 0; t < 1000; t++) {
      const answered = inFlight.filter((_, i) => i < inFlight.length - 20);
      for (const entry of answered) timers.queue.cancel(entry);
      inFlight = inFlight.slice(answered.length);
      for (let k = 0; k < 10; k++) inFlight.push(timers.queue.add(100, rejected));
      timers.advance(1);
    }
    expect(rejected).not.toHaveBeenCalled();
    expect(timers.arms).toBeLessThanOrEqual(15);
    expect(timers.queue.pending).toBe(inFlight.length);
  });

  it('treats a budget below 1 ms, past the timer maximum or not a number as 1 ms, as setTimeout does', () => {
    const timers = new ManualTimers();
    const rejects = [0, 0.5, Number.NaN, Infinity, 2 ** 31].map(ms => {
      const reject = jest.fn();
      timers.queue.add(ms, reject);
      return reject;
    });
    timers.advance(1);
    for (const reject of rejects) expect(reject).toHaveBeenCalledTimes(1);
    expect(timers.queue.pending).toBe(0);
  });

  it('rearms for a shorter deadline added after a longer one', () => {
    const timers = new ManualTimers();
    const long = jest.fn();
    const short = jest.fn();
    timers.queue.add(1000, long);
    timers.queue.add(10, short);
    timers.advance(10);
    expect(short).toHaveBeenCalledTimes(1);
    expect(long).not.toHaveBeenCalled();
    timers.advance(990);
    expect(long).toHaveBeenCalledTimes(1);
  });

  it('unrefs its timer, so a pending deadline never keeps the process alive', () => {
    const timers = new ManualTimers();
    timers.queue.add(100, jest.fn());
    expect(timers.armed?.unrefed).toBe(true);

    const real: Array<ReturnType<typeof setTimeout>> = [];
    const queue = new DeadlineQueue(
      (fn, ms) => {
        const timer = setTimeout(fn, ms);
        real.push(timer);
        return timer;
      },
      clearTimeout,
      () => performance.now(),
    );
    const entry = queue.add(60_000, jest.fn());
    expect(real).toHaveLength(1);
    expect(real[0]!.hasRef()).toBe(false);
    queue.cancel(entry);
    clearTimeout(real[0]);
  });
});

describe('withTimeout', () => {
  afterEach(() => {
    jest.useRealTimers();
  });

  it('rejects with RateLimitTimeoutError once ms have passed, not before', async () => {
    jest.useFakeTimers();
    const settled = jest.fn();
    const call = withTimeout(new Promise(() => undefined), 100).catch((error: unknown) => {
      settled(error);
    });
    await jest.advanceTimersByTimeAsync(99);
    expect(settled).not.toHaveBeenCalled();
    await jest.advanceTimersByTimeAsync(1);
    await call;
    expect(settled).toHaveBeenCalledWith(expect.any(RateLimitTimeoutError));
  });

  it('passes a value or an error through when the call settles in time', async () => {
    jest.useFakeTimers();
    await expect(withTimeout(Promise.resolve(7), 100)).resolves.toBe(7);
    const error = new Error('ECONNRESET');
    await expect(withTimeout(Promise.reject(error), 100)).rejects.toBe(error);
    // Nothing left to fire.
    await jest.advanceTimersByTimeAsync(200);
  });

  it('bounds each of 200 concurrent calls with mixed budgets by its own budget', async () => {
    jest.useFakeTimers();
    const start = performance.now();
    const ended: number[] = [];
    const calls = Array.from({ length: 200 }, (_, i) => {
      const ms = 20 + (i % 50);
      // Every third call answers in time, after half its budget.
      const answer =
        i % 3 === 0
          ? new Promise<string>(resolve => setTimeout(() => resolve('ok'), ms / 2))
          : new Promise<string>(() => undefined);
      return withTimeout(answer, ms).then(
        value => {
          ended[i] = performance.now() - start;
          return value;
        },
        (error: unknown) => {
          ended[i] = performance.now() - start;
          expect(error).toBeInstanceOf(RateLimitTimeoutError);
          return 'timeout';
        },
      );
    });
    await jest.advanceTimersByTimeAsync(100);
    const results = await Promise.all(calls);
    results.forEach((result, i) => {
      const ms = 20 + (i % 50);
      expect(result).toBe(i % 3 === 0 ? 'ok' : 'timeout');
      if (result === 'timeout') {
        expect(ended[i]).toBeGreaterThanOrEqual(ms);
        expect(ended[i]).toBeLessThanOrEqual(ms + 1);
      }
    });
  });

  it('keeps working across a switch between fake and real timers', async () => {
    jest.useFakeTimers();
    const fake = withTimeout(new Promise(() => undefined), 50);
    await jest.advanceTimersByTimeAsync(50);
    await expect(fake).rejects.toBeInstanceOf(RateLimitTimeoutError);
    jest.useRealTimers();
    await expect(withTimeout(new Promise(() => undefined), 5)).rejects.toBeInstanceOf(
      RateLimitTimeoutError,
    );
    await expect(withTimeout(Promise.resolve('real'), 5)).resolves.toBe('real');
  });
});
