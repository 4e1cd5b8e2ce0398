// Three projects so `jest --selectProjects unit` runs without Redis; the
// README's `npm test` runs all of them.
const shared = {
  preset: 'ts-jest',
  testEnvironment: 'node',
  moduleNameMapper: {
    '^(\\.{1,2}/.*)\\.js$': '$1',
    // RRL_IOREDIS=5 runs everything (the package's own URL clients included)
    // on ioredis 5, installed as the alias `ioredis5`; CI runs both.
    ...(process.env.RRL_IOREDIS === '5' ? { '^ioredis(/.*)?$': 'ioredis5$1' } : {}),
  },
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }] },
  // Expected warnings are captured and asserted; anything else printed to
  // console.warn/error/info fails the test that printed it.
  setupFilesAfterEnv: ['<rootDir>/__tests__/helpers/console-guard.ts'],
};

/** @type {import('jest').Config} */
module.exports = {
  projects: [
    { ...shared, displayName: 'unit', testMatch: ['<rootDir>/__tests__/unit/**/*.test.ts'] },
    {
      ...shared,
      displayName: 'integration',
      testMatch: ['<rootDir>/__tests__/integration/**/*.test.ts'],
    },
    { ...shared, displayName: 'fault', testMatch: ['<rootDir>/__tests__/fault/**/*.test.ts'] },
  ],
};
