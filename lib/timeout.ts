import { RateLimitTimeoutError } from './errors.js';

/** One call's deadline; `reject` is cleared once the call has settled. */
type Deadline = { at: number; ms: number; reject: ((error: unknown) => void) | undefined };

type Timer = ReturnType<typeof setTimeout>;
type SetTimer = (fn: () => void, ms: number) => Timer;
type ClearTimer = (timer: Timer) => void;

/**
 * Every in-flight deadline on one timer, instead of a setTimeout and a
 * clearTimeout per call: a min-heap by deadline, and one unref'd timer armed
 * for the earliest deadline of a call still in flight. A call that settles
 * only clears its entry; settled entries leave the heap when the timer next
 * fires (or all at once when nothing is in flight), so under steady load the
 * timer wakes about once per timeout, however many calls there are.
 *
 * A deadline never fires early: the timer is armed for at least the time
 * left on the clock, and an entry fires only once the clock has passed it.
 * It fires as late as a setTimeout of its own would (the event loop's
 * delay), plus at most 1 ms of timer rounding.
 */
export class DeadlineQueue {
  private readonly heap: Deadline[] = [];
  private live = 0;
  private timer: Timer | undefined;
  private armedFor = Infinity;

  constructor(
    readonly setTimer: SetTimer,
    private readonly clearTimer: ClearTimer,
    /** Milliseconds on a monotonic clock. */
    private readonly now: () => number,
  ) {}

  /** Calls in flight: added, neither settled nor expired. */
  get pending(): number {
    return this.live;
  }

  /** Entries held (settled ones included) until the timer next fires. */
  get size(): number {
    return this.heap.length;
  }

  /** Calls `reject` with a RateLimitTimeoutError `ms` from now unless cancel() comes first. */
  add(ms: number, reject: (error: unknown) => void): Deadline {
    const entry: Deadline = { at: this.now() + ms, ms, reject };
    this.push(entry);
    this.live++;
    if (entry.at < this.armedFor) this.arm(entry.at, ms);
    return entry;
  }

  /** The call settled in time: its deadline will not fire. */
  cancel(entry: Deadline): void {
    if (entry.reject === undefined) return;
    entry.reject = undefined;
    // Nothing in flight: every entry is settled, forget them all at once.
    if (--this.live === 0) this.heap.length = 0;
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    this.armedFor = Infinity;
    const now = this.now();
    const heap = this.heap;
    while (heap.length > 0) {
      const head = heap[0] as Deadline;
      const reject = head.reject;
      if (reject !== undefined) {
        if (head.at > now) {
          this.arm(head.at, head.at - now);
          return;
        }
        head.reject = undefined;
        this.live--;
        this.pop();
        reject(new RateLimitTimeoutError(head.ms));
      } else {
        this.pop();
      }
    }
  };

  private arm(at: number, delay: number): void {
    if (this.timer !== undefined) this.clearTimer(this.timer);
    this.armedFor = at;
    // Rounded up, so the timer never fires before the clock reaches `at`.
    this.timer = this.setTimer(this.fire, Math.max(1, Math.ceil(delay)));
    // A budget, not work: it must never be what keeps a process alive.
    this.timer.unref?.();
  }

  private push(entry: Deadline): void {
    const heap = this.heap;
    let i = heap.length;
    heap.push(entry);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const above = heap[parent] as Deadline;
      if (above.at <= entry.at) break;
      heap[i] = above;
      i = parent;
    }
    heap[i] = entry;
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop() as Deadline;
    const n = heap.length;
    if (n === 0) return;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      const child =
        right < n && (heap[right] as Deadline).at < (heap[left] as Deadline).at ? right : left;
      const below = heap[child] as Deadline;
      if (below.at >= last.at) break;
      heap[i] = below;
      i = child;
    }
    heap[i] = last;
  }
}

let shared: DeadlineQueue | undefined;

// The global timers and clock are read at call time, never captured at
// import: jest's fake timers replace them, and get a queue of their own.
function deadlines(): DeadlineQueue {
  if (shared === undefined || shared.setTimer !== setTimeout) {
    shared = new DeadlineQueue(setTimeout, clearTimeout, () => performance.now());
  }
  return shared;
}

/**
 * Rejects with RateLimitTimeoutError if `promise` has not settled within
 * `ms`. ioredis commands cannot be cancelled, so the command may still land
 * in Redis later; callers treat that as over-counting, the safe side.
 */
export function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  const queue = deadlines();
  return new Promise<T>((resolve, reject) => {
    const deadline = queue.add(ms, reject);
    promise.then(
      value => {
        queue.cancel(deadline);
        resolve(value);
      },
      (error: unknown) => {
        queue.cancel(deadline);
        reject(error);
      },
    );
  });
}
