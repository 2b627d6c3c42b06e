import { describe, expect, it } from 'vitest';
import { INTENTS, intentData, RANK_DIMS, rankData, topicData } from './demo-data.js';
import { auc } from './metrics.js';

describe('intentData', () => {
  const data = intentData(1);

  it('is the same for the same seed and different for another', () => {
    expect(intentData(1)).toEqual(data);
    expect(intentData(2).train.slice(0, 20)).not.toEqual(data.train.slice(0, 20));
  });

  it('keeps every held-out text out of the training split', () => {
    const train = new Set(data.train.map((e) => e.text));
    expect(data.heldout.filter((e) => train.has(e.text))).toEqual([]);
    expect(data.train.length + data.heldout.length).toBe(5000);
    expect(data.heldout.length).toBe(1000);
  });

  it('covers all eight intents in both splits, roughly balanced', () => {
    for (const split of [data.train, data.heldout]) {
      const counts = INTENTS.map((_, k) => split.filter((e) => e.label === k).length);
      expect(Math.min(...counts)).toBeGreaterThan(split.length / 8 / 2);
    }
  });

  it('includes a share of two-intent messages and some typos', () => {
    const ambiguous = data.train.filter((e) => e.ambiguous).length / data.train.length;
    expect(ambiguous).toBeGreaterThan(0.05);
    expect(ambiguous).toBeLessThan(0.12);
    const words = (t: string) =>
      t
        .toLowerCase()
        .split(/[^a-z-]+/)
        .filter((w) => w !== '');
    const vocabulary = new Set(intentData(9, { typoRate: 0 }).train.flatMap((e) => words(e.text)));
    const misspelt = data.train.filter((e) => words(e.text).some((w) => !vocabulary.has(w)));
    expect(misspelt.length / data.train.length).toBeGreaterThan(0.1);
    expect(misspelt.length / data.train.length).toBeLessThan(0.5);
  });
});

describe('topicData', () => {
  const data = topicData(3);

  it('makes 40 topics with train and held-out paraphrases each', () => {
    expect(data.labels).toHaveLength(40);
    expect(new Set(data.labels).size).toBe(40);
    for (let k = 0; k < 40; k++) {
      expect(data.train.filter((e) => e.label === k)).toHaveLength(40);
      expect(data.heldout.filter((e) => e.label === k)).toHaveLength(10);
    }
    expect(topicData(3)).toEqual(data);
  });

  it('words held-out questions differently from every training question', () => {
    const train = new Set(data.train.map((e) => e.text));
    expect(data.heldout.filter((e) => train.has(e.text))).toEqual([]);
  });
});

describe('rankData', () => {
  const data = rankData(4, { users: 100, items: 50, trainRows: 3000, heldoutRows: 1000 });

  it('gives 16 features per user and item and held-out pairs unseen in train', () => {
    expect(data.train.user).toHaveLength(3000 * RANK_DIMS);
    expect(data.heldout.item).toHaveLength(1000 * RANK_DIMS);
    const pair = (s: typeof data.train, r: number) =>
      `${Array.from(s.user.subarray(r * RANK_DIMS, (r + 1) * RANK_DIMS)).join()}|${Array.from(s.item.subarray(r * RANK_DIMS, (r + 1) * RANK_DIMS)).join()}`;
    const train = new Set(Array.from({ length: 3000 }, (_, r) => pair(data.train, r)));
    expect(
      Array.from({ length: 1000 }, (_, r) => pair(data.heldout, r)).filter((p) => train.has(p)),
    ).toEqual([]);
    for (let r = 0; r < 1000; r++) {
      const oneHot = data.heldout.item.subarray(r * RANK_DIMS, r * RANK_DIMS + 8);
      expect(oneHot.reduce((a, b) => a + b, 0)).toBe(1);
    }
  });

  it('draws labels from a hidden click probability that is learnable but noisy', () => {
    const ctr = data.train.targets.reduce((a, b) => a + b, 0) / data.train.rows;
    expect(ctr).toBeGreaterThan(0.15);
    expect(ctr).toBeLessThan(0.5);
    const oracle = auc(data.heldout.clickProb, data.heldout.targets);
    expect(oracle).toBeGreaterThan(0.75);
    expect(oracle).toBeLessThan(0.95);
  });

  it('refuses more rows than there are distinct user-item pairs', () => {
    expect(() => rankData(1, { users: 10, items: 10, trainRows: 90, heldoutRows: 20 })).toThrow(
      /pairs/,
    );
  });
});
