import { execFile } from 'node:child_process';
import { resolve } from 'node:path';

const ROOT = resolve(__dirname, '../..');

/** What a child process printed and how it ended. */
export type ChildOutcome = { code: number | null; stdout: string; stderr: string };

/**
 * Runs `source` (CommonJS JavaScript that may `require('./lib/index.ts')`,
 * relative to the repository root) in a fresh `node` with the TypeScript
 * sources loaded by ts-node, and `env` added to the environment. For what
 * only a new process can have, such as NODE_EXTRA_CA_CERTS, which Node reads
 * once at start-up.
 */
export function runTsChild(
  source: string,
  env: Record<string, string>,
  timeoutMs = 20_000,
): Promise<ChildOutcome> {
  const args = [
    '-r',
    'ts-node/register/transpile-only',
    '-r',
    resolve(__dirname, 'ts-child-register.cjs'),
    '-e',
    source,
  ];
  return new Promise(done => {
    execFile(
      process.execPath,
      args,
      { cwd: ROOT, env: { ...process.env, ...env }, timeout: timeoutMs },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        done({ code, stdout, stderr });
      },
    );
  });
}
