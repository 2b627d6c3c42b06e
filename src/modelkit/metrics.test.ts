import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { auc, embeddingQuality, lowConfidenceShare } from './metrics.js';

/** AUC by definition: over all positive–negative pairs, wins plus half the ties. */
function pairwiseAuc(scores: readonly number[], targets: readonly number[]): number {
  let wins = 0;
  let pairs = 0;
  scores.forEach((s, i) => {
    if (targets[i] !== 1) return;
    scores.forEach((t, j) => {
      if (targets[j] !== 0) return;
      pairs++;
      wins += s > t ? 1 : s === t ? 0.5 : 0;
    });
  });
  return pairs === 0 ? 0.5 : wins / pairs;
}

describe('auc', () => {
  it('equals the pairwise definition, ties included, for any scores', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), fc.boolean()), {
          minLength: 1,
          maxLength: 40,
        }),
        (rows) => {
          const scores = rows.map(([s]) => s / 5);
          const targets = rows.map(([, t]) => (t ? 1 : 0));
          expect(auc(scores, targets)).toBeCloseTo(pairwiseAuc(scores, targets), 12);
        },
      ),
      { seed: 20261122, numRuns: 200 },
    );
  });

  it('is 1 for a perfect ranking, 0 for a reversed one and 0.5 when one class is missing', () => {
    expect(auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])).toBe(1);
    expect(auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1])).toBe(0);
    expect(auc([0.3, 0.4], [1, 1])).toBe(0.5);
  });
});

describe('embeddingQuality', () => {
  it('finds the right neighbour and a wide cosine gap for well-separated groups', () => {
    // Two groups around orthogonal directions, three rows each.
    const emb = Float32Array.from([1, 0.1, 0.9, -0.1, 1, 0, 0.1, 1, -0.1, 0.9, 0, 1]);
    const q = embeddingQuality(emb, 6, 2, [0, 0, 0, 1, 1, 1]);
    expect(q.recallAt1).toBe(1);
    expect(q.centroidRecallAt1).toBe(1);
    expect(q.meanSameCosine).toBeGreaterThan(0.95);
    expect(q.meanDifferentCosine).toBeLessThan(0.2);
  });

  it('leaves the row itself out, so a lone mislabelled row counts as a miss', () => {
    const emb = Float32Array.from([1, 0, 0.9, 0.1, 0, 1, 0.1, 0.9]);
    const q = embeddingQuality(emb, 4, 2, [0, 0, 1, 0]);
    expect(q.recallAt1).toBe(0.5);
  });
});

describe('lowConfidenceShare', () => {
  it('counts rows whose top probability is below the threshold', () => {
    const probs = Float32Array.from([0.9, 0.1, 0.55, 0.45, 0.6, 0.4]);
    expect(lowConfidenceShare(probs, 3, 2, 0.6)).toBeCloseTo(1 / 3, 12);
  });
});
