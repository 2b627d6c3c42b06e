import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const RESULTS = resolve(fileURLToPath(new URL('../results', import.meta.url)));

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
