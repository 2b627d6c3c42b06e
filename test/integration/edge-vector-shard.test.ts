import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey } from '../../src/core/api-key.js';
import { hashEmbedding } from '../../src/simulator/upstream-simulator.js';
import { openaiModel } from '../support/gateway.js';
import { startRelay, type Relay } from '../support/test-network.js';
import { startUpstream, type TestUpstream } from '../support/upstream.js';
import { freePort, startVectorNode, type VectorNode } from '../support/vector-node.js';

/**
 * An edge gateway (#17) holding the vector shard of its region (`eu`) in process, with the other
 * region's shard (`us`) on a regional gateway reached over HTTP. The edge reaches the regional
 * node through a TCP relay that counts shard calls and that the test closes (the parent gone).
 */

const DIMS = 16;

describe('an edge gateway with the vector shard of its region', () => {
  let upstream: TestUpstream;
  let regional: VectorNode;
  let edge: VectorNode;
  let relay: Relay;
  let shardCalls = 0;

  beforeAll(async () => {
    upstream = await startUpstream((_req, res, call) => {
      const body = JSON.parse(call.body) as { input?: string | string[] };
      const raw = JSON.stringify({
        object: 'list',
        data: [body.input ?? ''].flat().map((t, index) => ({
          object: 'embedding',
          index,
          embedding: hashEmbedding(t, DIMS),
        })),
        usage: { prompt_tokens: 2, total_tokens: 2 },
      });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(raw);
    });
    const port = await freePort();
    const regionalKey = generateKey('sk');
    process.env['SY_TEST_REGIONAL_NODE_KEY'] = regionalKey;
    regional = await startVectorNode({
      node: 'regional-us',
      port,
      nodeKey: regionalKey,
      extra: { node: { role: 'regional', region: 'us' } },
      vectors: {
        scan_workers: 0,
        collections: {
          memories: { dims: DIMS, index: 'exact', shards: [{ id: 'mem-us', geos: ['us'] }] },
        },
      },
    });
    relay = await startRelay(`http://127.0.0.1:${port}`, '127.0.0.1', (chunk) => {
      shardCalls += chunk.toString('latin1').match(/POST \/v1\/vector-shards\//g)?.length ?? 0;
    });
    edge = await startVectorNode({
      node: 'edge-eu',
      extra: {
        node: { role: 'edge', region: 'eu' },
        models: { emb: openaiModel(upstream.url, { operations: ['embeddings'] }) },
        journeys: {
          nearby: {
            stages: [
              {
                id: 'find',
                retrieve: { collection: 'memories', embed: 'emb', k: 3, geo: 'attr.geo' },
              },
              { id: 'out', respond: { body: { hits: 'find.hits', partial: 'find.partial' } } },
            ],
          },
        },
      },
      vectors: {
        scan_workers: 0,
        remote_timeout_ms: 500,
        collections: {
          memories: {
            dims: DIMS,
            index: 'exact',
            shards: [
              // The edge's own region: in this process.
              { id: 'mem-eu', geos: ['eu'] },
              {
                id: 'mem-us',
                geos: ['us'],
                node: 'regional-us',
                url: relay.url,
                api_key: { env: 'SY_TEST_REGIONAL_NODE_KEY' },
              },
            ],
          },
        },
      },
    });
    const records = ['eu', 'us'].flatMap((geo) =>
      [0, 1, 2, 3].map((i) => ({
        id: `${geo}-${i}`,
        vector: hashEmbedding(`${geo} item ${i}`, DIMS),
        meta: { label: 'public', entityType: 'item', geo },
      })),
    );
    const up = await post('/v1/vectors/memories/upsert', { records });
    expect(up.status).toBe(200);
  }, 60_000);

  afterAll(async () => {
    await edge?.close();
    await relay?.close();
    await regional?.close();
    await upstream?.close();
    delete process.env['SY_TEST_REGIONAL_NODE_KEY'];
  });

  async function post(path: string, body: unknown) {
    const res = await request(`${edge.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${edge.acmeKey}` },
      body: JSON.stringify(body),
    });
    return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
  }
  const nearby = async (geo: string) => {
    const r = await post('/v1/journeys/nearby', { input: { text: 'item' }, attributes: { geo } });
    expect(r.status).toBe(200);
    const out = r.json['output'] as { hits: { id: string }[]; partial: boolean };
    return { ids: out.hits.map((h) => h.id), partial: out.partial };
  };

  it('stores each region’s vectors on its own node: eu in the edge, us on the regional node', async () => {
    const size = (node: VectorNode, shard: string) =>
      node.gw.gateway
        .runtime()
        .vectors!.router.shards('memories')
        .find((s) => s.descriptor.id === shard)!
        .index.size();
    expect(await size(edge, 'mem-eu')).toBe(4);
    expect(await size(regional, 'mem-us')).toBe(4);
  });

  it('answers a journey’s retrieval for its region from the local shard, without a remote call', async () => {
    const before = shardCalls;
    const eu = await nearby('eu');
    expect(eu.ids).toHaveLength(3);
    expect(eu.ids.every((id) => id.startsWith('eu-'))).toBe(true);
    const api = await post('/v1/vectors/memories/search', {
      vector: hashEmbedding('item', DIMS),
      k: 3,
      route: { geo: 'eu' },
    });
    expect((api.json['shards'] as { shard: string }[]).map((s) => s.shard)).toEqual(['mem-eu']);
    expect(shardCalls).toBe(before);
  });

  it('reaches the other region’s shard on the regional node', async () => {
    const before = shardCalls;
    const us = await nearby('us');
    expect(us.ids).toHaveLength(3);
    expect(us.ids.every((id) => id.startsWith('us-'))).toBe(true);
    expect(shardCalls).toBe(before + 1);
  });

  it('keeps answering its region when the regional node is unreachable; the rest is partial', async () => {
    await relay.close();
    const eu = await nearby('eu');
    expect(eu).toMatchObject({ partial: false });
    expect(eu.ids.every((id) => id.startsWith('eu-'))).toBe(true);
    const us = await nearby('us');
    expect(us).toEqual({ ids: [], partial: true });
  });
});
