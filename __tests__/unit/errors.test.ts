import {
  RateLimitArgumentError,
  RateLimitCapacityError,
  RateLimitConfigError,
  RateLimitError,
  RateLimitStoreError,
  RateLimitTimeoutError,
  isRateLimitCapacityError,
  isRateLimitConfigError,
  isRateLimitError,
} from '../../lib/errors.js';

const brand = Symbol.for('resilient-rate-limit.error');

describe('RateLimitError subclasses', () => {
  it.each([
    [
      new RateLimitConfigError('limit must be a positive integer, got 0', 'limit'),
      'RateLimitConfigError',
      'ERR_RRL_CONFIG',
    ],
    [
      new RateLimitArgumentError('key must be a non-empty string'),
      'RateLimitArgumentError',
      'ERR_RRL_ARGUMENT',
    ],
    [new RateLimitCapacityError(1000), 'RateLimitCapacityError', 'ERR_RRL_CAPACITY'],
    [new RateLimitTimeoutError(100), 'RateLimitTimeoutError', 'ERR_RRL_TIMEOUT'],
    [new RateLimitStoreError('could not reset'), 'RateLimitStoreError', 'ERR_RRL_STORE'],
  ])('%s carries its name, code and the package prefix', (error, name, code) => {
    expect(error).toBeInstanceOf(Error);
    expect(error).toBeInstanceOf(RateLimitError);
    expect(error.name).toBe(name);
    expect(error.code).toBe(code);
    expect(error.message.startsWith('resilient-rate-limit: ')).toBe(true);
    expect(isRateLimitError(error)).toBe(true);
  });

  it('RateLimitConfigError records the option it names', () => {
    const error = new RateLimitConfigError('window must be positive, got 0', 'window');
    expect(error.option).toBe('window');
    expect(error.message).toBe('resilient-rate-limit: window must be positive, got 0');
  });

  it('RateLimitCapacityError records how long to wait', () => {
    expect(new RateLimitCapacityError(1234).retryAfterMs).toBe(1234);
  });

  it('RateLimitTimeoutError names the budget it exceeded', () => {
    expect(new RateLimitTimeoutError(250).message).toContain('250 ms');
  });

  it('RateLimitStoreError keeps its cause', () => {
    const cause = new Error('ECONNREFUSED');
    expect(new RateLimitStoreError('could not reset', { cause }).cause).toBe(cause);
    expect(new RateLimitStoreError('could not reset').cause).toBeUndefined();
  });
});

describe('isRateLimitError', () => {
  it.each([
    ['a plain Error', new Error('x')],
    ['null', null],
    ['undefined', undefined],
    ['a string', 'ERR_RRL_CONFIG'],
    ['a look-alike without the brand', { code: 'ERR_RRL_CONFIG', name: 'RateLimitConfigError' }],
    ['an object with a false brand', { [brand]: false, code: 'ERR_RRL_CONFIG' }],
  ])('rejects %s', (_label, value) => {
    expect(isRateLimitError(value)).toBe(false);
    expect(isRateLimitConfigError(value)).toBe(false);
    expect(isRateLimitCapacityError(value)).toBe(false);
  });

  it('accepts an error branded by another copy of the package', () => {
    const foreign = Object.assign(new Error('x'), { [brand]: true, code: 'ERR_RRL_CONFIG' });
    expect(isRateLimitError(foreign)).toBe(true);
    expect(isRateLimitConfigError(foreign)).toBe(true);
    expect(isRateLimitCapacityError(foreign)).toBe(false);
  });
});

describe('isRateLimitConfigError', () => {
  it('accepts only config errors', () => {
    expect(isRateLimitConfigError(new RateLimitConfigError('x', 'limit'))).toBe(true);
    expect(isRateLimitConfigError(new RateLimitCapacityError(1))).toBe(false);
    expect(isRateLimitConfigError(new RateLimitArgumentError('x'))).toBe(false);
    expect(isRateLimitConfigError(new RateLimitTimeoutError(1))).toBe(false);
  });
});

describe('isRateLimitCapacityError', () => {
  it('accepts only capacity errors', () => {
    expect(isRateLimitCapacityError(new RateLimitCapacityError(1))).toBe(true);
    expect(isRateLimitCapacityError(new RateLimitConfigError('x', 'limit'))).toBe(false);
    expect(isRateLimitCapacityError(new RateLimitStoreError('x'))).toBe(false);
  });
});
