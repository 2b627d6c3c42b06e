import { describe, expect, it } from 'vitest';
import type { ModelInfo } from '../contracts/stage.js';
import { LatencyProfile } from './latency-profile.js';
import { Router } from './router.js';

function clock() {
  let t = 0;
  return { now: () => t, wall: () => t, advance: (ms: number) => (t += ms) };
}

const info = (
  name: string,
  tier: ModelInfo['tier'],
  priorMs: number | undefined,
  perCall: number,
): ModelInfo => ({
  name,
  tier,
  operations: new Set(['chat']),
  version: '1',
  cost: { inPer1k: 0, outPer1k: 0, perCall, perSecond: 0 },
  priorMs,
  available: true,
});

describe('the learned latency profile', () => {
  it('estimates quantiles within a bucket width', () => {
    const p = new LatencyProfile(60_000, 0);
    for (let i = 1; i <= 1000; i++) p.observe(i, 0);
    expect(p.quantile(0.5)).toBeGreaterThan(475);
    expect(p.quantile(0.5)).toBeLessThan(530);
    expect(p.quantile(0.95)).toBeGreaterThan(900);
    expect(p.quantile(0.95)).toBeLessThan(1000);
  });

  it('forgets an old spike as its weight decays with the half-life', () => {
    const p = new LatencyProfile(1_000, 0);
    for (let i = 0; i < 100; i++) p.observe(500, 0);
    for (let t = 1; t <= 10; t++) for (let i = 0; i < 10; i++) p.observe(20, t * 1_000);
    // 100 old observations at 500 ms weigh 100 / 2^10 ≈ 0.1 now: the p95 is the recent 20 ms.
    expect(p.quantile(0.95)).toBeLessThan(25);
    expect(p.weight(10_000)).toBeGreaterThan(15);
    expect(p.weight(10_000)).toBeLessThan(25);
  });
});

describe('cheapest fit', () => {
  const c = clock();
  const router = new Router(c);
  const models = [
    info('central', 'central', 60, 0.1),
    info('regional', 'regional', 150, 0.01),
    info('edge', 'edge', 400, 0.001),
  ];
  it.each([
    [1000, 'edge'],
    [300, 'regional'],
    [100, 'central'],
  ])('with %i ms left it picks %s', (budget, expected) => {
    const choice = router.choose(models, budget, { inputTokens: 10 });
    expect(choice.kind).toBe('fit');
    expect(choice.kind === 'fit' && choice.model.name).toBe(expected);
  });

  it('offers the fastest when nothing fits, and breaks cost ties toward the lower tier', () => {
    const none = router.choose(models, 10, { inputTokens: 10 });
    expect(none.kind === 'none_fit' && none.fastest?.name).toBe('central');
    const tie = router.choose([info('r', 'regional', 10, 0), info('e', 'edge', 10, 0)], 100, {
      inputTokens: 1,
    });
    expect(tie.kind === 'fit' && tie.model.name).toBe('e');
  });

  it('prefers the learned profile over the prior once there is enough traffic', () => {
    const r = new Router(c, { minWeight: 3 });
    const m = info('m', 'edge', 10, 0);
    expect(r.predictMs(m)).toBe(10);
    for (let i = 0; i < 3; i++) r.observe('m', 200);
    expect(r.predictMs(m)).toBeGreaterThan(190);
    expect(r.predictMs(m)).toBeLessThan(215);
  });
});
