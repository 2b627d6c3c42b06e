import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BUCKETS, bucketOf, bucketer, murmur3, murmur3Bytes } from './hashing.js';
import { chiSquareSurvival } from './stats.js';

describe('assignment hashing', () => {
  it('matches the published MurmurHash3 x86_32 test vectors', () => {
    expect(murmur3('', 0)).toBe(0);
    expect(murmur3('', 1)).toBe(0x514e28b7);
    expect(murmur3('hello', 0)).toBe(0x248bfa47);
    expect(murmur3('The quick brown fox jumps over the lazy dog', 0)).toBe(0x2e4ff723);
  });

  it('hashes non-ASCII ids over their UTF-8 bytes', () => {
    for (const s of ['Zürich/ü', '東京/ユーザー', 'plain-ascii-id', '🙂'])
      expect(murmur3(s, 7)).toBe(murmur3Bytes(Buffer.from(s, 'utf8'), 7));
    expect(murmur3('Zürich')).not.toBe(murmur3('Zurich'));
  });

  it('always lands in [0, 10000) and is a pure function of seed and unit', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (seed, unit) => {
        const b = bucketOf(seed, unit);
        return Number.isInteger(b) && b >= 0 && b < BUCKETS && b === bucketOf(seed, unit);
      }),
      { seed: 6, numRuns: 2_000 },
    );
  });

  it('gives the same bucket through the precomputed-seed hasher as through bucketOf', () => {
    fc.assert(
      fc.property(
        fc.string(),
        fc.string(),
        (seed, unit) => bucketer(seed)(unit) === bucketOf(seed, unit),
      ),
      { seed: 7, numRuns: 5_000 },
    );
  });

  it('spreads 1M ids uniformly over 100 bins (chi-square goodness of fit)', () => {
    const bins = new Array<number>(100).fill(0);
    const N = 1_000_000;
    for (let i = 0; i < N; i++) bins[Math.floor(bucketOf('exp-seed-1', `acme/user-${i}`) / 100)]!++;
    const e = N / 100;
    const chi2 = bins.reduce((s, o) => s + (o - e) ** 2 / e, 0);
    // df = 99: the 0.1% critical value is 148.2; a uniform hash passes nearly always.
    expect(chiSquareSurvival(chi2, 99)).toBeGreaterThan(0.001);
  });

  it('assigns independently under two seeds (chi-square test of a 10×10 contingency table)', () => {
    const table = Array.from({ length: 10 }, () => new Array<number>(10).fill(0));
    const N = 1_000_000;
    for (let i = 0; i < N; i++) {
      const u = `acme/user-${i}`;
      table[Math.floor(bucketOf('layer:ranking', u) / 1000)]![
        Math.floor(bucketOf('layer:search', u) / 1000)
      ]!++;
    }
    const rows = table.map((r) => r.reduce((a, b) => a + b, 0));
    const cols = table[0]!.map((_, j) => table.reduce((a, r) => a + r[j]!, 0));
    let chi2 = 0;
    for (let i = 0; i < 10; i++)
      for (let j = 0; j < 10; j++) {
        const e = (rows[i]! * cols[j]!) / N;
        chi2 += (table[i]![j]! - e) ** 2 / e;
      }
    expect(chiSquareSurvival(chi2, 81)).toBeGreaterThan(0.001);
  });
});
