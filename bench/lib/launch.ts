import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The node flags the `switchyard` bin runs with: the ones on its `#!/usr/bin/env -S node ...`
 * line. Benchmarks start the gateway with the same flags, so they measure what a user runs
 * (`npm start` passes them too; test/integration/launch-flags.test.ts keeps the two equal).
 */
export function launchFlags(root: string): string[] {
  const first = readFileSync(join(root, 'dist/cli/index.js'), 'utf8').split('\n', 1)[0] ?? '';
  const m = /^#!\/usr\/bin\/env\s+(?:-S\s+)?node\b(.*)$/.exec(first);
  if (m === null) throw new Error(`dist/cli/index.js: unexpected first line ${first}`);
  return m[1]!.split(/\s+/).filter((a) => a !== '');
}
