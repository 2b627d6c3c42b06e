import { generateKeyPairSync } from 'node:crypto';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { startTestGateway, TEST_SECRET, type TestGateway } from '../support/gateway.js';

const adminKey = generateKey('sk');
const userKey = generateKey('sk');
const pair = generateKeyPairSync('ed25519');
let gw: TestGateway;

interface Body {
  readonly error: { readonly code: string };
  readonly experiments: readonly { readonly spec: { readonly id: string } }[];
  readonly entries: readonly Record<string, unknown>[];
  readonly [k: string]: unknown;
}

const call = async (
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  key: string,
  body?: unknown,
) => {
  const res = await request(`${gw.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.statusCode, json: (await res.body.json()) as Body };
};

beforeAll(async () => {
  gw = await startTestGateway({
    config: {
      tenants: {
        acme: {
          keys: [
            { id: 'u', hash: hashKey(userKey, TEST_SECRET) },
            { id: 'ops', hash: hashKey(adminKey, TEST_SECRET), admin: true },
          ],
          models: ['*'],
        },
      },
      state: { sqlite: 'state/release.db' },
      release: {
        evaluate_ms: 100,
        signing_keys: [
          {
            id: 'k1',
            public_key: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
          },
        ],
      },
      experiments: [
        {
          id: 'intent-canary',
          slot: 'intent',
          kind: 'canary',
          variants: [
            { name: 'stable', model: 'intent', version: '1' },
            { name: 'canary', model: 'intent', version: '2' },
          ],
          ramp: { steps: [5, 25], hold_s: 3600 },
          rules: { p95_latency_ratio: 1.2, min_samples: 50, window_s: 30 },
        },
      ],
    },
  });
});

afterAll(async () => {
  await gw?.close();
});

describe('the release admin API', () => {
  it('refuses non-admin keys with a JSON error', async () => {
    const r = await call('GET', '/admin/experiments', userKey);
    expect(r.status).toBe(403);
    expect(r.json.error.code).toBe('SY_ERR_ADMIN_REQUIRED');
  });

  it('answers feedback for an unknown inference id with 404 and a stable code', async () => {
    const r = await call('POST', '/v1/feedback', userKey, { inference_id: 'nope', reward: 1 });
    expect(r.status).toBe(404);
    expect(r.json.error.code).toBe('SY_ERR_INFERENCE_UNKNOWN');
    const bad = await call('POST', '/v1/feedback', userKey, { inference_id: 'x', reward: 7 });
    expect(bad.status).toBe(400);
  });

  it('creates the experiments declared in config and serves them with stats', async () => {
    const list = await call('GET', '/admin/experiments', adminKey);
    expect(list.status).toBe(200);
    expect(list.json.experiments.map((e) => e.spec.id)).toEqual(['intent-canary']);
    const stats = await call('GET', '/admin/experiments/intent-canary/stats', adminKey);
    expect(stats.status).toBe(200);
    expect(stats.json).toMatchObject({
      id: 'intent-canary',
      status: 'running',
      srm: { mismatch: false },
    });
    const audit = await call('GET', '/admin/release/audit?target=intent-canary', adminKey);
    expect(audit.json.entries[0]).toMatchObject({
      actor: 'config',
      action: 'experiment.create',
    });
  });

  it('creates, pauses and deletes an experiment over HTTP, refusing invalid ones with every problem', async () => {
    const spec = {
      id: 'ranker-ab',
      slot: 'ranker',
      kind: 'ab',
      layer: 'ranking',
      variants: [
        { name: 'control', model: 'ranker', version: '1' },
        { name: 'treatment', model: 'ranker', version: '2' },
      ],
      reason: 'test the new ranker',
    };
    const created = await call('POST', '/admin/experiments', adminKey, spec);
    expect(created.status).toBe(201);
    const again = await call('POST', '/admin/experiments', adminKey, spec);
    expect(again.json.error.code).toBe('SY_ERR_REGISTRY_CONFLICT');
    const invalid = await call('POST', '/admin/experiments', adminKey, {
      ...spec,
      id: 'x',
      kind: 'canary',
      unknown: 1,
    });
    expect(invalid.status).toBe(400);
    expect(invalid.json.error.code).toBe('SY_ERR_REGISTRY_INVALID');
    const paused = await call('POST', '/admin/experiments/ranker-ab/status', adminKey, {
      status: 'paused',
      reason: 'check',
    });
    expect(paused.json['status']).toBe('paused');
    const del = await call('DELETE', '/admin/experiments/ranker-ab?reason=done', adminKey);
    expect(del.status).toBe(200);
    const gone = await call('GET', '/admin/experiments/ranker-ab', adminKey);
    expect(gone.status).toBe(404);
  });

  it('refuses to promote an unknown version and answers registry listings', async () => {
    const r = await call('POST', '/admin/models/intent/versions/9/promote', adminKey, {
      stage: 'production',
      reason: 'go',
    });
    expect(r.status).toBe(404);
    expect(r.json.error.code).toBe('SY_ERR_REGISTRY_NOT_FOUND');
    const t = await call('POST', '/admin/models/..%2Fetc/versions/1/promote', adminKey, {
      stage: 'production',
      reason: 'go',
    });
    expect(t.status).toBe(400);
    const list = await call('GET', '/admin/models', adminKey);
    expect(list.json).toEqual({ models: [] });
  });
});
