import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codeOf, startDataGateway, type DataGateway } from '../support/data-gateway.js';

const DIMS = 8;
const vec = (i: number): number[] =>
  Array.from({ length: DIMS }, (_, d) => (d === i % DIMS ? 1 : 0.1));

/**
 * #13 finding 2: the node-to-node shard API stored and returned data the collection routes
 * refuse. It now needs an admin key, and every shard operation asks the same policy module as
 * the collection routes: ingestion for upserts, the retrieval guard for searches and gets.
 */
describe('the shard API and consent (#13, finding 2)', () => {
  let gw: DataGateway;
  let app: string;

  beforeAll(async () => {
    gw = await startDataGateway({
      config: {
        vectors: {
          scan_workers: 0,
          collections: {
            memories: { dims: DIMS, shards: [{ id: 'mem', tier: 'warm', index: 'exact' }] },
          },
        },
      },
    });
    app = gw.keys['app']!;
    // bob grants every purpose and stores two memories through the collection route: one for
    // location, one with no purpose (it needs every purpose, for storing and for reading).
    expect(
      (
        await gw.call('PUT', '/v1/consent/bob', app, {
          purposes: {
            behavioral_inference: true,
            cross_service_personalization: true,
            location: true,
          },
        })
      ).status,
    ).toBe(200);
    const up = await gw.call('POST', '/v1/vectors/memories/upsert', app, {
      records: [
        {
          id: 'b-any',
          vector: vec(0),
          meta: { label: 'consented', entityType: 'memory', userId: 'bob' },
        },
        {
          id: 'b-loc',
          vector: vec(1),
          meta: {
            label: 'consented',
            entityType: 'memory',
            userId: 'bob',
            attrs: { purpose: 'location' },
          },
        },
        { id: 'pub', vector: vec(2), meta: { label: 'public', entityType: 'item' } },
      ],
    });
    expect(up).toMatchObject({ status: 200, json: { inserted: 3 } });
    // Revoking location purges the location memory; the purpose-less one stays stored, but no
    // read may return it any more (bob no longer consents to every purpose).
    const revoke = await gw.call('POST', '/v1/consent/bob/revoke', app, { purposes: ['location'] });
    expect(revoke).toMatchObject({ status: 200, json: { purged: { vectors: 1 } } });
  }, 60_000);
  afterAll(() => gw?.close());

  const shard = (op: string, key: string, body: unknown) =>
    gw.call('POST', `/v1/vector-shards/mem/${op}`, key, body, { 'x-switchyard-node': 'local' });
  const size = async (): Promise<number> =>
    (await shard('stats', gw.nodeKey, {})).json['size'] as number;
  const bobLocation = (id: string) => ({
    id,
    vector: vec(3),
    meta: {
      tenant: 'acme',
      label: 'consented',
      entityType: 'memory',
      userId: 'bob',
      attrs: { purpose: 'location' },
    },
  });

  it('refuses every shard operation to a tenant key: the shard API is for gateway nodes', async () => {
    const before = await size();
    const calls = [
      shard('upsert', app, { records: [bobLocation('t1')] }),
      shard('upsert', app, {
        records: [
          {
            ...bobLocation('t2'),
            meta: { ...bobLocation('t2').meta, label: 'restricted', userId: 'carol' },
          },
        ],
      }),
      shard('search', app, { vector: vec(0), k: 10 }),
      shard('get', app, { id: 'b-any' }),
      shard('delete', app, { ids: ['pub'] }),
      shard('stats', app, {}),
    ];
    for (const r of await Promise.all(calls)) {
      expect(r.status).toBe(403);
      expect(codeOf(r)).toBe('SY_ERR_VECTOR_FORBIDDEN');
    }
    expect(await size()).toBe(before);
  });

  it('refuses, with an admin key, the records the collection route refuses: 403 SY_ERR_CONSENT_REQUIRED', async () => {
    const before = await size();
    const viaCollection = await gw.call('POST', '/v1/vectors/memories/upsert', app, {
      records: [{ ...bobLocation('c1'), meta: { ...bobLocation('c1').meta, tenant: undefined } }],
    });
    expect(viaCollection.status).toBe(403);
    expect(codeOf(viaCollection)).toBe('SY_ERR_CONSENT_REQUIRED');
    // bob's revoked purpose, a restricted record of a user who never consented, and a batch
    // where one record of several is refused: nothing of any of them is stored.
    const refused = [
      [bobLocation('s1')],
      [
        {
          ...bobLocation('s2'),
          meta: { tenant: 'acme', label: 'restricted', entityType: 'memory', userId: 'carol' },
        },
      ],
      [
        { id: 's3', vector: vec(4), meta: { tenant: 'acme', label: 'public', entityType: 'item' } },
        bobLocation('s4'),
      ],
    ];
    for (const records of refused) {
      const r = await shard('upsert', gw.nodeKey, { records });
      expect(r.status).toBe(403);
      expect(codeOf(r)).toBe(codeOf(viaCollection));
    }
    expect(await size()).toBe(before);
    // What the policy admits still goes through: node-to-node writes keep working.
    const ok = await shard('upsert', gw.nodeKey, {
      records: [
        { id: 's5', vector: vec(5), meta: { tenant: 'acme', label: 'public', entityType: 'item' } },
      ],
    });
    expect(ok).toMatchObject({ status: 200, json: { inserted: 1 } });
  });

  it('filters, with an admin key, what the collection route filters out of searches and gets', async () => {
    const viaCollection = await gw.call('POST', '/v1/vectors/memories/search', app, {
      vector: vec(0),
      k: 10,
    });
    const collectionIds = (viaCollection.json['hits'] as { id: string }[]).map((h) => h.id).sort();
    expect(collectionIds).not.toContain('b-any');
    const viaShard = await shard('search', gw.nodeKey, { vector: vec(0), k: 10, tenant: 'acme' });
    expect(viaShard.status).toBe(200);
    const shardIds = (viaShard.json['hits'] as { id: string }[]).map((h) => h.id).sort();
    expect(shardIds).toEqual(collectionIds);
    expect(shardIds).toContain('pub');
    // The record is still stored (it was not purged), but a get does not return it.
    const hidden = await shard('get', gw.nodeKey, { tenant: 'acme', id: 'b-any' });
    expect(hidden).toMatchObject({ status: 200, json: { record: null } });
    const shown = await shard('get', gw.nodeKey, { tenant: 'acme', id: 'pub' });
    expect((shown.json['record'] as { id: string } | null)?.id).toBe('pub');
  });

  it('refuses a fully revoked user’s records by either API, and returns none of them', async () => {
    const revoke = await gw.call('POST', '/v1/consent/bob/revoke', app, { purposes: 'all' });
    expect(revoke.status).toBe(200);
    const anyPurpose = {
      id: 'r1',
      vector: vec(6),
      meta: {
        tenant: 'acme',
        label: 'consented',
        entityType: 'memory',
        userId: 'bob',
        attrs: { purpose: 'behavioral_inference' },
      },
    };
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        shard('upsert', gw.nodeKey, { records: [{ ...anyPurpose, id: `r${i}` }] }),
      ),
    );
    expect(results.map((r) => r.status)).toEqual(results.map(() => 403));
    const found = await shard('search', gw.nodeKey, {
      vector: vec(6),
      k: 50,
      tenant: 'acme',
      filter: { userIds: ['bob'] },
    });
    expect(found).toMatchObject({ status: 200, json: { hits: [] } });
  });
});
