import { redactError, redactUrl, redactingReplacer } from '../../lib/secrets.js';

describe('redactUrl', () => {
  it('replaces the password of a URL and keeps the rest', () => {
    expect(redactUrl('rediss://limiter:s3cret@redis.internal:6380/2')).toBe(
      'rediss://limiter:(redacted)@redis.internal:6380/2',
    );
    expect(redactUrl('redis://:s3cret@127.0.0.1:6379')).not.toContain('s3cret');
  });

  it('leaves strings without a password alone', () => {
    expect(redactUrl('redis://127.0.0.1:6379')).toBe('redis://127.0.0.1:6379');
    expect(redactUrl('user@example.com')).toBe('user@example.com');
  });

  it('redacts a credential-looking string that is no URL', () => {
    expect(redactUrl('limiter:s3cret@host')).not.toContain('s3cret');
  });
});

describe('redactingReplacer', () => {
  it('hides password fields and URL passwords at any depth', () => {
    const text = JSON.stringify(
      { host: 'h', password: 's3cret', nested: { url: 'redis://u:s3cret@h', token: 's3cret' } },
      redactingReplacer,
    );
    expect(text).not.toContain('s3cret');
    expect(text).toContain('"host":"h"');
  });
});

describe('redactError', () => {
  const authError = (name: string, args: string[]) =>
    Object.assign(new Error('WRONGPASS invalid username-password pair'), {
      command: { name, args },
    });

  it('removes the arguments of a failed AUTH or HELLO, keeping the error itself', () => {
    const error = authError('hello', ['3', 'AUTH', 'limiter', 's3cret']);
    expect(redactError(error)).toBe(error);
    expect(error.command).toEqual({ name: 'hello', args: ['(redacted)'] });
    expect(error.message).toContain('WRONGPASS');
  });

  it('follows cause, lastNodeError and previousErrors', () => {
    const inner = authError('auth', ['s3cret']);
    const error = Object.assign(new Error('outer', { cause: inner }), {
      lastNodeError: authError('auth', ['s3cret']),
      previousErrors: [authError('auth', ['s3cret'])],
    });
    redactError(error);
    expect(JSON.stringify([inner, error.lastNodeError, error.previousErrors])).not.toContain(
      's3cret',
    );
  });

  it('keeps the arguments of other commands, which hold no credentials', () => {
    const error = authError('evalsha', ['abc', '1', 'rl:{k}']);
    redactError(error);
    expect(error.command.args).toEqual(['abc', '1', 'rl:{k}']);
  });
});
