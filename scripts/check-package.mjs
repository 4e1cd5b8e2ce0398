// Packs the package as npm would and checks the tarball the way consumers see
// it: publint for package.json/exports mistakes, attw for types that resolve
// differently under require and import.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
