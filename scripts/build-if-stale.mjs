// Builds dist only when it is older than what it is built from, so `npm run
// demo` and the soak start in seconds on a checkout that is already built.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const INPUTS = ['lib', 'package.json', 'tsconfig.json', 'tsconfig.build.json', 'scripts/build.mjs'];
const OUTPUTS = ['dist/cjs/index.js', 'dist/esm/index.js'];

const newest = path => {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return Math.max(0, ...readdirSync(path).map(name => newest(join(path, name))));
};

const built = OUTPUTS.every(existsSync) ? Math.min(...OUTPUTS.map(f => statSync(f).mtimeMs)) : 0;
if (built > 0 && built >= Math.max(...INPUTS.map(newest))) {
  console.log('dist is current: skipping the build');
} else {
  console.log(built > 0 ? 'lib changed since the last build: building' : 'building dist');
  execFileSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' });
}
