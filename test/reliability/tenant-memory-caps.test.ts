import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/core/random.js';
import {
  codeOf,
  startDataGateway,
  type Answer,
  type DataGateway,
} from '../support/data-gateway.js';

const DIMS = 48;
const CAPS = { vectors: 2_000, features: 1_000, consent: 50 };
const rnd = seededRandom(13);
const vector = (): number[] => Array.from({ length: DIMS }, () => Math.round(rnd() * 1e4) / 1e4);
const records = (prefix: string, from: number, n: number, meta: Record<string, unknown> = {}) =>
  Array.from({ length: n }, (_, i) => ({
    id: `${prefix}${from + i}`,
    vector: vector(),
    meta: { label: 'public', entityType: 'item', ...meta },
  }));

function expectFull(a: Answer): void {
  expect(a.status).toBe(429);
  expect(codeOf(a)).toBe('SY_ERR_TENANT_STORAGE_FULL');
}

/**
 * #13 finding 8: one tenant key grew the gateway's RSS by 214 MB with vectors and feature values,
 * and nothing capped it. Each kind of tenant data now has a per-tenant cap, counted exactly
 * (deletes and purges free room) and refused at ingestion with 429 SY_ERR_TENANT_STORAGE_FULL.
 */
describe('tenant storage caps (#13, finding 8)', () => {
  let gw: DataGateway;
  let app: string;

  beforeAll(async () => {
    gw = await startDataGateway({
      config: {
        features: {
          max_values_per_tenant: CAPS.features,
          definitions: {
            'user.score': {
              entity: 'user',
              type: 'float',
              label: 'consented',
              purpose: 'behavioral_inference',
              lineage: { source: 'test', transformation: 'identity' },
            },
            'item.rank': {
              entity: 'item',
              type: 'int',
              label: 'public',
              lineage: { source: 'test', transformation: 'identity' },
            },
          },
        },
        privacy: { max_consent_records_per_tenant: CAPS.consent },
        vectors: {
          max_per_tenant: CAPS.vectors,
          scan_workers: 0,
          collections: {
            // Two shards: the cap counts the tenant's vectors on every shard of the node.
            memories: {
              dims: DIMS,
              shards: [
                { id: 'mem-user', tier: 'warm', index: 'exact', entity_types: ['memory'] },
                { id: 'mem-item', tier: 'warm', index: 'exact' },
              ],
            },
          },
        },
      },
    });
    app = gw.keys['app']!;
  }, 60_000);
  afterAll(() => gw?.close());

  const upsert = (recs: unknown[], key = app) =>
    gw.call('POST', '/v1/vectors/memories/upsert', key, { records: recs });
  const shardSize = async (id: string): Promise<number> =>
    (await gw.call('POST', `/v1/vector-shards/${id}/stats`, gw.nodeKey, {})).json['size'] as number;
  const grant = (user: string) =>
    gw.call('PUT', `/v1/consent/${user}`, app, {
      purposes: { behavioral_inference: true, cross_service_personalization: true, location: true },
    });

  it('refuses vectors past the cap by either API, storing nothing of the batch, and frees room on deletes and purges', async () => {
    expect((await grant('dan')).status).toBe(200);
    const dan = records('dan', 0, 10, { label: 'consented', entityType: 'memory', userId: 'dan' });
    expect((await upsert(dan)).status).toBe(200);
    for (let i = 0; i < CAPS.vectors - 10; i += 995)
      expect((await upsert(records('v', i, Math.min(995, CAPS.vectors - 10 - i)))).status).toBe(
        200,
      );
    expect((await shardSize('mem-user')) + (await shardSize('mem-item'))).toBe(CAPS.vectors);

    // One new record in a batch of updates is refused, and nothing of the batch is stored.
    const mixed = [...records('v', 0, 5), ...records('new', 0, 1)];
    expectFull(await upsert(mixed));
    expect(await shardSize('mem-item')).toBe(CAPS.vectors - 10);
    // Updates of what the tenant holds take no room.
    expect(await upsert(records('v', 0, 500))).toMatchObject({
      status: 200,
      json: { updated: 500 },
    });
    // The shard API counts the same vectors (a node writing to this node's shard).
    expectFull(
      await gw.call('POST', '/v1/vector-shards/mem-item/upsert', gw.nodeKey, {
        records: records('node', 0, 1, { tenant: 'acme' }),
      }),
    );
    expect(await gw.metric('switchyard_tenant_stored', { kind: 'vectors', tenant: 'acme' })).toBe(
      CAPS.vectors,
    );
    expect(
      await gw.metric('switchyard_tenant_storage_full_total', { kind: 'vectors', tenant: 'acme' }),
    ).toBe(2);

    // Deletes free exactly their room.
    const del = await gw.call('POST', '/v1/vectors/memories/delete', app, {
      ids: ['v0', 'v1', 'v2'],
    });
    expect(del).toMatchObject({ status: 200, json: { deleted: 3 } });
    expect((await upsert(records('new', 0, 3))).status).toBe(200);
    expectFull(await upsert(records('new', 3, 1)));
    // A consent revocation's purge frees the room of what it purged.
    const revoke = await gw.call('POST', '/v1/consent/dan/revoke', app, { purposes: 'all' });
    expect(revoke).toMatchObject({ status: 200, json: { purged: { vectors: 10 } } });
    expect((await upsert(records('new', 3, 10))).status).toBe(200);
    expectFull(await upsert(records('new', 13, 1)));
  });

  it('refuses feature values past the cap, and frees room on purges', async () => {
    expect((await grant('erin')).status).toBe(200);
    const push = (writes: unknown[]) => gw.call('POST', '/v1/features', app, { writes });
    const erin = Array.from({ length: 20 }, (_, i) => ({
      entity_id: `s${i}`,
      feature: 'user.score',
      value: 0.5,
      user_id: 'erin',
    }));
    expect(await push(erin)).toMatchObject({ status: 200, json: { written: 20 } });
    const items = (from: number, n: number) =>
      Array.from({ length: n }, (_, i) => ({
        entity_id: `i${from + i}`,
        feature: 'item.rank',
        value: i,
      }));
    expect((await push(items(0, CAPS.features - 20))).status).toBe(200);
    expectFull(await push([...items(0, 10), ...items(CAPS.features, 1)]));
    expect((await push(items(0, 500))).status).toBe(200);
    expect(
      await gw.metric('switchyard_tenant_stored', { kind: 'feature_values', tenant: 'acme' }),
    ).toBe(CAPS.features);
    const revoke = await gw.call('POST', '/v1/consent/erin/revoke', app, { purposes: 'all' });
    expect(revoke).toMatchObject({ status: 200, json: { purged: { features: 20 } } });
    expect((await push(items(CAPS.features, 20))).status).toBe(200);
    expectFull(await push(items(CAPS.features + 20, 1)));
  });

  it('refuses consent records for users past the cap, but never a revocation', async () => {
    const held =
      (await gw.metric('switchyard_tenant_stored', { kind: 'consent_records', tenant: 'acme' })) ??
      0;
    for (let i = held; i < CAPS.consent; i++) expect((await grant(`c${i}`)).status).toBe(200);
    expectFull(await grant('one-too-many'));
    // A user already recorded may change their mind; a new one may always withdraw consent.
    expect((await grant(`c${CAPS.consent - 1}`)).status).toBe(200);
    const revoke = await gw.call('POST', '/v1/consent/one-too-many/revoke', app, {
      purposes: 'all',
    });
    expect(revoke.status).toBe(200);
    expect(
      await gw.metric('switchyard_tenant_storage_full_total', {
        kind: 'consent_records',
        tenant: 'acme',
      }),
    ).toBe(1);
  });

  it('keeps the gateway’s memory bounded while it refuses a flood of vectors', async () => {
    expectFull(await upsert(records('flood', 0, 1)));
    const before = gw.rssMb();
    let refused = 0;
    for (let round = 0; round < 25; round++) {
      const answers = await Promise.all(
        Array.from({ length: 4 }, (_, j) =>
          upsert(records('flood', (round * 4 + j) * 1_000, 1_000)),
        ),
      );
      for (const a of answers) if (a.status === 429) refused++;
    }
    expect(refused).toBe(100);
    const grown = gw.rssMb() - before;
    // 100,000 vectors of 48 floats held would take well over 60 MB; refused, only parsing garbage.
    expect(grown).toBeLessThan(40);
    expect(await gw.metric('switchyard_tenant_stored', { kind: 'vectors', tenant: 'acme' })).toBe(
      CAPS.vectors,
    );
  });
});
