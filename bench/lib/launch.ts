import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnPinned, type Pinned } from './processes.js';

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

export interface PinnedGatewayOptions {
  readonly name: string;
  readonly core: number;
  readonly config: string;
  /** Node flags after the bin's own (experiments, profiling); later flags win. */
  readonly extraFlags?: readonly string[];
  /** Watch the config file for changes (the default of `switchyard serve`). */
  readonly watch?: boolean;
  /** More `serve` arguments (`--workers 2`). */
  readonly args?: readonly string[];
}

/** `switchyard serve` on one core, launched as the bin launches it; resolves once it listens. */
export function startPinnedGateway(root: string, opts: PinnedGatewayOptions): Promise<Pinned> {
  return spawnPinned({
    name: opts.name,
    core: opts.core,
    nodeArgs: [
      ...launchFlags(root),
      ...(opts.extraFlags ?? []),
      join(root, 'dist/cli/index.js'),
      'serve',
      '--config',
      opts.config,
      ...(opts.watch === true ? [] : ['--no-watch']),
      ...(opts.args ?? []),
    ],
    ready: /listening on (http:\/\/\S+)/,
    stdout: 'ignore',
  });
}
