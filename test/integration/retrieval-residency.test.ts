import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey } from '../../src/core/api-key.js';
import { freePort, startVectorNode, type VectorNode } from '../support/vector-node.js';
import { clustered } from '../support/vectors.js';

const DIMS = 16;

/**
 * Two node sets over real HTTP: `eu-1` holds the `eu` shard, `us-1` the shard for `us` and
 * untagged data. Both nodes run the same collection config, each reaching the other's shard as a
 * remote shard. Data tagged `eu` must never be stored on, or returned to, the `us` node.
 */
describe('vector residency across two gateway nodes', () => {
  let eu: VectorNode;
  let us: VectorNode;
  const vs = clustered(40, DIMS, 4, 3);

  beforeAll(async () => {
    const ports = { eu: await freePort(), us: await freePort() };
    const keys = { eu: generateKey('sk'), us: generateKey('sk') };
    process.env['SY_TEST_EU_NODE_KEY'] = keys.eu;
    process.env['SY_TEST_US_NODE_KEY'] = keys.us;
    const vectors = {
      scan_workers: 0,
      collections: {
        memories: {
          dims: DIMS,
          shards: [
            {
              id: 'mem-eu',
              jurisdictions: ['eu'],
              node: 'eu-1',
              url: `http://127.0.0.1:${ports.eu}`,
              api_key: { env: 'SY_TEST_EU_NODE_KEY' },
            },
            {
              id: 'mem-us',
              jurisdictions: ['us', null],
              node: 'us-1',
              url: `http://127.0.0.1:${ports.us}`,
              api_key: { env: 'SY_TEST_US_NODE_KEY' },
            },
          ],
        },
      },
    };
    const jurisdictions = { eu: { nodes: ['eu-1'] }, us: { nodes: ['us-1'] } };
    eu = await startVectorNode({
      node: 'eu-1',
      jurisdiction: 'eu',
      jurisdictions,
      vectors,
      port: ports.eu,
      nodeKey: keys.eu,
    });
    us = await startVectorNode({
      node: 'us-1',
      jurisdiction: 'us',
      jurisdictions,
      vectors,
      port: ports.us,
      nodeKey: keys.us,
    });
  });
  afterAll(async () => {
    await eu?.close();
    await us?.close();
  });

  const post = async (
    node: VectorNode,
    path: string,
    body: unknown,
    key: string,
    headers: Record<string, string> = {},
  ) => {
    const res = await request(`${node.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}`, ...headers },
      body: JSON.stringify(body),
    });
    return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
  };
  const record = (i: number, jurisdiction?: string) => ({
    id: `r${i}`,
    vector: Array.from(vs[i]!),
    meta: {
      label: 'public',
      entityType: 'item',
      ...(jurisdiction === undefined ? {} : { jurisdiction }),
    },
  });
  const localSize = async (node: VectorNode, shard: string) =>
    node.gw.gateway
      .runtime()
      .vectors!.router.shards('memories')
      .find((s) => s.descriptor.id === shard)!
      .index.size();

  it('stores eu data only on the eu node, and untagged data on the us node, from either node', async () => {
    const a = await post(
      eu,
      '/v1/vectors/memories/upsert',
      { records: [0, 1, 2, 3, 4].map((i) => record(i, 'eu')) },
      eu.acmeKey,
    );
    expect(a.status).toBe(200);
    const b = await post(
      eu,
      '/v1/vectors/memories/upsert',
      { records: [10, 11, 12].map((i) => record(i)) },
      eu.acmeKey,
    );
    expect(b.status).toBe(200);
    const c = await post(
      us,
      '/v1/vectors/memories/upsert',
      { records: [20, 21].map((i) => record(i, 'us')) },
      us.acmeKey,
    );
    expect(c.status).toBe(200);
    expect(await localSize(eu, 'mem-eu')).toBe(5);
    expect(await localSize(us, 'mem-us')).toBe(5);
  });

  it('refuses eu data arriving at the us node with 403 SY_ERR_RESIDENCY, by either API', async () => {
    const viaCollection = await post(
      us,
      '/v1/vectors/memories/upsert',
      { records: [record(5, 'eu')] },
      us.acmeKey,
    );
    expect(viaCollection.status).toBe(403);
    expect(viaCollection.json['error']).toMatchObject({ code: 'SY_ERR_RESIDENCY' });
    const viaShard = await post(
      us,
      '/v1/vector-shards/mem-us/upsert',
      { records: [{ ...record(6, 'eu'), meta: { ...record(6, 'eu').meta, tenant: 'acme' } }] },
      us.nodeKey,
      { 'x-switchyard-node': 'eu-1' },
    );
    expect(viaShard.status).toBe(403);
    expect(viaShard.json['error']).toMatchObject({ code: 'SY_ERR_RESIDENCY' });
    expect(await localSize(us, 'mem-us')).toBe(5);
  });

  it('never returns eu data to the us node, even for a query sitting on it', async () => {
    for (const i of [0, 1, 2, 3, 4]) {
      const r = await post(
        us,
        '/v1/vectors/memories/search',
        { vector: Array.from(vs[i]!), k: 10 },
        us.acmeKey,
      );
      expect(r.status).toBe(200);
      expect(r.json['partial']).toBe(false);
      const hits = r.json['hits'] as { id: string; meta: { jurisdiction?: string } }[];
      expect(hits.length).toBeGreaterThan(0);
      expect(hits.some((h) => h.meta.jurisdiction === 'eu')).toBe(false);
    }
  });

  it('serves eu data on the eu node, with untagged data from the us node merged in', async () => {
    const r = await post(
      eu,
      '/v1/vectors/memories/search',
      { vector: Array.from(vs[0]!), k: 10 },
      eu.acmeKey,
    );
    const hits = r.json['hits'] as { id: string; meta: { jurisdiction?: string } }[];
    expect(hits[0]!.id).toBe('r0');
    expect(hits.some((h) => h.meta.jurisdiction === undefined)).toBe(true);
    expect(hits.some((h) => h.meta.jurisdiction === 'us')).toBe(false);
    expect((r.json['shards'] as { node: string }[]).map((s) => s.node).sort()).toEqual([
      'eu-1',
      'us-1',
    ]);
  });

  it('filters on the eu node itself when another node asks its shard for eu data directly', async () => {
    const asUs = await post(
      eu,
      '/v1/vector-shards/mem-eu/search',
      { vector: Array.from(vs[0]!), k: 10, tenant: 'acme' },
      eu.nodeKey,
      { 'x-switchyard-node': 'us-1' },
    );
    expect(asUs.status).toBe(200);
    expect(asUs.json['hits']).toEqual([]);
    const asEu = await post(
      eu,
      '/v1/vector-shards/mem-eu/search',
      { vector: Array.from(vs[0]!), k: 10, tenant: 'acme' },
      eu.nodeKey,
      { 'x-switchyard-node': 'eu-1' },
    );
    expect((asEu.json['hits'] as unknown[]).length).toBe(5);
  });
});
