// Packs the package as npm would and checks the tarball the way consumers see
// it: only what users need is in it (the built code, its types, the docs),
// publint for package.json/exports mistakes, attw for types that resolve
// differently under require and import.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

// CommonJS require(), ESM named and default imports all give rateLimit
// (the package imports itself by name, through its `exports` map).
const cjs = createRequire(import.meta.url)('resilient-rate-limit');
const esm = await import('resilient-rate-limit');
const entryPoints = {
  'require().rateLimit': cjs.rateLimit,
  'require().default': cjs.default,
  'import { rateLimit }': esm.rateLimit,
  'import rateLimit': esm.default,
};
for (const [how, value] of Object.entries(entryPoints)) {
  if (typeof value !== 'function' || value.name !== 'rateLimit') {
    throw new Error(`${how} is not rateLimit: ${String(value)}`);
  }
}
if (esm.default !== esm.rateLimit || cjs.default !== cjs.rateLimit) {
  throw new Error('the default export is not the rateLimit named export');
}

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
  checkSourceMaps(tarball);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

// Every source map in the tarball names sources that ship with it, so
// `node --enable-source-maps` stack traces point at files that exist.
function checkSourceMaps(tarball) {
  const unpacked = join(dir, 'unpacked');
  execFileSync('mkdir', ['-p', unpacked]);
  execFileSync('tar', ['-xzf', tarball, '-C', unpacked]);
  const root = join(unpacked, 'package');
  const maps = readdirSync(root, { recursive: true }).filter(file => file.endsWith('.map'));
  const missing = [];
  for (const map of maps) {
    const { sources } = JSON.parse(readFileSync(join(root, map), 'utf8'));
    for (const source of sources) {
      const path = resolve(root, dirname(map), source);
      if (!existsSync(path)) missing.push(`${map} -> ${source}`);
    }
  }
  if (missing.length > 0) {
    throw new Error(`source maps name files the package does not ship:\n${missing.join('\n')}`);
  }
  console.log(`${maps.length} source maps, every source shipped`);
}
