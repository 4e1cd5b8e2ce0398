import { RateLimitTimeoutError } from './errors.js';

/** One call's deadline, linked into the lane of calls with the same budget. */
type Deadline = {
  at: number;
  /** As asked, for the error message. */
  ms: number;
  lane: Lane;
  /** Cleared once the call has settled or timed out. */
  reject: ((error: unknown) => void) | undefined;
  prev: Deadline | undefined;
  next: Deadline | undefined;
};

/** Deadlines of one duration: started in order, so they expire in order. */
type Lane = { head: Deadline | undefined; tail: Deadline | undefined };

type Timer = ReturnType<typeof setTimeout>;
type SetTimer = (fn: () => void, ms: number) => Timer;
type ClearTimer = (timer: Timer) => void;

/** setTimeout's largest delay (2^31 - 1 ms). */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * Every in-flight deadline on one timer, instead of a setTimeout and a
 * clearTimeout per call. Calls with the same budget start in order on a
 * monotonic clock, so they also expire in order: each budget has a FIFO
 * lane (a linked list, O(1) to add and to cancel, like Node's own timer
 * lists), and one unref'd timer is armed for the earliest deadline. A call
 * that settles only unlinks itself; the timer is not touched, so under
 * steady load it wakes about once per timeout, however many calls there are.
 *
 * A deadline never fires early: it is counted from the clock when the call
 * starts (a setTimeout counts from the event loop's cached time, up to one
 * loop iteration earlier), the timer is armed for at least the time left,
 * and an entry fires only once the clock has passed it. It fires as late as
 * a setTimeout of its own would (the event loop's delay), plus at most 1 ms
 * of timer rounding.
 */
export class DeadlineQueue {
  private readonly lanes = new Map<number, Lane>();
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

  /** Budgets (distinct `ms`) with a lane kept. */
  get lanesKept(): number {
    return this.lanes.size;
  }

  /** Calls `reject` with a RateLimitTimeoutError `ms` from now unless cancel() comes first. */
  add(ms: number, reject: (error: unknown) => void): Deadline {
    // As setTimeout treats them: below 1 ms, past its maximum or not a number is 1 ms.
    const budget = ms >= 1 && ms <= MAX_TIMER_MS ? ms : 1;
    const at = this.now() + budget;
    let lane = this.lanes.get(budget);
    if (lane === undefined) {
      lane = { head: undefined, tail: undefined };
      this.lanes.set(budget, lane);
    }
    const entry: Deadline = { at, ms, lane, reject, prev: lane.tail, next: undefined };
    if (lane.tail === undefined) lane.head = entry;
    else lane.tail.next = entry;
    lane.tail = entry;
    this.live++;
    if (at < this.armedFor) this.arm(at, budget);
    return entry;
  }

  /** The call settled in time: its deadline will not fire. */
  cancel(entry: Deadline): void {
    if (entry.reject === undefined) return;
    entry.reject = undefined;
    this.live--;
    this.unlink(entry);
  }

  private readonly fire = (): void => {
    this.timer = undefined;
    this.armedFor = Infinity;
    const now = this.now();
    let next = Infinity;
    for (const [ms, lane] of this.lanes) {
      let head = lane.head;
      while (head !== undefined && head.at <= now) {
        const reject = head.reject as (error: unknown) => void;
        head.reject = undefined;
        this.live--;
        this.unlink(head);
        reject(new RateLimitTimeoutError(head.ms));
        head = lane.head;
      }
      if (head === undefined) this.lanes.delete(ms);
      else if (head.at < next) next = head.at;
    }
    if (next !== Infinity) this.arm(next, next - now);
  };

  private unlink(entry: Deadline): void {
    const { prev, next, lane } = entry;
    if (prev === undefined) lane.head = next;
    else prev.next = next;
    if (next === undefined) lane.tail = prev;
    else next.prev = prev;
    entry.prev = entry.next = undefined;
  }

  private arm(at: number, delay: number): void {
    if (this.timer !== undefined) this.clearTimer(this.timer);
    this.armedFor = at;
    // Rounded up, so the timer never fires before the clock reaches `at`.
    this.timer = this.setTimer(this.fire, Math.max(1, Math.ceil(delay)));
    // A budget, not work: it must never be what keeps a process alive.
    this.timer.unref?.();
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
