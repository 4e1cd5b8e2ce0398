import { createHash } from 'node:crypto';
import {
  DECIDE_SCRIPT,
  DECIDE_SHA,
  RECONCILE_SCRIPT,
  RECONCILE_SHA,
} from '../../lib/stores/redis-scripts.js';

const sha1 = (text: string) => createHash('sha1').update(text).digest('hex');

describe('redis scripts', () => {
  it.each([
    ['decide', DECIDE_SCRIPT, DECIDE_SHA],
    ['reconcile', RECONCILE_SCRIPT, RECONCILE_SHA],
  ])('%s: the SHA sent with EVALSHA is the SHA1 of the script text', (_name, script, sha) => {
    expect(sha).toBe(sha1(script));
    expect(sha).toMatch(/^[0-9a-f]{40}$/);
  });

  it.each([
    ['decide', DECIDE_SCRIPT],
    ['reconcile', RECONCILE_SCRIPT],
  ])(
    '%s: is folded (no indentation or blank lines) so the SHA does not depend on layout',
    (_name, script) => {
      for (const line of script.split('\n')) {
        expect(line).toBe(line.trim());
        expect(line).not.toBe('');
      }
    },
  );

  it('reads the same four leading arguments in both scripts', () => {
    for (const script of [DECIDE_SCRIPT, RECONCILE_SCRIPT]) {
      expect(script).toContain('local algo = ARGV[1]');
      expect(script).toContain('local now = tonumber(ARGV[4])');
    }
    expect(DECIDE_SCRIPT).toContain('local cost = tonumber(ARGV[5])');
    expect(RECONCILE_SCRIPT).toContain('local hitsStart = tonumber(ARGV[6])');
  });
});
