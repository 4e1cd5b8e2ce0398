// Packs the package as npm would and checks the tarball the way consumers see
// it: only what users need is in it (the built code, its types, the docs),
// publint for package.json/exports mistakes, attw for types that resolve
// differently under require and import.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Everything a user needs, and nothing else: no sources, tests, source maps
// (their sources do not ship), configs or scripts.
const SHIPPED = [
  /^(package\.json|README\.md|LICENSE|CHANGELOG\.md)$/,
  /^dist\/(cjs|esm)\/package\.json$/,
  /^dist\/(cjs|esm)\/([a-z-]+\/)*[a-z-]+\.(js|d\.ts)$/,
];

const listed = JSON.parse(
  execFileSync('npm', ['pack', '--dry-run', '--json'], { encoding: 'utf8' }),
);
const files = listed[0].files.map(file => file.path);
const extra = files.filter(path => !SHIPPED.some(pattern => pattern.test(path)));
// Every lib module ships in both halves, with its types.
const modules = readdirSync('lib', { recursive: true, encoding: 'utf8' })
  .filter(path => path.endsWith('.ts'))
  .map(path => path.slice(0, -3));
const missing = ['cjs', 'esm'].flatMap(half =>
  modules.flatMap(module =>
    [`dist/${half}/${module}.js`, `dist/${half}/${module}.d.ts`].filter(
      path => !files.includes(path),
    ),
  ),
);
if (extra.length > 0 || missing.length > 0) {
  console.error(
    `npm pack would ship files users do not need: ${JSON.stringify(extra)}; ` +
      `or miss files they do: ${JSON.stringify(missing)}`,
  );
  process.exit(1);
}
console.log(`npm pack: ${files.length} files, all needed`);

const dir = mkdtempSync(join(tmpdir(), 'rrl-pack-'));
try {
  const out = execFileSync('npm', ['pack', '--silent', '--pack-destination', dir], {
    encoding: 'utf8',
  });
  const tarball = join(dir, out.trim().split('\n').pop());
  execFileSync('npx', ['--no-install', 'publint', '--strict', tarball], { stdio: 'inherit' });
  execFileSync('npx', ['--no-install', 'attw', '--profile', 'node16', tarball], {
    stdio: 'inherit',
  });
} finally {
  rmSync(dir, { recursive: true, force: true });
}
