import { createHash } from 'node:crypto';
import { ALL_SCRIPTS, DECIDE_SCRIPTS, RESET_SCRIPT } from '../../lib/stores/redis-scripts.js';

const sha1 = (text: string) => createHash('sha1').update(text).digest('hex');
const named = [...Object.entries(DECIDE_SCRIPTS), ['reset', RESET_SCRIPT] as const];

describe('redis scripts', () => {
  it.each(named)('%s: the SHA sent with EVALSHA is the SHA1 of the script text', (_n, script) => {
    expect(script.sha).toBe(sha1(script.source));
    expect(script.sha).toMatch(/^[0-9a-f]{40}$/);
  });

  it.each(named)('%s: is folded (no indentation, blank lines or comments)', (_n, script) => {
    for (const line of script.source.split('\n')) {
      expect(line).toBe(line.trim());
      expect(line).not.toBe('');
      expect(line.startsWith('--')).toBe(false);
    }
  });

  it('loads one script per algorithm family plus reset, all distinct', () => {
    expect(new Set(ALL_SCRIPTS.map(s => s.sha)).size).toBe(4);
  });

  it('reads the same leading arguments in every decision script', () => {
    for (const script of Object.values(DECIDE_SCRIPTS)) {
      // One key: limit, window, now, cost, then the continuity arguments.
      expect(script.source).toContain(
        'local d = step(KEYS[1], tonumber(ARGV[1]), window, now, tonumber(ARGV[4]), ARGV, 4, #ARGV - 4, false)',
      );
      expect(script.source).toContain('local viewed = m > 0');
      // Several keys: now and cost, then one group per key.
      expect(script.source).toContain('local cost = tonumber(ARGV[2])');
    }
  });
});
