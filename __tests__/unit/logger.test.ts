import { RateLimitConfigError } from '../../lib/errors.js';
import { toSafeLogger } from '../../lib/logger.js';

describe('toSafeLogger', () => {
  it('fills a logger without info: info is a no-op, error and warn pass through', () => {
    const lines: string[] = [];
    const logger = toSafeLogger({
      warn: (m: string) => lines.push(`warn ${m}`),
      error: (m: string) => lines.push(`error ${m}`),
    });
    logger.info('dropped');
    logger.warn('w');
    logger.error('e');
    expect(lines).toEqual(['warn w', 'error e']);
  });

  it('sends error lines to warn when the logger has no error method', () => {
    const lines: string[] = [];
    toSafeLogger({ warn: (m: string) => lines.push(m) }).error('boom');
    expect(lines).toEqual(['boom']);
  });

  it('swallows a throw from any method', () => {
    const throwing = (): never => {
      throw new Error('logger down');
    };
    const logger = toSafeLogger({ warn: throwing, error: throwing, info: throwing });
    expect(() => logger.warn('a')).not.toThrow();
    expect(() => logger.error('b')).not.toThrow();
    expect(() => logger.info('c')).not.toThrow();
  });

  it.each([
    ['no warn', { error() {}, info() {} }],
    ['error not a function', { warn() {}, error: 'x' }],
    ['null', null],
  ])('rejects a logger with %s', (_label, logger) => {
    expect(() => toSafeLogger(logger)).toThrow(RateLimitConfigError);
  });
});
