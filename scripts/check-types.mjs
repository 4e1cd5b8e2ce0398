// Type-checks the fixture apps in __tests__/types against the built package,
// as users compile them: with ioredis 6, with ioredis 5, and in a project
// without Express's types at all. Run after `npm run build`.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const tsc = project => {
  console.log(`tsc -p ${project}`);
  execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', project], {
    stdio: 'inherit',
  });
};

tsc('__tests__/types/tsconfig.json');
tsc('__tests__/types/tsconfig.ioredis5.json');

// No Express types anywhere: a project whose node_modules holds the package
// (copied, so its imports resolve from here) and everything else but Express.
const dir = mkdtempSync(join(tmpdir(), 'rrl-types-'));
try {
  const modules = join(dir, 'node_modules');
  const pkg = join(modules, 'resilient-rate-limit');
  mkdirSync(join(modules, '@types'), { recursive: true });
  cpSync(join(root, 'package.json'), join(pkg, 'package.json'));
  cpSync(join(root, 'dist'), join(pkg, 'dist'), { recursive: true });
  const isExpress = name => /^express/.test(name);
  for (const name of readdirSync(join(root, 'node_modules'))) {
    if (name === '@types' || name === '.bin' || name === 'resilient-rate-limit') continue;
    if (isExpress(name)) continue;
    symlinkSync(join(root, 'node_modules', name), join(modules, name));
  }
  for (const name of readdirSync(join(root, 'node_modules/@types'))) {
    if (isExpress(name)) continue;
    symlinkSync(join(root, 'node_modules/@types', name), join(modules, '@types', name));
  }
  cpSync(join(root, '__tests__/types/node-only.ts'), join(dir, 'node-only.ts'));
  cpSync(join(root, '__tests__/types/tsconfig.json'), join(dir, 'tsconfig.base.json'));
  cpSync(join(root, '__tests__/types/tsconfig.no-express.json'), join(dir, 'tsconfig.json'));
  tsc(join(dir, 'tsconfig.json'));
} finally {
  if (!process.env.KEEP) rmSync(dir, { recursive: true, force: true });
  else console.log(dir);
}
