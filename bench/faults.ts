import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { FaultScenario, FaultTargetResult } from './faults/scenario.js';

/**
 * bench:faults (issue #13): runs the fault scenarios of bench/faults/ against the built gateway
 * in real processes and judges each target. `npm run bench:faults [-- --quick] [id ...]`.
 * Writes bench/results/faults-latest.json (and a timestamped copy, kept local).
 */
const ROOT = resolve(import.meta.dirname, '..');
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const only = args.filter((a) => !a.startsWith('--'));

/** Every scenario, in run order; each lives in its own module under bench/faults/. */
const SCENARIOS: readonly (() => Promise<FaultScenario>)[] = [
  () => import('./faults/redis-budget.js').then((m) => m.scenario),
  () => import('./faults/retry-budget.js').then((m) => m.scenario),
  () => import('./faults/blackhole.js').then((m) => m.scenario),
  () => import('./faults/malformed.js').then((m) => m.scenario),
  () => import('./faults/abusive-connections.js').then((m) => m.scenario),
  () => import('./faults/oversized-body.js').then((m) => m.scenario),
];

async function main(): Promise<void> {
  const scenarios = await Promise.all(SCENARIOS.map((load) => load()));
  const chosen = only.length === 0 ? scenarios : scenarios.filter((s) => only.includes(s.id));
  if (chosen.length === 0) {
    process.stderr.write(
      `no scenario matches ${only.join(', ')}; known: ${scenarios.map((s) => s.id).join(', ')}\n`,
    );
    process.exit(2);
  }
  const results: { id: string; title: string; targets: readonly FaultTargetResult[] }[] = [];
  for (const [i, s] of chosen.entries()) {
    process.stdout.write(`\n[${i + 1}/${chosen.length}] ${s.title}\n`);
    const targets = await s.run({
      root: ROOT,
      quick,
      log: (line) => process.stdout.write(`  ${line}\n`),
    });
    for (const t of targets)
      process.stdout.write(
        `  ${t.pass ? 'PASS' : 'FAIL'}  ${t.name}: ${t.value} (target ${t.target})\n`,
      );
    results.push({ id: s.id, title: s.title, targets });
  }
  const all = results.flatMap((r) => r.targets);
  const passed = all.filter((t) => t.pass).length;
  process.stdout.write(`\n${passed}/${all.length} targets met\n`);
  const out = {
    bench: 'faults',
    at: new Date().toISOString(),
    node: process.version,
    quick,
    scenarios: results,
    passed,
    total: all.length,
  };
  const dir = join(ROOT, 'bench/results');
  mkdirSync(dir, { recursive: true });
  const text = `${JSON.stringify(out, null, 2)}\n`;
  if (only.length === 0 && !quick) writeFileSync(join(dir, 'faults-latest.json'), text);
  writeFileSync(join(dir, `faults-${out.at.replace(/[:.]/g, '-')}.json`), text);
  process.exitCode = passed === all.length ? 0 : 1;
}

void main();
