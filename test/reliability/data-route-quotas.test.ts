import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  codeOf,
  startDataGateway,
  type Answer,
  type DataGateway,
} from '../support/data-gateway.js';

const DIMS = 4;
const LIMIT = 5;
const BURST = 24;
const quota = { quotas: { window_s: 60, requests: LIMIT } };

/**
 * #13 finding 8: the feature, vector, consent and shard routes took no part in admission (50 of
 * 50 concurrent requests accepted at 5 allowed). Each now passes the same admission as a model
 * call: the key's request quota, the mode's shed classes.
 */
describe('data routes under admission (#13, finding 8)', () => {
  let gw: DataGateway;

  beforeAll(async () => {
    gw = await startDataGateway({
      appKeys: { features: quota, vectors: quota, consent: quota, roomy: {} },
      node: quota,
      config: {
        features: {
          definitions: {
            'user.score': {
              entity: 'user',
              type: 'float',
              label: 'public',
              lineage: { source: 'test', transformation: 'identity' },
            },
          },
        },
        vectors: {
          scan_workers: 0,
          collections: {
            memories: { dims: DIMS, shards: [{ id: 'mem', tier: 'warm', index: 'exact' }] },
          },
        },
      },
    });
  }, 60_000);
  afterAll(() => gw?.close());

  const vector = [1, 0, 0, 0];
  const families: Record<string, (key: string, i: number) => Promise<Answer>> = {
    features: (key, i) =>
      i % 2 === 0
        ? gw.call('POST', '/v1/features', key, {
            writes: [{ entity_id: `u${i}`, feature: 'user.score', value: 0.5 }],
          })
        : gw.call('GET', `/v1/features/u${i}`, key),
    vectors: (key, i) =>
      [
        () =>
          gw.call('POST', '/v1/vectors/memories/upsert', key, {
            records: [{ id: `v${i}`, vector, meta: { label: 'public', entityType: 'item' } }],
          }),
        () => gw.call('POST', '/v1/vectors/memories/search', key, { vector, k: 3 }),
        () => gw.call('POST', '/v1/vectors/memories/delete', key, { ids: [`v${i}`] }),
      ][i % 3]!(),
    consent: (key, i) =>
      [
        () => gw.call('GET', `/v1/consent/u${i}`, key),
        () => gw.call('PUT', `/v1/consent/u${i}`, key, { purposes: { location: true } }),
        () => gw.call('POST', `/v1/consent/u${i}/revoke`, key, { purposes: 'all' }),
      ][i % 3]!(),
  };

  const expectLimited = (answers: readonly Answer[]): void => {
    const ok = answers.filter((a) => a.status === 200);
    const limited = answers.filter((a) => a.status === 429);
    expect(ok.length + limited.length).toBe(answers.length);
    expect(ok.length).toBe(LIMIT);
    for (const a of limited) {
      expect(codeOf(a)).toBe('SY_ERR_RATE_LIMITED');
      expect(Number(a.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    }
  };

  for (const family of ['features', 'vectors', 'consent'] as const) {
    it(`admits only the key's quota of concurrent ${family} requests and answers the rest 429 with Retry-After`, async () => {
      const key = gw.keys[family]!;
      expectLimited(
        await Promise.all(Array.from({ length: BURST }, (_, i) => families[family]!(key, i))),
      );
    });
  }

  it("admits only the node key's quota of concurrent shard API requests", async () => {
    expectLimited(
      await Promise.all(
        Array.from({ length: BURST }, () =>
          gw.call('POST', '/v1/vector-shards/mem/search', gw.nodeKey, {
            vector,
            k: 3,
            tenant: 'acme',
          }),
        ),
      ),
    );
  });

  it('sheds data requests of a class the mode sheds, and serves them again once it lifts', async () => {
    const key = gw.keys['roomy']!;
    const batch = { 'x-switchyard-class': 'batch' };
    // The admin API is the control plane: it never passes admission, so it can lift the mode.
    const forced = await gw.call('PUT', '/admin/mode', gw.nodeKey, {
      mode: 'emergency',
      reason: 'data-route shed test',
    });
    expect(forced.status).toBe(200);
    try {
      const answers = await Promise.all([
        gw.call('GET', '/v1/features/u1', key, undefined, batch),
        gw.call('POST', '/v1/vectors/memories/search', key, { vector, k: 3 }, batch),
        gw.call('GET', '/v1/consent/u1', key, undefined, batch),
      ]);
      for (const a of answers) {
        expect(a.status).toBe(503);
        expect(codeOf(a)).toBe('SY_ERR_SHED');
        expect(Number(a.headers['retry-after'])).toBeGreaterThanOrEqual(1);
      }
    } finally {
      await gw.call('PUT', '/admin/mode', gw.nodeKey, { mode: 'normal', reason: 'done' });
    }
    const after = await gw.call('GET', '/v1/consent/u1', key, undefined, batch);
    expect(after.status).toBe(200);
  });
});
