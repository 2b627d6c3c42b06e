import { describe, expect, it } from 'vitest';
import type { VectorRecord, VectorShard } from '../../src/contracts/vector-index.js';
import { seededRandom } from '../../src/core/random.js';
import { ExactIndex } from '../../src/retrieval/exact-index.js';
import { ShardRouter } from '../../src/retrieval/shard-router.js';
import { splitShard } from '../../src/retrieval/shard-split.js';
import { UsearchShard } from '../../src/retrieval/usearch-shard.js';
import { ManualClock } from '../contract/vector-index.contract.js';
import { clustered, meta, near } from '../support/vectors.js';

const DIMS = 16;

function shardOf(id: string, index: ExactIndex | UsearchShard): VectorShard {
  return {
    descriptor: {
      id,
      collection: 'memories',
      dims: DIMS,
      metric: 'cos',
      location: { kind: 'local', node: 'n1' },
      key: { tier: 'warm' },
    },
    index,
  };
}

describe('session memory TTL', () => {
  it('serves a vector until its TTL, never after, and sweeps it out', async () => {
    const clock = new ManualClock();
    const hot = new ExactIndex({ id: 'hot', dims: DIMS, clock, ttlMs: 1_000, sweepMs: 0 });
    const [a, b] = clustered(2, DIMS, 2, 1);
    await hot.upsert([{ id: 'old', vector: a!, meta: meta('acme') }]);
    clock.advance(500);
    await hot.upsert([{ id: 'new', vector: b!, meta: meta('acme') }]);
    const ids = async () => (await hot.search(a!, 5, { tenant: 'acme' })).map((h) => h.id);
    clock.advance(499);
    expect(await ids()).toEqual(['old', 'new']);
    clock.advance(1);
    expect(await ids()).toEqual(['new']);
    expect(await hot.size()).toBe(2);
    expect(hot.sweep()).toBe(1);
    expect(await hot.size()).toBe(1);
    expect((await hot.stats()).expiredTotal).toBe(1);
    clock.advance(500);
    expect(await ids()).toEqual([]);
    await hot.close();
  });
});

describe('size cap', () => {
  it('evicts the stalest vectors first and keeps answering from what is left', async () => {
    const shard = new UsearchShard({ id: 'capped', dims: DIMS, maxSize: 100, exactBelow: 0 });
    const vs = clustered(150, DIMS, 5, 2);
    const rec = (i: number, updatedAt: number): VectorRecord => ({
      id: `v${i}`,
      vector: vs[i]!,
      meta: meta('acme', { updatedAt }),
    });
    const first = await shard.upsert(vs.slice(0, 100).map((_, i) => rec(i, 1_000 + i)));
    expect(first.evicted).toBe(0);
    // v0..v9 are refreshed: now the newest, they must survive.
    await shard.upsert(vs.slice(0, 10).map((_, i) => rec(i, 5_000 + i)));
    const second = await shard.upsert(vs.slice(100).map((_, i) => rec(100 + i, 2_000 + i)));
    expect(second.evicted).toBe(50);
    expect(await shard.size()).toBe(100);
    for (let i = 0; i < 10; i++) expect(await shard.get('acme', `v${i}`)).toBeDefined();
    for (let i = 10; i < 60; i++) expect(await shard.get('acme', `v${i}`)).toBeUndefined();
    for (let i = 60; i < 150; i++) expect(await shard.get('acme', `v${i}`)).toBeDefined();
    const hits = await shard.search(vs[30]!, 5, { tenant: 'acme' });
    expect(hits.some((h) => h.id === 'v30')).toBe(false);
    expect((await shard.stats()).evictedTotal).toBe(50);
    await shard.close();
  });
});

describe('online split of a hot shard', () => {
  it('answers every query exactly while the shard splits under concurrent writes', async () => {
    const vs = clustered(3_000, DIMS, 30, 4);
    const records = vs.map((vector, i) => ({
      id: `v${i}`,
      vector,
      meta: meta(i % 3 === 0 ? 'globex' : 'acme', { userId: `u${i % 17}` }),
    }));
    const reference = new ExactIndex({ id: 'ref', dims: DIMS });
    const parent = new ExactIndex({ id: 'big', dims: DIMS });
    await reference.upsert(records);
    await parent.upsert(records);
    const router = new ShardRouter(
      [{ name: 'memories', dims: DIMS, metric: 'cos', shards: [shardOf('big', parent)] }],
      { node: 'n1' },
    );
    const rnd = seededRandom(5);
    let stop = false;
    let queries = 0;
    let writes = 0;
    const mismatches: string[] = [];
    const extra = clustered(400, DIMS, 30, 8);
    const traffic = (async () => {
      while (!stop) {
        // A write (new vector, moved vector, or delete) applied to the router and the reference.
        const w = writes++;
        if (w % 3 === 0 && w / 3 < extra.length) {
          const r = { id: `n${w}`, vector: extra[w / 3]!, meta: meta('acme') };
          await Promise.all([router.upsert('memories', [r]), reference.upsert([r])]);
        } else if (w % 3 === 1) {
          const i = Math.floor(rnd() * 3_000);
          const r = { ...records[i]!, vector: near(vs[(i + 1) % 3_000]!, rnd) };
          await Promise.all([router.upsert('memories', [r]), reference.upsert([r])]);
        } else {
          const i = Math.floor(rnd() * 3_000);
          const tenant = records[i]!.meta.tenant;
          await Promise.all([
            router.delete('memories', tenant, [`v${i}`]),
            reference.delete(tenant, [`v${i}`]),
          ]);
        }
        for (let j = 0; j < 3; j++) {
          const q = near(vs[Math.floor(rnd() * 3_000)]!, rnd, 0.2);
          const tenant = rnd() < 0.5 ? 'acme' : 'globex';
          const [got, want] = await Promise.all([
            router.search('memories', { vector: q, k: 10, tenant }),
            reference.search(q, 10, { tenant }),
          ]);
          queries++;
          const a = got.hits.map((h) => h.id).join(',');
          const b = want.map((h) => h.id).join(',');
          if (a !== b || got.partial) mismatches.push(`${a} != ${b}`);
        }
        await new Promise<void>((r) => setImmediate(r));
      }
    })();
    const children = await splitShard(
      router,
      'memories',
      'big',
      (d) => Promise.resolve(new ExactIndex({ id: d.id, dims: DIMS })),
      { batch: 100 },
    );
    stop = true;
    await traffic;
    expect(mismatches).toEqual([]);
    expect(queries).toBeGreaterThan(30);
    expect(router.shards('memories').map((s) => s.descriptor.id)).toEqual(['big.2-0', 'big.2-1']);
    const sizes = await Promise.all(children.map((c) => c.index.size()));
    expect(sizes[0]! + sizes[1]!).toBe(await reference.size());
    expect(Math.min(...sizes)).toBeGreaterThan(1_000);
    await expect(parent.size()).resolves.toBeGreaterThan(0); // closed, but its data is gone from routing
    await expect(parent.search(vs[0]!, 1, { tenant: 'acme' })).rejects.toMatchObject({
      code: 'SY_ERR_VECTOR_SHARD_UNAVAILABLE',
    });
    await router.close();
    await reference.close();
  });
});

describe('bulk load', () => {
  it('builds the graph in a worker with progress while searches keep answering', async () => {
    const vs = clustered(8_000, DIMS, 20, 6);
    const shard = new UsearchShard({ id: 'bulk', dims: DIMS, exactBelow: 0 });
    const reference = new ExactIndex({ id: 'ref', dims: DIMS });
    const records = vs.map((vector, i) => ({ id: `v${i}`, vector, meta: meta('acme') }));
    await reference.upsert(records);
    const progress: number[] = [];
    let during = 0;
    let wrong = 0;
    const load = shard.bulkLoad(records, { onProgress: (done) => progress.push(done) });
    let finished = false;
    void load.finally(() => (finished = true));
    const rnd = seededRandom(3);
    while (!finished) {
      const q = near(vs[Math.floor(rnd() * 8_000)]!, rnd, 0.1);
      const got = await shard.search(q, 5, { tenant: 'acme' });
      const n = await shard.size();
      if (n === 8_000) {
        const want = await reference.search(q, 5, { tenant: 'acme' });
        if (got[0]?.id !== want[0]?.id) wrong++;
        during++;
      }
      await new Promise<void>((r) => setTimeout(r, 2));
    }
    const result = await load;
    expect(result.inserted).toBe(8_000);
    expect(progress.at(-1)).toBe(8_000);
    expect(wrong).toBe(0);
    expect(during).toBeGreaterThan(0);
    expect(await shard.probeRecall(32, 10)).toBeGreaterThanOrEqual(0.95);
    // Writes after the build land in the new graph.
    await shard.upsert([
      { id: 'late', vector: vs[1]!, meta: meta('acme', { label: 'sensitive' }) },
    ]);
    expect((await shard.search(vs[1]!, 2, { tenant: 'acme' })).map((h) => h.id)).toContain('late');
    await shard.close();
    await reference.close();
  });
});
