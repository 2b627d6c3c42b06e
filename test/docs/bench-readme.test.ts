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

  it('shows the record bench’s log rate, shutdown and kill -9 loss rows and its targets', () => {
    const page = '<!-- results:record -->\nold\n<!-- /results:record -->';
    const logRun = (offered: number, maxMs: number) => ({
      offeredPerS: offered,
      offered: offered * 10,
      storedTotal: offered * 10,
      dropped: 0,
      sustainedPerS: offered * 0.9,
      capacityPerS: 55_000,
      writeMsMax: maxMs,
    });
    const out = renderReadme(page, () => ({
      timestamp: '2026-12-06T21:00:00.000Z',
      node: 'v20.20.2',
      cpu: { model: 'AMD EPYC', cores: 2 },
      revision: 'abc1234',
      settings: { quick: false },
      cpuRatio: 1.31,
      cases: [
        {
          label: 'record on',
          throughput: { reqPerS: 1500, latency: { p99: 90 } },
          cpuMsPerRequest: 0.5,
          eventLoopDelayP99Ms: 30,
          exports: { requests: 180 },
          logRequestRecords: 24_000,
        },
      ],
      log: logRun(30_000, 640),
      logAtGatewayRate: logRun(3_000, 28.7),
      shutdown: { answered2xx: 3000, recorded: 3000, lost: 0, exit: { code: 0 }, exitMs: 120 },
      kill: { flushMs: 1000, answered2xx: 5000, recorded: 4100, lost: 900, lostWindowMs: 640 },
      targets: [
        { name: 'graceful shutdown loses no record', limit: '0 lost', value: '0', pass: true },
      ],
    }));
    expect(out).toContain('**1.31×**');
    expect(out).toMatch(
      /\| well above the target rate \| 30,000 \| 300,000 \/ 300,000 \| 0 \| 27,000 \|/,
    );
    expect(out).toContain('28.7');
    expect(out).toMatch(/\| SIGTERM with requests in flight \| 3,000 \| 3,000 \| 0 \|/);
    expect(out).toMatch(
      /\| SIGKILL, flush_ms 1,000 \| 5,000 \| 4,100 \| 900 \| lost answers from the last 640 ms/,
    );
    expect(out).toMatch(/\| graceful shutdown loses no record \| 0 lost \| 0 \| met \|/);
  });
});
