import fc from 'fast-check';
import { describe as describeValue, parseDuration } from '../../lib/duration.js';
import { RateLimitConfigError, isRateLimitConfigError } from '../../lib/errors.js';

const UNITS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

function configErrorOf(fn: () => unknown): RateLimitConfigError {
  try {
    fn();
  } catch (error) {
    if (error instanceof RateLimitConfigError) return error;
    throw error;
  }
  throw new Error('expected a RateLimitConfigError, but nothing was thrown');
}

describe('parseDuration', () => {
  it.each([
    [1, 1],
    [500, 500],
    [60_000, 60_000],
    [Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  ])('takes the number %p as whole ms', (value, ms) => {
    expect(parseDuration(value, 'window')).toBe(ms);
  });

  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['15m', 900_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['1.5s', 1_500],
    ['0.5m', 30_000],
    ['2.5h', 9_000_000],
    [' 30s ', 30_000],
    ['30 s', 30_000],
    ['\t15m\n', 900_000],
  ])('parses %p as %p ms', (value, ms) => {
    expect(parseDuration(value, 'window')).toBe(ms);
  });

  // Decimal strings that are a whole number of ms must not be lost to
  // floating-point error (1.1 * 3_600_000 === 3_960_000.0000000005).
  it.each([
    ['1.1h', 3_960_000],
    ['4.1m', 246_000],
    ['0.7d', 60_480_000],
    ['2.3h', 8_280_000],
  ])('parses the decimal %p as exactly %p ms', (value, ms) => {
    expect(parseDuration(value, 'window')).toBe(ms);
  });

  it.each([
    [0, '0'],
    [-1, '-1'],
    [NaN, 'NaN'],
    [Infinity, 'Infinity'],
    [-Infinity, '-Infinity'],
    [1.5, '1.5'],
    [Number.MAX_SAFE_INTEGER + 1, String(Number.MAX_SAFE_INTEGER + 1)],
    ['abc', '"abc"'],
    ['10', '"10"'],
    ['10x', '"10x"'],
    ['', '""'],
    ['-5s', '"-5s"'],
    ['0s', '"0s"'],
    ['0.5ms', '"0.5ms"'],
    ['1e3ms', '"1e3ms"'],
    ['10 sec', '"10 sec"'],
    ['10S', '"10S"'],
    [null, 'null'],
    [undefined, 'undefined'],
    [true, 'true'],
    [{ ms: 5 }, '{"ms":5}'],
    [[1000], '[1000]'],
  ])('rejects %p, naming the option and the value', (value, shown) => {
    const error = configErrorOf(() => parseDuration(value, 'window'));
    expect(error.option).toBe('window');
    expect(error.code).toBe('ERR_RRL_CONFIG');
    expect(error.message).toMatch(/^resilient-rate-limit: window /);
    expect(error.message).toContain(`got ${shown}`);
  });

  it('names whichever option it parses', () => {
    const error = configErrorOf(() => parseDuration('soon', 'breaker.halfOpenAfter'));
    expect(error.option).toBe('breaker.halfOpenAfter');
    expect(error.message).toContain('breaker.halfOpenAfter');
  });

  it('parses any positive integer with any unit as n * unit', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...(Object.keys(UNITS) as Array<keyof typeof UNITS>)),
        fc.integer({ min: 1, max: 100_000_000 }),
        fc.constantFrom('', ' '),
        (unit, n, gap) => {
          expect(parseDuration(`${n}${gap}${unit}`, 'window')).toBe(n * UNITS[unit]);
        },
      ),
    );
  });

  it('parses any positive safe integer as itself', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), n => {
        expect(parseDuration(n, 'window')).toBe(n);
      }),
    );
  });

  it('never throws anything but RateLimitConfigError on arbitrary strings', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.string({ unit: 'binary' }),
          fc.stringMatching(/^[\d.]*\s*[a-z]{0,3}$/),
        ),
        value => {
          try {
            const ms = parseDuration(value, 'window');
            expect(Number.isSafeInteger(ms) && ms > 0).toBe(true);
          } catch (error) {
            expect(isRateLimitConfigError(error)).toBe(true);
            expect((error as RateLimitConfigError).option).toBe('window');
          }
        },
      ),
    );
  });

  it('never throws anything but RateLimitConfigError on arbitrary values', () => {
    fc.assert(
      fc.property(fc.anything(), value => {
        try {
          parseDuration(value, 'window');
        } catch (error) {
          expect(isRateLimitConfigError(error)).toBe(true);
        }
      }),
    );
  });
});

describe('describe', () => {
  it('formats values for error messages without throwing', () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    expect(describeValue('x')).toBe('"x"');
    expect(describeValue(5)).toBe('5');
    expect(describeValue(null)).toBe('null');
    expect(describeValue(undefined)).toBe('undefined');
    expect(describeValue(() => 1)).toBe('a function');
    expect(describeValue(Symbol('s'))).toBe('Symbol(s)');
    expect(describeValue(10n)).toBe('10');
    expect(describeValue({ a: 1 })).toBe('{"a":1}');
    expect(describeValue(circular)).toBe('[object Object]');
  });
});
