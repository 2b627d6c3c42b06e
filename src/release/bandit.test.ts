import { describe, expect, it } from 'vitest';
import { seededRandom } from '../core/random.js';
import { sampleBeta, thompsonChoose, type ArmPosterior } from './bandit.js';

describe('Thompson sampling', () => {
  it('draws Beta samples with the right mean', () => {
    const random = seededRandom(3);
    let sum = 0;
    for (let i = 0; i < 20_000; i++) sum += sampleBeta(3, 7, random);
    expect(sum / 20_000).toBeCloseTo(0.3, 2);
  });

  it('converges on the better arm in simulation', () => {
    const random = seededRandom(42);
    const truth = [0.05, 0.08, 0.12];
    const arms: ArmPosterior[] = truth.map(() => ({ alpha: 1, beta: 1 }));
    const pulls = [0, 0, 0];
    for (let t = 0; t < 20_000; t++) {
      const i = thompsonChoose(arms, 0.01, random);
      pulls[i]!++;
      const r = random() < truth[i]! ? 1 : 0;
      arms[i]!.alpha += r;
      arms[i]!.beta += 1 - r;
    }
    const last = pulls[2]! / 20_000;
    expect(last).toBeGreaterThan(0.75);
    // The exploration floor keeps every arm sampled.
    expect(Math.min(...pulls)).toBeGreaterThan(20_000 * 0.01 * 0.8);
  });

  it('honours the exploration floor even when one arm dominates', () => {
    const random = seededRandom(5);
    const arms = [
      { alpha: 1000, beta: 1 },
      { alpha: 1, beta: 1000 },
    ];
    let weak = 0;
    for (let i = 0; i < 10_000; i++) if (thompsonChoose(arms, 0.1, random) === 1) weak++;
    expect(weak / 10_000).toBeGreaterThan(0.08);
    expect(weak / 10_000).toBeLessThan(0.12);
  });
});
