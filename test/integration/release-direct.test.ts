import { generateKeyPairSync } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import {
  openaiModel,
  startTestGateway,
  TEST_SECRET,
  type TestGateway,
} from '../support/gateway.js';
import { call, errorCode } from '../support/http-call.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * Releases act on every route (#14): a model's name is its release slot, so a direct OpenAI or
 * KServe call resolves through live experiments exactly as a journey stage does; policy
 * exceptions feed the rollback rules; a canary that completes its ramp is promoted.
 */
const STORE = join(import.meta.dirname, '../../examples/superapp/models/intent');
const built = existsSync(join(STORE, '2', 'model.onnx'));
if (!built)
  console.warn(
    'release-direct: demo models not built (npm run build first); skipping the ONNX cases',
  );

const admin = generateKey('sk');
const tenants = {
  acme: { keys: [{ id: 'ops', hash: hashKey(admin, TEST_SECRET), admin: true }], models: ['*'] },
};
const INPUT = {
  inputs: [
    { name: 'features', datatype: 'FP32', shape: [1, 512], data: new Array(512).fill(0.01) },
  ],
};

describe.skipIf(!built)('experiments on direct KServe calls', () => {
  let gw: TestGateway;
  const infer = (user: string) =>
    call(gw.url, 'POST', '/v2/models/intent/infer', admin, INPUT, { 'x-switchyard-user': user });

  beforeAll(async () => {
    gw = await startTestGateway({
      config: {
        tenants,
        models: {
          intent: { backend: 'onnx', store: STORE, version_policy: 'all', default_version: '1' },
        },
        state: { sqlite: 'state/release.db' },
        release: { evaluate_ms: 100, flush_ms: 100 },
        experiments: [
          {
            id: 'intent-ab',
            slot: 'intent',
            kind: 'ab',
            variants: [
              { name: 'control', model: 'intent', version: '1' },
              { name: 'treatment', model: 'intent', version: '2' },
            ],
          },
        ],
      },
    });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('assigns each user a variant, sticky across calls, serves its version and says why', async () => {
    const seen = new Map<string, string>();
    const counts = { control: 0, treatment: 0 };
    for (let round = 0; round < 2; round++) {
      for (let u = 0; u < 30; u++) {
        const a = await infer(`u${u}`);
        expect(a.status).toBe(200);
        const why = String(a.headers['x-switchyard-release']);
        expect(why).toMatch(/^exp:intent-ab\/(control|treatment)$/);
        const variant = why.split('/')[1] as 'control' | 'treatment';
        counts[variant]++;
        expect(a.body['model_version']).toBe(variant === 'control' ? '1' : '2');
        if (round === 0) seen.set(`u${u}`, variant);
        else expect(variant).toBe(seen.get(`u${u}`));
      }
    }
    expect(counts.control).toBeGreaterThan(5);
    expect(counts.treatment).toBeGreaterThan(5);
    // A pinned version in the path is served as asked, outside any experiment.
    const pinned = await call(gw.url, 'POST', '/v2/models/intent/versions/2/infer', admin, INPUT, {
      'x-switchyard-user': 'u0',
    });
    expect(pinned.body['model_version']).toBe('2');
    expect(pinned.headers['x-switchyard-release']).toBeUndefined();
    // Every direct call was an exposure of its variant.
    await gw.gateway.runtime().release!.manager.flush();
    const stats = await call(gw.url, 'GET', '/admin/experiments/intent-ab/stats', admin);
    const exposures = Object.fromEntries(
      (stats.body['variants'] as { variant: string; exposures: number }[])
        .filter((v) => v.exposures > 0)
        .map((v) => [v.variant, v.exposures]),
    );
    expect(exposures).toEqual(counts);
  });
});

describe('policy exceptions roll a release back (issue 14)', () => {
  let up: TestUpstream;
  let gw: TestGateway;
  beforeAll(async () => {
    up = await startUpstream(json(200, chatCompletion('ok')));
    gw = await startTestGateway({
      config: {
        tenants,
        models: {
          assistant: openaiModel(up.url, { tier: 'edge' }),
          'assistant-central': openaiModel(up.url, { tier: 'central' }),
        },
        privacy: {
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
        state: { sqlite: 'state/release.db' },
        release: { evaluate_ms: 100, flush_ms: 100 },
        experiments: [
          {
            id: 'central-canary',
            slot: 'assistant',
            kind: 'canary',
            variants: [
              { name: 'stable', model: 'assistant' },
              { name: 'canary', model: 'assistant-central' },
            ],
            ramp: { steps: [50], hold_s: 3600 },
            rules: { policy_exception_rate: 0.1, min_samples: 10, window_s: 30 },
          },
        ],
      },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await up.close();
  });

  it('rolls back a canary whose model may not see the requests’ data, then serves everyone on stable', async () => {
    const ask = (user: string) =>
      call(
        gw.url,
        'POST',
        '/v1/chat/completions',
        admin,
        { model: 'assistant', messages: [{ role: 'user', content: 'near me?' }] },
        {
          'x-switchyard-user': user,
          'x-switchyard-data-label': 'sensitive',
          'x-switchyard-data-purpose': 'location',
        },
      );
    for (let u = 0; u < 60; u++)
      await call(gw.url, 'PUT', `/v1/consent/u${u}`, admin, { purposes: { location: true } });
    const refused: string[] = [];
    for (let u = 0; u < 60; u++) {
      const a = await ask(`u${u}`);
      if (a.status === 403) {
        expect(errorCode(a)).toBe('SY_ERR_POLICY_DENIED');
        expect(a.headers['x-switchyard-release']).toBeUndefined();
        refused.push(`u${u}`);
      } else expect(a.status).toBe(200);
    }
    // The canary's users were refused: the central model may not see sensitive data.
    expect(refused.length).toBeGreaterThan(10);
    const manager = gw.gateway.runtime().release!.manager;
    await expect
      .poll(() => manager.experiment('central-canary')?.status, { timeout: 5_000 })
      .toBe('rolled_back');
    expect(manager.experiment('central-canary')?.reason).toContain('policy_exception_rate');
    for (const user of refused) expect((await ask(user)).status).toBe(200);
  });
});

describe.skipIf(!built)('a canary that completes its ramp', () => {
  const pair = generateKeyPairSync('ed25519');
  let dir: string;
  let gw: TestGateway | undefined;
  const start = async (promote: boolean) => {
    dir = mkdtempSync(join(tmpdir(), 'sy-store-'));
    cpSync(STORE, dir, { recursive: true });
    gw = await startTestGateway({
      config: {
        tenants,
        models: {
          intent: { backend: 'onnx', store: dir, version_policy: 'all', default_version: '1' },
        },
        state: { sqlite: 'state/release.db' },
        release: {
          evaluate_ms: 100,
          flush_ms: 100,
          promote_on_complete: promote,
          signing_keys: [
            {
              id: 'k1',
              public_key: pair.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
            },
          ],
        },
      },
    });
    const registry = gw.gateway.runtime().release!.registry;
    const by = { actor: 'key:test', reason: 'test' };
    await registry.push({ model: 'intent', version: '2', source: join(STORE, '2'), by });
    await registry.sign('intent', '2', 'k1', pair.privateKey, by);
    const created = await call(gw.url, 'POST', '/admin/experiments', admin, {
      id: 'intent-v2',
      slot: 'intent',
      kind: 'canary',
      variants: [
        { name: 'stable', model: 'intent', version: '1' },
        { name: 'canary', model: 'intent', version: '2' },
      ],
      ramp: { steps: [50, 100], hold_s: 0.3 },
      reason: 'ship int8',
    });
    expect(created.status).toBe(201);
    return gw.gateway.runtime().release!;
  };
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  it('promotes the canary’s version to production in the registry, and audits both', async () => {
    const release = await start(true);
    await expect
      .poll(() => release.manager.experiment('intent-v2')?.status, { timeout: 5_000 })
      .toBe('completed');
    const v = await release.store.getVersion('intent', '2');
    expect(v?.stage).toBe('production');
    const audit = await call(gw!.url, 'GET', '/admin/release/audit?limit=50', admin);
    const actions = (audit.body['entries'] as { action: string; target: string }[]).map(
      (e) => `${e.action} ${e.target}`,
    );
    expect(actions).toContain('experiment.complete intent-v2');
    expect(actions).toContain('model.promote intent@2');
  });

  it('stays at 100% without promoting when promote_on_complete is off', async () => {
    const release = await start(false);
    await expect
      .poll(() => release.manager.experiment('intent-v2')?.step, { timeout: 5_000 })
      .toBe(1);
    await new Promise((r) => setTimeout(r, 600));
    expect(release.manager.experiment('intent-v2')?.status).toBe('running');
    expect((await release.store.getVersion('intent', '2'))?.stage).toBe('staging');
  });
});
