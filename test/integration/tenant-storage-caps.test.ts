import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import { DEFAULTS } from '../../src/config/defaults.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { call } from './privacy-support.js';

const DIMS = 4;

function config(caps: { vectors: number; features: number; consent: number }) {
  return {
    features: {
      max_values_per_tenant: caps.features,
      definitions: {
        'item.rank': {
          entity: 'item',
          type: 'int',
          label: 'public',
          lineage: { source: 'test', transformation: 'identity' },
        },
      },
    },
    privacy: { max_consent_records_per_tenant: caps.consent },
    vectors: {
      max_per_tenant: caps.vectors,
      scan_workers: 0,
      collections: { c: { dims: DIMS, shards: [{ id: 's', index: 'exact' }] } },
    },
    log: { level: 'warn' },
  };
}

describe('tenant storage caps in the config (#13, finding 8)', () => {
  it('default to safe values when the config names none', () => {
    const c = parseConfig('{}', '<inline>', '/tmp').config;
    expect(c.vectors.max_per_tenant).toBe(DEFAULTS.vectors.max_per_tenant);
    expect(c.features.max_values_per_tenant).toBe(DEFAULTS.features.max_values_per_tenant);
    expect(c.privacy.max_consent_records_per_tenant).toBe(
      DEFAULTS.privacy.max_consent_records_per_tenant,
    );
    for (const cap of [
      c.vectors.max_per_tenant,
      c.features.max_values_per_tenant,
      c.privacy.max_consent_records_per_tenant,
    ])
      expect(cap).toBeGreaterThan(0);
  });

  it('refuse caps that are not whole positive numbers', () => {
    for (const bad of [
      'vectors: { max_per_tenant: 0 }',
      'features: { max_values_per_tenant: 1.5 }',
      'privacy: { max_consent_records_per_tenant: -1 }',
    ])
      expect(() => parseConfig(bad, '<inline>', '/tmp')).toThrow();
  });
});

describe('tenant storage caps on reload', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ config: config({ vectors: 2, features: 2, consent: 2 }) });
  });
  afterAll(() => gw?.close());

  const vectors = (ids: string[]) =>
    call(gw.url, gw.key, 'POST', '/v1/vectors/c/upsert', {
      records: ids.map((id) => ({
        id,
        vector: [1, 0, 0, 0],
        meta: { label: 'public', entityType: 'item' },
      })),
    });
  const features = (ids: string[]) =>
    call(gw.url, gw.key, 'POST', '/v1/features', {
      writes: ids.map((id) => ({ entity_id: id, feature: 'item.rank', value: 1 })),
    });
  const consent = (user: string) =>
    call(gw.url, gw.key, 'PUT', `/v1/consent/${user}`, { purposes: { location: true } });

  it('take the new values for the next request, keeping what is stored', async () => {
    expect((await vectors(['a', 'b'])).status).toBe(200);
    expect((await features(['a', 'b'])).status).toBe(200);
    expect((await consent('a')).status).toBe(200);
    expect((await consent('b')).status).toBe(200);
    const full = [await vectors(['c']), await features(['c']), await consent('c')];
    expect(full.map((r) => [r.status, r.body.error.code])).toEqual(
      full.map(() => [429, 'SY_ERR_TENANT_STORAGE_FULL']),
    );
    gw.writeConfig(config({ vectors: 3, features: 3, consent: 3 }));
    expect((await gw.gateway.reload()).result).toBe('applied');
    expect(
      [await vectors(['c']), await features(['c']), await consent('c')].map((r) => r.status),
    ).toEqual([200, 200, 200]);
    gw.writeConfig(config({ vectors: 1, features: 1, consent: 1 }));
    expect((await gw.gateway.reload()).result).toBe('applied');
    // Lowered below what is held: nothing is dropped, updates pass, new items wait for room.
    expect((await vectors(['a'])).status).toBe(200);
    expect((await vectors(['d'])).status).toBe(429);
    expect((await features(['a'])).status).toBe(200);
    expect((await features(['d'])).status).toBe(429);
    expect((await consent('a')).status).toBe(200);
    expect((await consent('d')).status).toBe(429);
  });
});
