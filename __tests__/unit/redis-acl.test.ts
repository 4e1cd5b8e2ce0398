import { REDIS_COMMANDS, isPermissionError, redisAclRules } from '../../lib/redis-acl.js';

describe('redisAclRules', () => {
  it('escapes glob characters of the prefix, so it matches only that prefix', () => {
    expect(redisAclRules('a?[b]:')).toContain(' ~a\\?\\[b\\]:* ');
  });

  it('grants no channel and no command beyond REDIS_COMMANDS', () => {
    const rules = redisAclRules().split(' ');
    expect(rules.slice(0, 2)).toEqual(['resetchannels', '-@all']);
    expect(rules.filter(rule => rule.startsWith('+'))).toEqual(REDIS_COMMANDS.map(c => `+${c}`));
  });
});

describe('isPermissionError', () => {
  it.each([
    "NOPERM this user has no permissions to run the 'del' command",
    'NOPERM this user has no permissions to access one of the keys used as arguments',
    "ERR The user executing the script can't run this command or subcommand script: abc, on @user_script:1.",
  ])('recognises %s', message => {
    expect(isPermissionError(new Error(message))).toBe(true);
  });

  it('recognises errors from another realm (no instanceof Error)', () => {
    expect(isPermissionError({ message: 'NOPERM no' })).toBe(true);
  });

  it('ignores other errors', () => {
    expect(isPermissionError(new Error('OOM command not allowed'))).toBe(false);
    expect(isPermissionError(undefined)).toBe(false);
  });
});
