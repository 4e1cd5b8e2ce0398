// Builds dist/cjs and dist/esm from lib/ with tsc alone, so no bundler sits
// between the source and what ships. Each half gets a package.json naming its
// module type, which is what lets one .d.ts tree per half satisfy attw.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

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

// tsc drops comments from import lines in .d.ts output, including the
// ts-ignore directive that lets framework-types.d.ts import Express's types
// when the app has none (Node's request and response types are used then).
const EXPRESS_IMPORT =
  "import type { Request as ExpressRequest, Response as ExpressResponse } from 'express';";
for (const dir of ['dist/cjs', 'dist/esm']) {
  const file = `${dir}/framework-types.d.ts`;
  const text = readFileSync(file, 'utf8');
  if (!text.includes(EXPRESS_IMPORT)) throw new Error(`${file}: the Express import line changed`);
  writeFileSync(
    file,
    text.replace(EXPRESS_IMPORT, `// @ts-ignore optional: Express's types\n${EXPRESS_IMPORT}`),
  );
}
