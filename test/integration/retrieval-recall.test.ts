import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/core/random.js';
import { ExactIndex } from '../../src/retrieval/exact-index.js';
import { UsearchShard } from '../../src/retrieval/usearch-shard.js';
import { clustered, meta, near } from '../support/vectors.js';

const DIMS = 64;
const N = 6_000;
const K = 10;

/** Recall@10 of the HNSW shard, measured against the exact index on the same data. */
describe('HNSW recall against exact search', () => {
  const exact = new ExactIndex({ id: 'exact', dims: DIMS });
  // exactBelow 0: every search below goes through the HNSW graph.
  const hnsw = new UsearchShard({ id: 'hnsw', dims: DIMS, exactBelow: 0, random: seededRandom(3) });
  const data = clustered(N, DIMS, 40, 11);

  beforeAll(async () => {
    const records = data.map((vector, i) => ({
      id: `v${i}`,
      vector,
      meta: meta('acme', { label: i % 10 === 0 ? 'sensitive' : 'public', userId: `u${i % 50}` }),
    }));
    await exact.upsert(records);
    await hnsw.upsert(records);
  });
  afterAll(async () => {
    await exact.close();
    await hnsw.close();
  });

  async function recall(filter?: Parameters<ExactIndex['search']>[2]['filter']): Promise<number> {
    const rnd = seededRandom(7);
    let found = 0;
    let wanted = 0;
    for (let i = 0; i < 200; i++) {
      const q = near(data[Math.floor(rnd() * N)]!, rnd, 0.3);
      const opts = { tenant: 'acme', ...(filter === undefined ? {} : { filter }) };
      const truth = await exact.search(q, K, opts);
      const got = new Set((await hnsw.search(q, K, opts)).map((h) => h.id));
      wanted += truth.length;
      for (const h of truth) if (got.has(h.id)) found++;
    }
    return found / wanted;
  }

  it('finds at least 95% of the exact top 10 without a filter', async () => {
    expect(await recall()).toBeGreaterThanOrEqual(0.95);
  });

  it('finds at least 95% of the exact top 10 under a filter passing 90% (over-fetch)', async () => {
    expect(await recall({ labels: ['public'] })).toBeGreaterThanOrEqual(0.95);
  });

  it('finds the exact top 10 under a filter passing 10% (pre-filtered exact scan)', async () => {
    expect(await recall({ labels: ['sensitive'] })).toBe(1);
  });

  it('reports its own recall probe in stats', async () => {
    const r = await hnsw.probeRecall(32, K);
    expect(r).toBeGreaterThanOrEqual(0.95);
    expect((await hnsw.stats()).recall).toBe(r);
  });
});
