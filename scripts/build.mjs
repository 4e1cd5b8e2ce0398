// Builds dist/cjs and dist/esm from lib/ with tsc alone, so no bundler sits
// between the source and what ships. Each half gets a package.json naming its
// module type, which is what lets one .d.ts tree per half satisfy attw.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';

const tsc = args =>
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', ...args], {
    stdio: 'inherit',
  });

rmSync('dist', { recursive: true, force: true });
tsc([
  '-p',
  'tsconfig.build.json',
  '--outDir',
  'dist/cjs',
  '--module',
  'commonjs',
  '--moduleResolution',
  'node10',
]);
tsc([
  '-p',
  'tsconfig.build.json',
  '--outDir',
  'dist/esm',
  '--module',
  'es2022',
  '--moduleResolution',
  'bundler',
]);
for (const [dir, type] of [
  ['dist/cjs', 'commonjs'],
  ['dist/esm', 'module'],
]) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}/package.json`, JSON.stringify({ type }) + '\n');
}
