import { describe, expect, it } from 'vitest';
import type { WindowStats } from './live-window.js';
import { judge } from './rollback-rules.js';

const stats = (p95Ms: number, over: Partial<WindowStats> = {}): WindowStats => ({
  n: 100,
  errors: 0,
  fallbacks: 0,
  policy: 0,
  p95Ms,
  shadowN: 0,
  shadowDisagree: 0,
  ...over,
});

describe('rollback rules', () => {
  it('breaches on a p95 ratio, unless the absolute difference is under the declared minimum', () => {
    const rules = { p95_latency_ratio: 1.5, min_samples: 20, window_s: 1 };
    expect(judge(rules, stats(0.8), stats(1.6))).toMatchObject({ rule: 'p95_latency_ratio' });
    const floor = { ...rules, p95_latency_min_delta_ms: 5 };
    expect(judge(floor, stats(0.8), stats(1.6))).toEqual({ kind: 'ok' });
    expect(judge(floor, stats(10), stats(60))).toMatchObject({
      kind: 'breach',
      rule: 'p95_latency_ratio',
      observed: { ratio: 6 },
    });
  });

  it('judges nothing without enough samples, and compares error rates as deltas', () => {
    const rules = { error_rate_delta: 0.05, min_samples: 20, window_s: 1 };
    expect(judge(rules, stats(1, { n: 10 }), stats(1, { errors: 50 }))).toMatchObject({
      kind: 'insufficient',
    });
    expect(judge(rules, stats(1, { errors: 2 }), stats(1, { errors: 6 }))).toEqual({ kind: 'ok' });
    expect(judge(rules, stats(1, { errors: 2 }), stats(1, { errors: 9 }))).toMatchObject({
      rule: 'error_rate_delta',
    });
  });
});
