import { format } from 'node:util';

/*
 * Loaded by jest for every test file (setupFilesAfterEnv). The package logs
 * through `console` by default, so a test that triggers a warning without
 * passing a logger would print it, and `npm test` would bury real failures
 * under expected warnings. Instead such output fails the test that caused
 * it: pass a logger (helpers/redis.ts `recordingLogger()`) and assert on
 * what it heard.
 */

const LEVELS = ['warn', 'error', 'info'] as const;
let heard: string[] = [];
let spies: jest.SpyInstance[] = [];

beforeEach(() => {
  heard = [];
  spies = LEVELS.map(level =>
    jest.spyOn(console, level).mockImplementation((...args: unknown[]) => {
      heard.push(`console.${level}: ${format(...args)}`);
    }),
  );
});

afterEach(() => {
  for (const spy of spies) spy.mockRestore();
  spies = [];
  const unexpected = heard;
  heard = [];
  if (unexpected.length > 0) {
    throw new Error(
      `unexpected console output; pass a logger to the limiter and assert on it:\n${unexpected.join('\n')}`,
    );
  }
});
