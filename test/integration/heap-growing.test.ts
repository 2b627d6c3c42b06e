import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const HEAP = fileURLToPath(new URL('../../dist/core/heap.js', import.meta.url));

/**
 * Peak old-generation size (MB) of a fresh process that holds ~10 MB live and makes dead
 * objects that die old (Node's AbortSignals are promoted on their first young GC), after
 * `applyHeapGrowingPercent(percent)` ran at start, as `switchyard serve` runs it.
 */
function peakOldMb(percent: number): { peak: number; live: number } {
  const script = `
    import v8 from 'node:v8';
    import { applyHeapGrowingPercent } from ${JSON.stringify(HEAP)};
    applyHeapGrowingPercent(${percent});
    const old = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'old_space').space_used_size;
    const live = [];
    for (let i = 0; i < 200000; i++) live.push({ i, s: 'x' + i });
    let peak = 0;
    let keep = [];
    for (let i = 0; i < 400000; i++) {
      keep.push(new AbortController().signal);
      if (keep.length > 20) keep = [];
      if (i % 2000 === 0) peak = Math.max(peak, old());
    }
    globalThis.gc();
    process.stdout.write(JSON.stringify({ peak: peak / 1048576, live: old() / 1048576, n: live.length }));
  `;
  const out = execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], {
    encoding: 'utf8',
  });
  return JSON.parse(out) as { peak: number; live: number };
}

describe('server.heap_growing_percent', () => {
  it('keeps the old generation near the live heap when set after start', () => {
    const v8Default = peakOldMb(0);
    const tuned = peakOldMb(20);
    // V8's own rule lets dead objects pile up to several times the live heap first.
    expect(v8Default.peak).toBeGreaterThan(2.5 * v8Default.live);
    // V8 keeps a floor of a few tens of MB whatever the factor; above it, growth stays near 20%.
    expect(tuned.peak).toBeLessThan(0.6 * v8Default.peak);
  });

  it('refuses a negative or fractional percent', async () => {
    const { applyHeapGrowingPercent } = await import('../../src/core/heap.js');
    expect(() => applyHeapGrowingPercent(-1)).toThrow(RangeError);
    expect(() => applyHeapGrowingPercent(1.5)).toThrow(RangeError);
  });
});
