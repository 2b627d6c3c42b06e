import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FORMATS, nextReadme, README, renderReadme } from '../../bench/readme.js';

describe('bench/README.md', () => {
  it('shows the tables bench/readme.ts writes from bench/results/*-latest.json', async () => {
    const current = readFileSync(README, 'utf8');
    expect(current, 'run `npm run bench:readme`').toBe(await nextReadme(current));
  });

  it('has a results section for every benchmark the script formats, each naming its command', () => {
    const current = readFileSync(README, 'utf8');
    for (const bench of Object.keys(FORMATS)) {
      expect(current).toContain(`<!-- results:${bench} -->`);
      const section = current.split(`<!-- results:${bench} -->`)[1]!.split('<!-- /results:')[0]!;
      expect(section).toMatch(new RegExp(`npm run bench:${bench}`));
    }
  });

  it('rewrites a section from the results it is given, and says when there are none', () => {
    const page = 'x\n<!-- results:release -->\nold\n<!-- /results:release -->\ny';
    const none = renderReadme(page, () => undefined);
    expect(none).toContain('No results yet: run `npm run bench:release`.');
    const some = renderReadme(page, () => ({
      at: '2026-12-06T00:24:02.362Z',
      loadavg: [0.31],
      resolve: { nsPerResolve: 523, experiments: 50, experimentsOnSlot: 5 },
      shadow: {
        plain: { p99_ms: 10.8 },
        shadowed: { p99_ms: 9.6 },
        p99_ratio: 0.89,
        mirrored_share: 0.998,
        rate_rps: 200,
      },
    }));
    expect(some).not.toContain('old');
    expect(some).toContain('0.52 µs');
    expect(some).toMatch(/^x\n<!-- results:release -->[\s\S]*<!-- \/results:release -->\ny$/);
  });
});
