import { systemClock } from '../../lib/clock.js';
import { ManualClock } from '../helpers/manual-clock.js';

describe('systemClock', () => {
  afterEach(() => {
    jest.useRealTimers();
  });

  it('reads Date.now lazily, so fake timers move it', () => {
    jest.useFakeTimers({ now: 1_000_000 });
    expect(systemClock.now()).toBe(1_000_000);
    jest.advanceTimersByTime(2_500);
    expect(systemClock.now()).toBe(1_002_500);
    jest.setSystemTime(5);
    expect(systemClock.now()).toBe(5);
  });
});

describe('ManualClock', () => {
  it('starts at a fixed instant and moves only when told to', () => {
    const clock = new ManualClock();
    expect(clock.now()).toBe(1_700_000_000_000);
    clock.tick(1_500);
    expect(clock.now()).toBe(1_700_000_001_500);
    clock.set(42);
    expect(clock.now()).toBe(42);
    expect(new ManualClock(7).now()).toBe(7);
  });

  it('refuses to tick backwards', () => {
    expect(() => new ManualClock().tick(-1)).toThrow(RangeError);
  });
});
