import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { MemoryAuditSink } from '../../src/observability/audit-memory.js';
import { baseConfig, startTestGateway, TEST_SECRET, type TestGateway } from '../support/gateway.js';
import { call as callApi } from './privacy-support.js';

const lineage = { source: 'test', transformation: 'identity' };
const CONFIG = {
  log: { level: 'debug' },
  features: {
    definitions: {
      'user.rides_7d': {
        entity: 'user',
        type: 'int',
        min: 0,
        max: 1000,
        label: 'consented',
        purpose: 'behavioral_inference',
        lineage,
      },
      'user.home_city': {
        entity: 'user',
        type: 'string',
        label: 'sensitive',
        purpose: 'location',
        lineage,
      },
      'user.risk': {
        entity: 'user',
        type: 'float',
        label: 'restricted',
        purpose: 'behavioral_inference',
        lineage,
      },
      'user.tier': {
        entity: 'user',
        type: 'enum',
        values: ['basic', 'gold'],
        label: 'public',
        lineage,
      },
      'session.score': {
        entity: 'session',
        type: 'float',
        label: 'consented',
        purpose: 'behavioral_inference',
        ttl_ms: 600_000,
        lineage,
      },
    },
  },
  privacy: {
    node: { id: 'edge-eu-1', jurisdiction: 'eu' },
    jurisdictions: { eu: { nodes: ['regional-eu'] }, us: { nodes: ['edge-us-1'] } },
    labels: {
      sensitive: {
        ingestion: 'consent',
        retrieval: 'consent',
        model_input: 'consent',
        logging: 'deny',
        model_tiers: ['edge', 'regional'],
      },
    },
  },
  models: {
    'edge-model': { backend: 'openai', url: 'http://127.0.0.1:9/v1', tier: 'edge' },
    'central-model': { backend: 'openai', url: 'http://127.0.0.1:9/v1', tier: 'central' },
  },
};

/** Consent and policy labels enforced at the four points, over HTTP, on one gateway. */
describe('consent, policy labels and residency over HTTP', () => {
  let gw: TestGateway;
  const audit = new MemoryAuditSink();
  let otherKey: string;

  beforeAll(async () => {
    gw = await startTestGateway({ config: CONFIG, options: { audit } });
    // A second tenant, to prove consent records are per tenant.
    otherKey = generateKey('sk');
    const base = baseConfig(hashKey(gw.key, TEST_SECRET));
    gw.writeConfig({
      ...CONFIG,
      tenants: {
        ...(base['tenants'] as Record<string, unknown>),
        globex: { keys: [{ id: 'g1', hash: hashKey(otherKey, TEST_SECRET) }], models: ['*'] },
      },
    });
    expect((await gw.gateway.reload()).result).toBe('applied');
  });
  afterAll(async () => {
    await gw.close();
  });

  const call = (method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown, key?: string) =>
    callApi(gw.url, key ?? gw.key, method, path, body);
  const push = (writes: unknown[]) => call('POST', '/v1/features', { writes });

  it('starts every user with the configured default consent (opt-in: nothing granted)', async () => {
    const res = await call('GET', '/v1/consent/u0');
    expect(res).toEqual({
      status: 200,
      body: {
        user: 'u0',
        purposes: {
          behavioral_inference: false,
          cross_service_personalization: false,
          location: false,
        },
        updated_at: 0,
        version: 0,
      },
    });
  });

  it('refuses to store consented data without consent (403, nothing stored) and stores it once granted', async () => {
    const refused = await push([
      { entity_id: 'u1', feature: 'user.tier', value: 'gold' },
      { entity_id: 'u1', feature: 'user.rides_7d', value: 12 },
    ]);
    expect(refused.status).toBe(403);
    expect(refused.body.error).toMatchObject({
      code: 'SY_ERR_CONSENT_REQUIRED',
      type: 'permission_error',
      param: 'writes[1]',
    });
    expect(refused.body.error.message).toContain('no consent to behavioral_inference');
    expect((await call('GET', '/v1/features/u1')).body.features).toEqual({});

    const put = await call('PUT', '/v1/consent/u1', {
      purposes: { behavioral_inference: true, location: true },
    });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ version: 1, granted: ['behavioral_inference', 'location'] });
    const ok = await push([
      { entity_id: 'u1', feature: 'user.tier', value: 'gold' },
      { entity_id: 'u1', feature: 'user.rides_7d', value: 12 },
    ]);
    expect(ok).toEqual({ status: 200, body: { written: 2 } });
  });

  it('filters out of a read the values whose purpose the user has not granted', async () => {
    // Values stored behind the API (a bulk import) are still filtered when read.
    await gw.gateway.runtime().personalization!.features.write('acme', [
      { entityId: 'u3', feature: 'user.rides_7d', value: 5 },
      { entityId: 'u3', feature: 'user.tier', value: 'basic' },
    ]);
    const res = await call('GET', '/v1/features/u3');
    expect(Object.keys(res.body.features)).toEqual(['user.tier']);
    expect(res.body.withheld).toEqual([
      {
        feature: 'user.rides_7d',
        code: 'SY_ERR_CONSENT_REQUIRED',
        reason: 'no consent to behavioral_inference',
      },
    ]);
  });

  it('strips from model input what the named model may not see', async () => {
    await call('PUT', '/v1/consent/u4', {
      purposes: { behavioral_inference: true, location: true },
    });
    expect(
      (
        await push([
          { entity_id: 'u4', feature: 'user.rides_7d', value: 7 },
          { entity_id: 'u4', feature: 'user.home_city', value: 'Lyon' },
          { entity_id: 'u4', feature: 'user.risk', value: 0.4 },
        ])
      ).status,
    ).toBe(200);
    const plain = await call('GET', '/v1/features/u4');
    expect(Object.keys(plain.body.features).sort()).toEqual([
      'user.home_city',
      'user.rides_7d',
      'user.risk',
    ]);
    const central = await call('GET', '/v1/features/u4?model=central-model');
    expect(Object.keys(central.body.features)).toEqual(['user.rides_7d']);
    expect(central.body.withheld.map((w) => [w.feature, w.code]).sort()).toEqual([
      ['user.home_city', 'SY_ERR_POLICY_DENIED'],
      ['user.risk', 'SY_ERR_POLICY_DENIED'],
    ]);
    const edge = await call('GET', '/v1/features/u4?model=edge-model');
    expect(Object.keys(edge.body.features).sort()).toEqual(['user.home_city', 'user.rides_7d']);
    const unknown = await call('GET', '/v1/features/u4?model=nope');
    expect([unknown.status, unknown.body.error.code]).toEqual([404, 'SY_ERR_MODEL_NOT_FOUND']);
  });

  it('redacts from the logs the values their label or consent keeps out of logs', async () => {
    await call('PUT', '/v1/consent/u5', {
      purposes: { behavioral_inference: true, location: true },
    });
    await push([
      { entity_id: 'u5', feature: 'user.home_city', value: 'Lyon-7f3a' },
      { entity_id: 'u5', feature: 'user.rides_7d', value: 417 },
      { entity_id: 'u5', feature: 'user.risk', value: 0.9731 },
    ]);
    const line = gw.logs.find(
      (l) => l['msg'] === 'features written' && JSON.stringify(l).includes('"value":417'),
    );
    expect(line).toBeDefined();
    expect(line!['values']).toEqual([
      { feature: 'user.home_city', value: '[redacted:sensitive]' },
      { feature: 'user.rides_7d', value: 417 },
      { feature: 'user.risk', value: '[redacted:restricted]' },
    ]);
    expect(gw.logText()).not.toContain('Lyon-7f3a');
    expect(gw.logText()).not.toContain('0.9731');
  });

  it("purges the user's features at once on revocation, calls the other stores' hooks and audits it", async () => {
    const personal = gw.gateway.runtime().personalization!;
    const purgedUsers: string[] = [];
    const off = personal.consent.onPurge({
      name: 'vectors',
      purge: (r) => {
        purgedUsers.push(`${r.tenant}/${r.userId}`);
        return Promise.resolve(3);
      },
    });
    try {
      await call('PUT', '/v1/consent/u6', {
        purposes: { behavioral_inference: true, location: true },
      });
      await push([
        { entity_id: 'u6', feature: 'user.rides_7d', value: 1 },
        { entity_id: 'u6', feature: 'user.home_city', value: 'Nice' },
        { entity_id: 'u6', feature: 'user.tier', value: 'gold' },
        { entity_id: 's6', feature: 'session.score', value: 0.5, user_id: 'u6' },
      ]);
      const revoke = await call('POST', '/v1/consent/u6/revoke', {
        purposes: ['behavioral_inference'],
      });
      expect(revoke.status).toBe(200);
      expect(revoke.body).toMatchObject({
        revoked: ['behavioral_inference'],
        purged: { features: 2, vectors: 3 },
        purge_failed: {},
        purposes: { behavioral_inference: false, location: true },
      });
      expect(purgedUsers).toEqual(['acme/u6']);
      // Gone from the store itself, not merely filtered.
      const left = await personal.features.readEntity('acme', 'u6');
      expect(left.map((e) => e.feature).sort()).toEqual(['user.home_city', 'user.tier']);
      expect(await personal.features.readEntity('acme', 's6')).toEqual([]);
      const [entry] = await audit.list({ action: 'consent.revoke' });
      expect(entry).toMatchObject({
        action: 'consent.revoke',
        target: 'acme/u6',
        actor: expect.stringMatching(/^key:/) as string,
        detail: { purged: { features: 2, vectors: 3 } },
      });
      // Revoking everything (no body) purges the rest.
      const all = await callApi(gw.url, gw.key, 'POST', '/v1/consent/u6/revoke');
      expect(all.body).toMatchObject({ revoked: ['location'], purged: { features: 2 } });
    } finally {
      off();
    }
  });

  it('refuses data tagged with a jurisdiction this node does not belong to', async () => {
    const us = await push([
      { entity_id: 'u7', feature: 'user.tier', value: 'gold', jurisdiction: 'us' },
    ]);
    expect(us.status).toBe(403);
    expect(us.body.error.code).toBe('SY_ERR_RESIDENCY');
    expect(us.body.error.message).toContain('us data may not be on node edge-eu-1');
    const unknown = await push([
      { entity_id: 'u7', feature: 'user.tier', value: 'gold', jurisdiction: 'mars' },
    ]);
    expect(unknown.body.error.code).toBe('SY_ERR_RESIDENCY');
    const eu = await push([
      { entity_id: 'u7', feature: 'user.tier', value: 'gold', jurisdiction: 'eu' },
    ]);
    expect(eu.status).toBe(200);
    const read = await call('GET', '/v1/features/u7');
    expect(Object.keys(read.body.features)).toEqual(['user.tier']);
  });

  it('keeps consent per tenant: another tenant neither sees nor changes it', async () => {
    await call('PUT', '/v1/consent/shared-id', { purposes: { location: true } });
    const other = await call('GET', '/v1/consent/shared-id', undefined, otherKey);
    expect(other.body.purposes['location']).toBe(false);
    await call('POST', '/v1/consent/shared-id/revoke', { purposes: 'all' }, otherKey);
    const mine = await call('GET', '/v1/consent/shared-id');
    expect(mine.body.purposes['location']).toBe(true);
  });

  it('counts denials per enforcement point, consent purges and feature values in /metrics', async () => {
    const res = await request(`${gw.url}/metrics`);
    const text = await res.body.text();
    expect(text).toMatch(
      /switchyard_policy_denials_total\{point="ingestion",code="SY_ERR_CONSENT_REQUIRED",label="consented"\} [1-9]/,
    );
    expect(text).toMatch(
      /switchyard_policy_denials_total\{point="model_input",code="SY_ERR_POLICY_DENIED",label="sensitive"\} [1-9]/,
    );
    expect(text).toMatch(
      /switchyard_policy_denials_total\{point="logging",code="SY_ERR_POLICY_DENIED",label="sensitive"\} [1-9]/,
    );
    expect(text).toMatch(/switchyard_consent_purged_total\{store="features"\} [1-9]/);
    expect(text).toMatch(/switchyard_consent_changes_total\{action="revoke"\} [1-9]/);
    expect(text).toMatch(/switchyard_feature_values_total\{op="write",result="ok"\} [1-9]/);
  });

  it.each([
    ['a body without purposes', 'PUT', '/v1/consent/u8', { location: true }, 'the body must be'],
    [
      'an unknown purpose',
      'PUT',
      '/v1/consent/u8',
      { purposes: { ads: true } },
      'unknown purpose "ads"',
    ],
    [
      'a non-boolean grant',
      'PUT',
      '/v1/consent/u8',
      { purposes: { location: 'yes' } },
      'purposes.location must be true or false',
    ],
    [
      'a bad revoke list',
      'POST',
      '/v1/consent/u8/revoke',
      { purposes: ['ads'] },
      'purposes must be "all" or a list',
    ],
  ] as const)('answers %s with a clear 400', async (_name, method, path, body, text) => {
    const res = await call(method, path, body);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('SY_ERR_INVALID_REQUEST');
    expect(res.body.error.message).toContain(text);
  });
});
