import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { VectorRecord } from '../../src/contracts/vector-index.js';
import { isSwitchyardError } from '../../src/core/errors.js';
import { MemoryAuditSink } from '../../src/observability/audit-memory.js';
import { ConsentBook } from '../../src/privacy/consent-book.js';
import { PolicyEngine } from '../../src/privacy/policy-engine.js';
import { ExactIndex } from '../../src/retrieval/exact-index.js';
import { ShardRouter } from '../../src/retrieval/shard-router.js';
import {
  admitVectors,
  guardSearch,
  mayRetrieve,
  TenantVectorCount,
} from '../../src/retrieval/vector-rules.js';
import { ManualClock } from '../contract/vector-index.contract.js';
import { meta } from '../support/vectors.js';

const DIMS = 4;
const rec = (
  id: string,
  over: Partial<VectorRecord['meta']> = {},
  tenant = 'acme',
): VectorRecord => ({
  id,
  vector: [1, id.length, 0.5, 0.25],
  meta: meta(tenant, over),
});

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return isSwitchyardError(err) ? err.code : 'not a SwitchyardError';
  }
}

/** Two in-process shards (users' memories, items) under one router, and the count over both. */
function node(clock = new ManualClock()) {
  const memories = new ExactIndex({ id: 'memories', dims: DIMS, clock, ttlMs: 60_000, sweepMs: 0 });
  const items = new ExactIndex({ id: 'items', dims: DIMS, clock });
  const router = new ShardRouter(
    [
      {
        name: 'c',
        dims: DIMS,
        metric: 'cos',
        shards: [
          {
            descriptor: {
              id: 'memories',
              collection: 'c',
              dims: DIMS,
              metric: 'cos',
              location: { kind: 'local', node: 'n' },
              key: { tier: 'hot', entityTypes: ['memory'] },
            },
            index: memories,
          },
          {
            descriptor: {
              id: 'items',
              collection: 'c',
              dims: DIMS,
              metric: 'cos',
              location: { kind: 'local', node: 'n' },
              key: { tier: 'warm' },
            },
            index: items,
          },
        ],
      },
    ],
    { node: 'n', clock },
  );
  const count = new TenantVectorCount(() => [memories, items]);
  const upsert = (records: VectorRecord[], cap: number) =>
    router.upsert('c', records, undefined, (w) => count.ensureRoom(w, cap));
  return { clock, memories, items, router, count, upsert };
}

describe('the per-tenant vector count of a node (#13, finding 8)', () => {
  it('counts new (tenant, id) pairs across shards once; updates and repeats take no room', async () => {
    const n = node();
    await n.upsert([rec('m1', { entityType: 'memory' }), rec('i1'), rec('i1'), rec('i2')], 3);
    expect(n.count.held('acme')).toBe(3);
    await n.upsert([rec('m1', { entityType: 'memory' }), rec('i2'), rec('i1', {}, 'globex')], 3);
    expect(Object.fromEntries(n.count.byTenant())).toEqual({ acme: 3, globex: 1 });
  });

  it('refuses a batch past the cap before any shard writes any of it', async () => {
    const n = node();
    await n.upsert([rec('i1'), rec('i2')], 3);
    const refused = n.upsert([rec('m1', { entityType: 'memory' }), rec('i3')], 3);
    await expect(refused).rejects.toMatchObject({ code: 'SY_ERR_TENANT_STORAGE_FULL' });
    expect(await n.memories.size()).toBe(0);
    expect(await n.items.size()).toBe(2);
  });

  it('gives back the room of deletes, purges and expired vectors', async () => {
    const n = node();
    await n.upsert(
      [
        rec('m1', { entityType: 'memory', userId: 'u1' }),
        rec('m2', { entityType: 'memory' }),
        rec('i1', { userId: 'u1' }),
        rec('i2'),
      ],
      4,
    );
    await expect(n.upsert([rec('i3')], 4)).rejects.toMatchObject({
      code: 'SY_ERR_TENANT_STORAGE_FULL',
    });
    expect(await n.router.delete('c', 'acme', ['i2'])).toBe(1);
    expect(n.count.held('acme')).toBe(3);
    expect(await n.router.purgeUser('acme', 'u1')).toBe(2);
    expect(n.count.held('acme')).toBe(1);
    n.clock.advance(60_000);
    expect(n.memories.sweep()).toBe(1);
    expect(n.count.held('acme')).toBe(0);
    await n.upsert([rec('i3'), rec('i4'), rec('i5'), rec('i6')], 4);
  });
});

describe('the vector rules every route obeys (#13, finding 2)', () => {
  const privacy = parseConfig('{}', '<inline>', '/tmp').config.privacy;
  const consent = new ConsentBook({
    clock: new ManualClock(),
    audit: new MemoryAuditSink(),
    defaults: {
      behavioral_inference: false,
      cross_service_personalization: false,
      location: false,
    },
  });
  const policy = new PolicyEngine(privacy, consent);

  it('admits a batch only when the policy module admits every record, naming the one refused', async () => {
    await consent.set('acme', 'u1', { location: true }, 'test');
    const ok = rec('a', { label: 'consented', userId: 'u1', attrs: { purpose: 'location' } });
    const no = rec('b', { label: 'consented', userId: 'u2', attrs: { purpose: 'location' } });
    expect(codeOf(() => admitVectors(policy, [ok, rec('p')]))).toBeUndefined();
    expect(codeOf(() => admitVectors(policy, [ok, no]))).toBe('SY_ERR_CONSENT_REQUIRED');
    expect(() => admitVectors(policy, [ok, no])).toThrow(/records\[1\]/);
  });

  it('lets a get return exactly what the search guard lets a search return', async () => {
    const n = node();
    await consent.set('acme', 'u3', { location: true }, 'test');
    const records = [
      rec('i1'),
      rec('i2', { label: 'consented', userId: 'u3', attrs: { purpose: 'location' } }),
      rec('i3', { label: 'consented', userId: 'u3' }),
      rec('i4', { label: 'restricted', userId: 'u4', attrs: { purpose: 'location' } }),
      rec('i5', {}, 'globex'),
    ];
    await n.items.upsert(records);
    const found = await n.items.search(Float32Array.from([1, 2, 0.5, 0.25]), 10, {
      tenant: 'acme',
      ...guardSearch(policy, 'acme', undefined),
    });
    const viaGet = records.filter((r) => mayRetrieve(policy, 'acme', r.meta)).map((r) => r.id);
    expect(found.map((h) => h.id).sort()).toEqual(viaGet.sort());
    expect(viaGet.sort()).toEqual(['i1', 'i2']);
  });
});
