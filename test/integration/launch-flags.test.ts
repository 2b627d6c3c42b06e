import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { launchFlags } from '../../bench/lib/launch.js';

const ROOT = join(import.meta.dirname, '../..');

describe('the node flags the gateway is launched with', () => {
  const flags = launchFlags(ROOT);

  it('caps the young generation and keeps wasm on its baseline tier, in the bin and npm start', () => {
    expect(flags).toEqual(
      expect.arrayContaining([
        '--max-semi-space-size=8',
        '--no-wasm-dynamic-tiering',
        '--no-wasm-tier-up',
      ]),
    );
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    expect(pkg.scripts['start']).toMatch(
      new RegExp(`^node ${flags.join(' ')} dist/cli/index\\.js serve `),
    );
  });

  it('are flags this node accepts, and size the heap as they say', () => {
    // 8 MB semi-spaces: a young generation of at most 16 MB (V8's default here is 32 MB).
    const out = execFileSync(
      process.execPath,
      [
        ...flags,
        '-e',
        `const a=[];for(let i=0;i<3e6;i++){a.push({i});if(a.length>5e4)a.length=0}
         const s=require('v8').getHeapSpaceStatistics().find(x=>x.space_name==='new_space');
         process.stdout.write(String(s.space_size))`,
      ],
      { encoding: 'utf8' },
    );
    expect(Number(out)).toBeGreaterThan(0);
    expect(Number(out)).toBeLessThanOrEqual(16 * 1024 * 1024);
  });
});
