import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startVectorNode, type VectorNode } from '../support/vector-node.js';
import { clustered } from '../support/vectors.js';

const DIMS = 8;

/** The `/v1/vectors` API of a real gateway: tenancy, bad input as JSON errors, consent purges. */
describe('vector collection API', () => {
  let node: VectorNode;
  const vs = clustered(30, DIMS, 3, 2);

  beforeAll(async () => {
    node = await startVectorNode({
      node: 'n1',
      vectors: {
        scan_workers: 0,
        collections: {
          memories: {
            dims: DIMS,
            shards: [
              {
                id: 'mem-hot',
                tier: 'hot',
                index: 'exact',
                entity_types: ['session'],
                ttl_ms: 60_000,
              },
              { id: 'mem-warm', tier: 'warm' },
            ],
          },
        },
      },
    });
  });
  afterAll(() => node?.close());

  const call = async (
    method: 'GET' | 'POST' | 'PUT',
    path: string,
    key: string,
    body?: unknown,
  ) => {
    const res = await request(`${node.url}${path}`, {
      method,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      ...(body === undefined
        ? {}
        : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
  };
  const rec = (i: number, over: Record<string, unknown> = {}) => ({
    id: `r${i}`,
    vector: Array.from(vs[i]!),
    meta: { label: 'public', entityType: i % 3 === 0 ? 'session' : 'item', ...over },
  });
  const ids = (json: Record<string, unknown>) =>
    (json['hits'] as { id: string }[]).map((h) => h.id);

  it('stores, finds and deletes a tenant’s vectors, across the hot and warm shards', async () => {
    const up = await call('POST', '/v1/vectors/memories/upsert', node.acmeKey, {
      records: [0, 1, 2, 3, 4, 5].map((i) => rec(i)),
    });
    expect(up).toMatchObject({ status: 200, json: { inserted: 6, updated: 0, evicted: 0 } });
    const found = await call('POST', '/v1/vectors/memories/search', node.acmeKey, {
      vector: Array.from(vs[3]!),
      k: 3,
    });
    expect(found.status).toBe(200);
    expect(ids(found.json)[0]).toBe('r3');
    expect((found.json['shards'] as unknown[]).length).toBe(2);
    const onlyHot = await call('POST', '/v1/vectors/memories/search', node.acmeKey, {
      vector: Array.from(vs[3]!),
      k: 10,
      route: { tiers: ['hot'] },
    });
    expect(ids(onlyHot.json).sort()).toEqual(['r0', 'r3']);
    const del = await call('POST', '/v1/vectors/memories/delete', node.acmeKey, {
      ids: ['r3', 'nope'],
    });
    expect(del).toMatchObject({ status: 200, json: { deleted: 1 } });
    const after = await call('POST', '/v1/vectors/memories/search', node.acmeKey, {
      vector: Array.from(vs[3]!),
      k: 10,
    });
    expect(ids(after.json)).not.toContain('r3');
  });

  it('never shows one tenant’s vectors to another, and refuses naming another tenant', async () => {
    const other = await call('POST', '/v1/vectors/memories/search', node.globexKey, {
      vector: Array.from(vs[0]!),
      k: 10,
    });
    expect(other).toMatchObject({ status: 200, json: { hits: [] } });
    const forged = await call('POST', '/v1/vectors/memories/upsert', node.globexKey, {
      records: [rec(7, { tenant: 'acme' })],
    });
    expect(forged.status).toBe(403);
    expect(forged.json['error']).toMatchObject({ code: 'SY_ERR_VECTOR_FORBIDDEN' });
    const viaShard = await call('POST', '/v1/vector-shards/mem-warm/search', node.globexKey, {
      vector: Array.from(vs[0]!),
      k: 3,
      tenant: 'acme',
    });
    expect(viaShard.status).toBe(403);
    expect(viaShard.json['error']).toMatchObject({ code: 'SY_ERR_VECTOR_FORBIDDEN' });
    const ownShard = await call('POST', '/v1/vector-shards/mem-warm/search', node.acmeKey, {
      vector: Array.from(vs[0]!),
      k: 3,
    });
    expect(ownShard.status).toBe(403);
    expect(ownShard.json['error']).toMatchObject({ code: 'SY_ERR_VECTOR_FORBIDDEN' });
  });

  it('answers bad input with a JSON 4xx and a stable code, never a 500', async () => {
    const cases: [string, string, unknown, number, string][] = [
      [
        '/v1/vectors/memories/search',
        'wrong dims',
        { vector: [1, 2, 3], k: 3 },
        400,
        'SY_ERR_VECTOR_INVALID',
      ],
      [
        '/v1/vectors/memories/search',
        'k = 0',
        { vector: Array.from(vs[0]!), k: 0 },
        400,
        'SY_ERR_VECTOR_INVALID',
      ],
      [
        '/v1/vectors/memories/search',
        'unknown field',
        { vector: Array.from(vs[0]!), kk: 1 },
        400,
        'SY_ERR_VECTOR_INVALID',
      ],
      [
        '/v1/vectors/memories/search',
        'overflow',
        `{"vector":[1e999,0,0,0,0,0,0,0],"k":1}`,
        400,
        'SY_ERR_INVALID_JSON',
      ],
      [
        '/v1/vectors/memories/upsert',
        'bad label',
        { records: [rec(1, { label: 'secret' })] },
        400,
        'SY_ERR_VECTOR_INVALID',
      ],
      ['/v1/vectors/memories/upsert', 'no records', { records: [] }, 400, 'SY_ERR_VECTOR_INVALID'],
      [
        '/v1/vectors/nowhere/search',
        'unknown collection',
        { vector: Array.from(vs[0]!), k: 1 },
        404,
        'SY_ERR_VECTOR_COLLECTION_NOT_FOUND',
      ],
      [
        '/v1/vector-shards/ghost/search',
        'unknown shard',
        { vector: Array.from(vs[0]!), k: 1 },
        404,
        'SY_ERR_VECTOR_SHARD_NOT_FOUND',
      ],
      ['/v1/vector-shards/mem-warm/explode', 'unknown op', {}, 404, 'SY_ERR_ROUTE_NOT_FOUND'],
    ];
    for (const [path, what, body, status, code] of cases) {
      // The shard API is for gateway nodes: admin keys only.
      const key = path.startsWith('/v1/vector-shards/') ? node.nodeKey : node.acmeKey;
      const r = await call('POST', path, key, body);
      expect({
        what,
        status: r.status,
        code: (r.json['error'] as { code?: string } | undefined)?.code,
      }).toEqual({
        what,
        status,
        code,
      });
    }
  });

  it('shows per-shard stats to admin keys only', async () => {
    const denied = await call('GET', '/v1/vectors/memories/stats', node.acmeKey);
    expect(denied.status).toBe(403);
    const ok = await call('GET', '/v1/vectors/memories/stats', node.nodeKey);
    expect(ok.status).toBe(200);
    const shards = ok.json['shards'] as { id: string; size: number; searches: number }[];
    expect(shards.map((s) => s.id)).toEqual(['mem-hot', 'mem-warm']);
    expect(shards.every((s) => s.searches > 0)).toBe(true);
    const metrics = await request(`${node.url}/metrics`);
    const text = await metrics.body.text();
    expect(text).toMatch(/switchyard_vector_shard_size\{shard="mem-warm"\} \d+/);
  });

  it('purges a user’s vectors when the user revokes consent', async () => {
    const grant = await call('PUT', '/v1/consent/bob', node.acmeKey, {
      purposes: { behavioral_inference: true },
    });
    expect(grant.status).toBe(200);
    const up = await call('POST', '/v1/vectors/memories/upsert', node.acmeKey, {
      records: [10, 11, 12].map((i) =>
        rec(i, { userId: 'bob', label: 'consented', attrs: { purpose: 'behavioral_inference' } }),
      ),
    });
    expect(up.status).toBe(200);
    const before = await call('POST', '/v1/vectors/memories/search', node.acmeKey, {
      vector: Array.from(vs[10]!),
      k: 10,
      filter: { userIds: ['bob'] },
    });
    expect(ids(before.json).sort()).toEqual(['r10', 'r11', 'r12']);
    const revoke = await call('POST', '/v1/consent/bob/revoke', node.acmeKey, { purposes: 'all' });
    expect(revoke.status).toBe(200);
    expect(revoke.json['purged']).toMatchObject({ vectors: 3 });
    const after = await call('POST', '/v1/vectors/memories/search', node.acmeKey, {
      vector: Array.from(vs[10]!),
      k: 10,
      filter: { userIds: ['bob'] },
    });
    expect(after.json['hits']).toEqual([]);
  });
});
