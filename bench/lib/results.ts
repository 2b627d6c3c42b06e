import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root: the nearest folder above this file with a package.json (bench:journeys runs compiled, from .bench-build/). */
function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('bench/lib/results.ts: no package.json above it');
    dir = up;
  }
  return dir;
}

const RESULTS = join(repoRoot(), 'bench/results');

/**
 * Writes `bench/results/<bench>-latest.json`, the file bench/README.md's tables are made from,
 * unless the run is a `--quick` smoke run: a quick run's numbers are printed, never recorded.
 */
export function writeLatest(bench: string, result: unknown, quick: boolean): void {
  const file = join(RESULTS, `${bench}-latest.json`);
  if (quick) {
    process.stderr.write(`[bench] --quick: ${bench}-latest.json not written\n`);
    return;
  }
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  process.stderr.write(`[bench] wrote bench/results/${bench}-latest.json\n`);
}
