import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { startTestGateway, TEST_SECRET, type TestGateway } from '../support/gateway.js';

// The release manager on the gateway's request path: a journey's `classify: { slot }` stage is
// resolved per request by live experiments, shadow copies are mirrored off the request path,
// and rewards posted to /v1/feedback reach the experiment that served the inference.
const STORE = join(import.meta.dirname, '../../examples/superapp/models/intent');
const built = existsSync(join(STORE, '2', 'model.onnx'));
if (!built)
  console.warn(
    'release-gateway: demo models not built (run `npm run build && node dist/cli/index.js models build-demo`); skipping',
  );

const adminKey = generateKey('sk');
let gw: TestGateway;

interface RouteStage {
  readonly stage: string;
  readonly reason: string;
  readonly version?: string;
}
interface JourneyAnswer {
  readonly output: { readonly intent: string };
  readonly route: { readonly stages: readonly RouteStage[] };
}

const post = async (path: string, key: string, body: unknown, requestId?: string) => {
  const res = await request(`${gw.url}${path}`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${key}`,
      'content-type': 'application/json',
      ...(requestId === undefined ? {} : { 'x-request-id': requestId }),
    },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> };
};

const get = async (path: string) => {
  const res = await request(`${gw.url}${path}`, {
    headers: { authorization: `Bearer ${adminKey}` },
  });
  return (await res.body.json()) as Record<string, unknown>;
};

const TEXTS = [
  'where is my order',
  'my parcel is late again',
  'I cannot log in to my account',
  'refund my payment please',
  'cancel my subscription',
  'the app crashes on start',
];

describe.skipIf(!built)('release management on the request path', () => {
  beforeAll(async () => {
    gw = await startTestGateway({
      config: {
        tenants: {
          acme: {
            keys: [{ id: 'ops', hash: hashKey(adminKey, TEST_SECRET), admin: true }],
            models: ['*'],
          },
        },
        models: {
          intent: {
            backend: 'onnx',
            store: STORE,
            version_policy: 'all',
            default_version: '1',
            tier: 'edge',
          },
        },
        journeys: {
          triage: {
            class: 'interactive',
            stages: [
              { id: 'intent', classify: { slot: 'intent', model: 'intent', text: 'input.text' } },
              { id: 'reply', respond: { body: { intent: 'intent.label' } } },
            ],
          },
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
          {
            id: 'intent-int8-shadow',
            slot: 'intent',
            kind: 'shadow',
            variants: [{ name: 'production', model: 'intent', version: '1' }],
            shadow: { percent: 100, targets: [{ model: 'intent', version: '2' }] },
          },
        ],
      },
    });
  });

  afterAll(async () => {
    await gw?.close();
  });

  it('serves each user the version their variant names, sticky across requests, and says why in the route', async () => {
    const seen = new Map<string, string>();
    for (let u = 0; u < 40; u++) {
      for (const text of TEXTS.slice(0, 2)) {
        const r = await post('/v1/journeys/triage', adminKey, {
          input: { text },
          attributes: { user: `user-${u}` },
        });
        expect(r.status).toBe(200);
        const stage = (r.json as unknown as JourneyAnswer).route.stages.find(
          (s) => s.stage === 'intent',
        )!;
        const m = /exp:intent-ab\/(control|treatment)/.exec(stage.reason);
        expect(m, stage.reason).not.toBeNull();
        const version = stage.version!;
        expect(version).toBe(m![1] === 'control' ? '1' : '2');
        // The same user stays on the same variant.
        if (seen.has(`user-${u}`)) expect(seen.get(`user-${u}`)).toBe(version);
        seen.set(`user-${u}`, version);
      }
    }
    const versions = [...seen.values()];
    expect(versions).toContain('1');
    expect(versions).toContain('2');
  });

  it('credits feedback to the variant that served the inference, once', async () => {
    const r = await post(
      '/v1/journeys/triage',
      adminKey,
      { input: { text: TEXTS[0] }, attributes: { user: 'fb-user' } },
      'inference-fb-1',
    );
    expect(r.status).toBe(200);
    const fb = await post('/v1/feedback', adminKey, { inference_id: 'inference-fb-1', reward: 1 });
    expect(fb.status).toBe(200);
    expect(fb.json).toMatchObject({ experiment: 'intent-ab' });
    const again = await post('/v1/feedback', adminKey, {
      inference_id: 'inference-fb-1',
      reward: 1,
    });
    expect(again.status).toBe(404);
  });

  it('mirrors every request to the shadow version and records agreement, exposures per variant', async () => {
    for (let i = 0; i < 30; i++) {
      const r = await post('/v1/journeys/triage', adminKey, {
        input: { text: TEXTS[i % TEXTS.length] },
        attributes: { user: `shadow-${i}` },
      });
      expect(r.status).toBe(200);
    }
    // Shadow copies run after the answers; counters flush every 100 ms.
    let shadow: Record<string, number> = {};
    for (let i = 0; i < 50; i++) {
      shadow = ((await get('/admin/experiments/intent-int8-shadow/stats'))['shadow'] ??
        {}) as Record<string, number>;
      if ((shadow['shadow_completed'] ?? 0) >= 30) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(shadow['shadow_completed']).toBeGreaterThanOrEqual(30);
    // The int8 variant is a quantization of the same classifier: it mostly agrees.
    expect(shadow['shadow_agree_mean']).toBeGreaterThan(0.8);
    expect(shadow['shadow_latency_ms_mean']).toBeGreaterThan(0);
    const ab = await get('/admin/experiments/intent-ab/stats');
    const exposures = (ab['variants'] as { variant: string; exposures: number }[]).map(
      (v) => v.exposures,
    );
    expect(exposures.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(80);
    // The same, as Prometheus series.
    const metrics = await (await request(`${gw.url}/metrics`)).body.text();
    const series = (name: string, labels: string): number => {
      const line = metrics.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
      return line === undefined ? 0 : Number(line.split(' ').pop());
    };
    expect(
      series('switchyard_experiment_exposures_total', 'experiment="intent-ab",variant="control"') +
        series(
          'switchyard_experiment_exposures_total',
          'experiment="intent-ab",variant="treatment"',
        ),
    ).toBe(exposures.reduce((a, b) => a + b, 0));
    expect(
      series('switchyard_shadow_copies_total', 'experiment="intent-int8-shadow",result="agree"'),
    ).toBeGreaterThanOrEqual(Math.floor(shadow['shadow_completed']! * 0.8));
  });
});
