// `npm audit --omit=dev` for CI: fails on any advisory against what users
// install (the runtime dependencies). The audit needs the registry's advisory
// endpoint; where that cannot be reached (an offline or proxied CI machine
// that only mirrors packages) this says so loudly and passes, unless
// RRL_REQUIRE_AUDIT=1, so a network limit is never mistaken for a clean audit
// nor blocks the rest of CI. Advisories accepted on purpose are listed in
// README "Security"; none are today.
import { spawnSync } from 'node:child_process';

const run = spawnSync('npm', ['audit', '--omit=dev', '--json'], {
  encoding: 'utf8',
  timeout: 120_000,
});
let report;
try {
  report = JSON.parse(run.stdout);
} catch {
  report = undefined;
}

if (report?.metadata?.vulnerabilities) {
  const counts = report.metadata.vulnerabilities;
  // npm 7+ reports `total` beside the per-severity counts.
  const total = counts.total ?? Object.values(counts).reduce((sum, n) => sum + Number(n), 0);
  if (total === 0) {
    console.log(
      `npm audit --omit=dev: no advisories in ${report.metadata.dependencies?.prod ?? '?'} runtime dependencies`,
    );
    process.exit(0);
  }
  console.error(`npm audit --omit=dev: ${total} advisories: ${JSON.stringify(counts)}`);
  for (const [name, vulnerability] of Object.entries(report.vulnerabilities ?? {})) {
    console.error(`  ${name} (${vulnerability.severity}): ${vulnerability.range}`);
  }
  process.exit(1);
}

const why = report?.message ?? (run.error?.message || run.stderr.trim() || `exit ${run.status}`);
console.error(
  `::warning::npm audit --omit=dev could not run: the advisory endpoint answered: ${why}`,
);
process.exit(process.env.RRL_REQUIRE_AUDIT === '1' ? 1 : 0);
