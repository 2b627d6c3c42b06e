import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type {
  VectorIndex,
  VectorMetadata,
  VectorMetric,
  VectorRecord,
} from '../../src/contracts/vector-index.js';
import type { Clock } from '../../src/core/clock.js';
import { seededRandom } from '../../src/core/random.js';

/** A clock tests move by hand. */
export class ManualClock implements Clock {
  constructor(
    public mono = 1_000,
    public epoch = 1_700_000_000_000,
  ) {}
  now(): number {
    return this.mono;
  }
  wall(): number {
    return this.epoch;
  }
  advance(ms: number): void {
    this.mono += ms;
    this.epoch += ms;
  }
}

export interface IndexSpec {
  readonly id: string;
  readonly dims: number;
  readonly metric: VectorMetric;
  readonly clock: Clock;
  /** Persistence directory (empty at first; the same one on reopen). */
  readonly dir: string;
}

/** What each implementation's test file provides: how to make (and reopen) an index. */
export interface VectorIndexHarness {
  readonly kind: string;
  make(spec: IndexSpec): Promise<VectorIndex>;
  /** Opens the index persisted in `spec.dir` (after `persist` and `close`). */
  reopen(spec: IndexSpec): Promise<VectorIndex>;
  teardown?(): Promise<void>;
}

export function meta(tenant: string, over: Partial<VectorMetadata> = {}): VectorMetadata {
  return {
    tenant,
    label: 'public',
    entityType: 'item',
    createdAt: 1_700_000_000_000,
    updatedAt: 1_700_000_000_000,
    ...over,
  };
}

export function randomVectors(n: number, dims: number, seed: number): Float32Array[] {
  const rnd = seededRandom(seed);
  return Array.from({ length: n }, () => Float32Array.from({ length: dims }, () => rnd() * 2 - 1));
}

/** The exact k nearest by cosine distance, for checking answers. */
export function bruteForce(
  data: readonly { id: string; v: Float32Array }[],
  q: Float32Array,
  k: number,
): string[] {
  const norm = (v: Float32Array): number => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  const qn = norm(q);
  return data
    .map(({ id, v }) => ({ id, d: 1 - v.reduce((s, x, i) => s + x * q[i]!, 0) / (norm(v) * qn) }))
    .sort((a, b) => a.d - b.d || (a.id < b.id ? -1 : 1))
    .slice(0, k)
    .map((x) => x.id);
}

const DIMS = 16;

/**
 * The shared VectorIndex contract: every implementation (usearch HNSW, exact, remote over HTTP)
 * runs these same tests through its harness.
 */
export function vectorIndexContract(h: VectorIndexHarness): void {
  describe(`VectorIndex contract: ${h.kind}`, () => {
    let dir: string;
    let clock: ManualClock;
    let index: VectorIndex;
    let spec: IndexSpec;

    beforeEach(async () => {
      dir = mkdtempSync(join(tmpdir(), 'sy-vec-'));
      clock = new ManualClock();
      spec = { id: 'shard-a', dims: DIMS, metric: 'cos', clock, dir };
      index = await h.make(spec);
    });
    afterEach(async () => {
      await index.close();
      await h.teardown?.();
      rmSync(dir, { recursive: true, force: true });
    });

    const load = async (n: number, tenant = 'acme', seed = 1): Promise<Float32Array[]> => {
      const vs = randomVectors(n, DIMS, seed);
      await index.upsert(vs.map((vector, i) => ({ id: `v${i}`, vector, meta: meta(tenant) })));
      return vs;
    };

    it('returns the exact nearest neighbours on a small set, nearest first', async () => {
      const vs = await load(200);
      const data = vs.map((v, i) => ({ id: `v${i}`, v }));
      for (const q of randomVectors(20, DIMS, 99)) {
        const hits = await index.search(q, 5, { tenant: 'acme' });
        expect(hits.map((x) => x.id)).toEqual(bruteForce(data, q, 5));
        for (let i = 1; i < hits.length; i++)
          expect(hits[i]!.distance).toBeGreaterThanOrEqual(hits[i - 1]!.distance);
      }
      const self = await index.search(vs[7]!, 1, { tenant: 'acme' });
      expect(self[0]!.id).toBe('v7');
      expect(self[0]!.distance).toBeCloseTo(0, 5);
      expect(self[0]!.meta.tenant).toBe('acme');
    });

    it('replaces a vector upserted again under the same tenant and id', async () => {
      const [a, b] = randomVectors(2, DIMS, 5);
      expect(await index.upsert([{ id: 'x', vector: a!, meta: meta('acme') }])).toEqual({
        inserted: 1,
        updated: 0,
        evicted: 0,
      });
      const second = await index.upsert([
        { id: 'x', vector: b!, meta: meta('acme', { label: 'consented' }) },
      ]);
      expect(second).toEqual({ inserted: 0, updated: 1, evicted: 0 });
      expect(await index.size()).toBe(1);
      const [hit] = await index.search(b!, 1, { tenant: 'acme' });
      expect(hit!.distance).toBeCloseTo(0, 5);
      expect(hit!.meta.label).toBe('consented');
      const got = await index.get('acme', 'x');
      expect(Array.from(got!.vector)).toEqual(Array.from(b!));
    });

    it('keeps tenants apart: same ids, separate vectors, no cross-tenant hits or deletes', async () => {
      await load(50, 'acme', 1);
      const other = await load(50, 'globex', 2);
      expect(await index.size()).toBe(100);
      for (const q of other.slice(0, 10)) {
        const hits = await index.search(q, 10, { tenant: 'acme' });
        expect(hits.every((x) => x.meta.tenant === 'acme')).toBe(true);
      }
      expect(await index.delete('acme', ['v1', 'v2', 'nope'])).toBe(2);
      expect(await index.get('globex', 'v1')).toBeDefined();
      expect(await index.get('acme', 'v1')).toBeUndefined();
      expect(await index.search(other[0]!, 3, { tenant: 'nobody' })).toEqual([]);
    });

    it('applies every field of the structured filter and the in-process predicate', async () => {
      const vs = randomVectors(60, DIMS, 3);
      const records: VectorRecord[] = vs.map((vector, i) => ({
        id: `r${i}`,
        vector,
        meta: meta('acme', {
          label: (['public', 'consented', 'sensitive'] as const)[i % 3]!,
          entityType: i % 2 === 0 ? 'user' : 'item',
          userId: `u${i % 5}`,
          ...(i % 4 === 0 ? { jurisdiction: 'eu' } : {}),
          geo: i < 30 ? 'north' : 'south',
          updatedAt: 1_700_000_000_000 + i,
          attrs: { lang: i % 2 === 0 ? 'en' : 'de', rank: i },
        }),
      }));
      await index.upsert(records);
      const q = vs[0]!;
      const all = async (filter: Parameters<VectorIndex['search']>[2]): Promise<string[]> =>
        (await index.search(q, 60, filter)).map((x) => x.id).sort();
      const expected = (pred: (i: number) => boolean): string[] =>
        records
          .map((_, i) => i)
          .filter(pred)
          .map((i) => `r${i}`)
          .sort();
      expect(await all({ tenant: 'acme', filter: { labels: ['public'] } })).toEqual(
        expected((i) => i % 3 === 0),
      );
      expect(await all({ tenant: 'acme', filter: { entityTypes: ['item'] } })).toEqual(
        expected((i) => i % 2 === 1),
      );
      expect(await all({ tenant: 'acme', filter: { userIds: ['u1', 'u2'] } })).toEqual(
        expected((i) => i % 5 === 1 || i % 5 === 2),
      );
      expect(await all({ tenant: 'acme', filter: { excludeUserIds: ['u0'] } })).toEqual(
        expected((i) => i % 5 !== 0),
      );
      expect(await all({ tenant: 'acme', filter: { jurisdictions: ['eu'] } })).toEqual(
        expected((i) => i % 4 === 0),
      );
      expect(await all({ tenant: 'acme', filter: { jurisdictions: [null] } })).toEqual(
        expected((i) => i % 4 !== 0),
      );
      expect(await all({ tenant: 'acme', filter: { geos: ['south'] } })).toEqual(
        expected((i) => i >= 30),
      );
      expect(
        await all({
          tenant: 'acme',
          filter: { updatedAfter: 1_700_000_000_010, updatedBefore: 1_700_000_000_020 },
        }),
      ).toEqual(expected((i) => i >= 10 && i < 20));
      expect(
        await all({ tenant: 'acme', filter: { attrs: { lang: 'de', rank: [1, 3, 4] } } }),
      ).toEqual(expected((i) => i === 1 || i === 3));
      expect(
        await all({
          tenant: 'acme',
          predicate: (m) => m.attrs?.['rank'] === 7 || m.userId === 'u4',
        }),
      ).toEqual(expected((i) => i === 7 || i % 5 === 4));
    });

    it('purges a user and deletes by filter, counting what it removed', async () => {
      const vs = randomVectors(40, DIMS, 4);
      await index.upsert(
        vs.map((vector, i) => ({
          id: `p${i}`,
          vector,
          meta: meta('acme', { userId: `u${i % 4}`, label: i < 20 ? 'sensitive' : 'public' }),
        })),
      );
      await index.upsert([{ id: 'p0', vector: vs[0]!, meta: meta('globex', { userId: 'u0' }) }]);
      expect(await index.purgeUser('acme', 'u0')).toBe(10);
      expect(await index.get('globex', 'p0')).toBeDefined();
      const left = await index.search(vs[0]!, 40, { tenant: 'acme' });
      expect(left).toHaveLength(30);
      expect(left.some((x) => x.meta.userId === 'u0')).toBe(false);
      expect(await index.deleteWhere('acme', { labels: ['sensitive'] })).toBe(15);
      expect(await index.size()).toBe(16);
      expect(await index.purgeUser('acme', 'u0')).toBe(0);
    });

    it('never returns a vector past its expiresAt, by search or get', async () => {
      const [a, b] = randomVectors(2, DIMS, 6);
      await index.upsert([
        { id: 'short', vector: a!, meta: meta('acme', { expiresAt: clock.wall() + 1_000 }) },
        { id: 'long', vector: b!, meta: meta('acme') },
      ]);
      expect((await index.search(a!, 2, { tenant: 'acme' })).map((x) => x.id)).toEqual([
        'short',
        'long',
      ]);
      clock.advance(1_000);
      expect((await index.search(a!, 2, { tenant: 'acme' })).map((x) => x.id)).toEqual(['long']);
      expect(await index.get('acme', 'short')).toBeUndefined();
    });

    it('refuses bad vectors, metadata and k with SY_ERR_VECTOR_INVALID and stores nothing of the batch', async () => {
      const [a] = randomVectors(1, DIMS, 7);
      const bad = [
        { id: 'short', vector: a!.slice(0, DIMS - 1), meta: meta('acme') },
        {
          id: 'nan',
          vector: Float32Array.from(a!, (x, i) => (i === 3 ? NaN : x)),
          meta: meta('acme'),
        },
        { id: 'label', vector: a!, meta: { ...meta('acme'), label: 'secret' as never } },
        { id: '', vector: a!, meta: meta('acme') },
        { id: 'tenant', vector: a!, meta: meta('') },
      ];
      for (const r of bad) {
        await expect(
          index.upsert([{ id: 'fine', vector: a!, meta: meta('acme') }, r]),
        ).rejects.toMatchObject({ code: 'SY_ERR_VECTOR_INVALID' });
      }
      expect(await index.size()).toBe(0);
      for (const k of [0, -1, 1.5, 100_000]) {
        await expect(index.search(a!, k, { tenant: 'acme' })).rejects.toMatchObject({
          code: 'SY_ERR_VECTOR_INVALID',
        });
      }
      await expect(index.search(a!.slice(1), 3, { tenant: 'acme' })).rejects.toMatchObject({
        code: 'SY_ERR_VECTOR_INVALID',
      });
    });

    it('returns every match when k is larger than the matches', async () => {
      await load(7);
      const hits = await index.search(randomVectors(1, DIMS, 8)[0]!, 50, { tenant: 'acme' });
      expect(hits).toHaveLength(7);
    });

    it('reopens from disk with the same vectors, metadata and answers', async () => {
      const vs = await load(300);
      await index.upsert([
        { id: 'tagged', vector: vs[0]!, meta: meta('acme', { jurisdiction: 'eu', userId: 'u9' }) },
      ]);
      await index.delete('acme', ['v5']);
      const queries = randomVectors(10, DIMS, 42);
      const before = await Promise.all(queries.map((q) => index.search(q, 10, { tenant: 'acme' })));
      await index.persist();
      await index.close();
      index = await h.reopen(spec);
      expect(await index.size()).toBe(300);
      const after = await Promise.all(queries.map((q) => index.search(q, 10, { tenant: 'acme' })));
      expect(after.map((r) => r.map((x) => x.id))).toEqual(before.map((r) => r.map((x) => x.id)));
      expect((await index.get('acme', 'tagged'))!.meta).toMatchObject({
        jurisdiction: 'eu',
        userId: 'u9',
      });
      expect(await index.get('acme', 'v5')).toBeUndefined();
      // Still writable after reopening.
      await index.upsert([{ id: 'new', vector: vs[1]!, meta: meta('acme') }]);
      expect(
        (await index.search(vs[1]!, 1, { tenant: 'acme', filter: { userIds: [] } })).length,
      ).toBe(0);
      expect(await index.size()).toBe(301);
    });

    it('reports its size and counts its searches in stats', async () => {
      await load(20);
      await index.search(randomVectors(1, DIMS, 9)[0]!, 3, { tenant: 'acme' });
      await index.search(randomVectors(1, DIMS, 10)[0]!, 3, { tenant: 'acme' });
      const s = await index.stats();
      expect(s.id).toBe('shard-a');
      expect(s.size).toBe(20);
      expect(s.searches).toBe(2);
      expect(s.p95Ms).toBeGreaterThanOrEqual(0);
    });

    it('stops a search whose signal has already aborted', async () => {
      await load(5);
      const ac = new AbortController();
      ac.abort(new Error('gone'));
      await expect(
        index.search(randomVectors(1, DIMS, 11)[0]!, 3, { tenant: 'acme', signal: ac.signal }),
      ).rejects.toBeDefined();
    });
  });
}
