import { describe, expect, it } from 'vitest';
import { seededRandom } from '../core/random.js';
import {
  chiSquareSurvival,
  meanInterval,
  msprt,
  sampleRatioMismatch,
  type Moments,
} from './stats.js';

const moments = (xs: readonly number[]): Moments => ({
  n: xs.length,
  sum: xs.reduce((a, b) => a + b, 0),
  sumSq: xs.reduce((a, b) => a + b * b, 0),
});

describe('experiment statistics', () => {
  it('computes chi-square tail probabilities that match the textbook table', () => {
    expect(chiSquareSurvival(3.841, 1)).toBeCloseTo(0.05, 3);
    expect(chiSquareSurvival(10.828, 1)).toBeCloseTo(0.001, 4);
    expect(chiSquareSurvival(148.23, 99)).toBeCloseTo(0.001, 3);
    expect(chiSquareSurvival(0, 3)).toBe(1);
  });

  it('flags a sample ratio mismatch on a skewed 50/50 split and not on a fair one', () => {
    const skewed = sampleRatioMismatch([50_600, 49_400], [1, 1]);
    expect(skewed.mismatch).toBe(true);
    expect(skewed.pValue).toBeLessThan(0.001);
    const fair = sampleRatioMismatch([50_080, 49_920], [1, 1]);
    expect(fair.mismatch).toBe(false);
    const threeWay = sampleRatioMismatch([2_000, 4_000, 4_600], [1, 2, 2]);
    expect(threeWay.mismatch).toBe(true);
    expect(threeWay.df).toBe(2);
  });

  it('gives a normal confidence interval around the mean', () => {
    const ci = meanInterval(moments([1, 2, 3, 4, 5]));
    expect(ci.low).toBeLessThan(3);
    expect(ci.high).toBeGreaterThan(3);
    expect(ci.high - 3).toBeCloseTo(3 - ci.low, 10);
  });

  it('keeps the sequential test under 5 % false positives when peeking after every batch', () => {
    const random = seededRandom(11);
    let falsePositives = 0;
    const runs = 200;
    for (let r = 0; r < runs; r++) {
      const c = { n: 0, sum: 0, sumSq: 0 };
      const t = { n: 0, sum: 0, sumSq: 0 };
      let rejected = false;
      for (let look = 0; look < 50 && !rejected; look++) {
        for (let i = 0; i < 40; i++) {
          const a = random() < 0.3 ? 1 : 0;
          const b = random() < 0.3 ? 1 : 0;
          c.n++;
          c.sum += a;
          c.sumSq += a;
          t.n++;
          t.sum += b;
          t.sumSq += b;
        }
        if (msprt(c, t).significant) rejected = true;
      }
      if (rejected) falsePositives++;
    }
    expect(falsePositives / runs).toBeLessThanOrEqual(0.05);
  });

  it('detects a real lift and its always-valid interval excludes zero', () => {
    const random = seededRandom(12);
    const c = { n: 0, sum: 0, sumSq: 0 };
    const t = { n: 0, sum: 0, sumSq: 0 };
    for (let i = 0; i < 20_000; i++) {
      const a = random() < 0.3 ? 1 : 0;
      const b = random() < 0.36 ? 1 : 0;
      c.n++;
      c.sum += a;
      c.sumSq += a;
      t.n++;
      t.sum += b;
      t.sumSq += b;
    }
    const r = msprt(c, t);
    expect(r.significant).toBe(true);
    expect(r.low).toBeGreaterThan(0);
    expect(r.high).toBeGreaterThan(r.effect);
  });
});
