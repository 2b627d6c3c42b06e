import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { runCli } from '../../src/cli/program.js';
import {
  openaiModel,
  startTestGateway,
  TEST_SECRET,
  type TestGateway,
} from '../support/gateway.js';
import { captureIo } from '../support/cli-io.js';
import { call, errorCode } from '../support/http-call.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * Unit economics (#15 item 4): `/v1/feedback` outcomes join the ledger; `GET /admin/costs` and
 * `switchyard costs` answer cost per arm, per journey and per converted journey, with cache
 * hit rate, edge share and fallback rate.
 */

const admin = generateKey('sk');
const plain = generateKey('sk');
const USAGE = { prompt_tokens: 100, completion_tokens: 50 };
// big: 0.01 + 100*1/1000 + 50*2/1000 = 0.21; small (edge): 0.001 + 100*0.1/1000 + 50*0.2/1000 = 0.021
const PRICES = {
  big: { per_call: 0.01, in_per_1k: 1, out_per_1k: 2 },
  small: { per_call: 0.001, in_per_1k: 0.1, out_per_1k: 0.2 },
};
const COST = { big: 0.21, small: 0.021 };

interface Group {
  key: string;
  requests: number;
  calls: number;
  cost: number;
  cost_nanos: number;
  conversions: number;
  feedback: number;
  cost_per_conversion: number | null;
  cache_hit_rate: number | null;
  edge_share: number | null;
  fallback_rate: number | null;
  input_tokens: number;
}

describe('cost ledger: outcomes and unit economics', () => {
  let up: TestUpstream;
  let gw: TestGateway;
  const costs = async (q: string) => {
    const a = await call(gw.url, 'GET', `/admin/costs?${q}`, admin);
    expect(a.status, a.text).toBe(200);
    return a.body['groups'] as Group[];
  };

  beforeAll(async () => {
    up = await startUpstream(json(200, chatCompletion('fine', USAGE)));
    gw = await startTestGateway({
      config: {
        tenants: {
          acme: {
            keys: [
              { id: 'ops', hash: hashKey(admin, TEST_SECRET), admin: true },
              { id: 'app', hash: hashKey(plain, TEST_SECRET) },
            ],
            models: ['*'],
          },
        },
        models: {
          big: openaiModel(up.url, { cost: PRICES.big }),
          small: openaiModel(up.url, { cost: PRICES.small, tier: 'edge' }),
        },
        journeys: {
          support: {
            class: 'interactive',
            stages: [
              { id: 'cache', cache: { ttl_ms: 60_000 } },
              { id: 'answer', infer: { model: 'small', prompt: 'input.text' } },
            ],
          },
        },
        state: { sqlite: 'state/s.db' },
        release: { evaluate_ms: 100, flush_ms: 100 },
        experiments: [
          {
            id: 'price-ab',
            slot: 'big',
            kind: 'ab',
            variants: [
              { name: 'control', model: 'big' },
              { name: 'treatment', model: 'small' },
            ],
          },
        ],
        costs: { flush_ms: 60_000 },
      },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await up?.close();
  });

  it('answers cost per arm, per journey and per converted journey', async () => {
    // Direct calls to the experiment's slot: each user's arm shows in x-switchyard-release.
    const arms = { control: 0, treatment: 0 };
    for (let u = 0; u < 12; u++) {
      const a = await call(gw.url, 'POST', '/v1/chat/completions', admin, {
        model: 'big',
        messages: [{ role: 'user', content: 'hi' }],
        user: `u${u}`,
      });
      expect(a.status).toBe(200);
      arms[String(a.headers['x-switchyard-release']).split('/')[1] as 'control' | 'treatment']++;
    }
    expect(arms.control).toBeGreaterThan(0);
    expect(arms.treatment).toBeGreaterThan(0);

    // A journey: one miss, then two cache hits; the route carries each request's cost.
    const ids: string[] = [];
    let journeyCost = 0;
    for (let i = 0; i < 3; i++) {
      const a = await call(gw.url, 'POST', '/v1/journeys/support', admin, {
        input: { text: 'where is my order' },
      });
      expect(a.status, a.text).toBe(200);
      ids.push(String(a.headers['x-request-id']));
      journeyCost += (a.body['route'] as { cost: number }).cost;
    }
    expect(journeyCost).toBeCloseTo(COST.small, 9);
    // One converted journey, one that did not convert.
    const fb = await call(gw.url, 'POST', '/v1/feedback', admin, {
      inference_id: ids[0],
      reward: true,
    });
    expect(fb.status, fb.text).toBe(200);
    expect(fb.body['recorded']).toBe(true);
    expect(
      (await call(gw.url, 'POST', '/v1/feedback', admin, { inference_id: ids[1], reward: 0 }))
        .status,
    ).toBe(200);
    // One outcome per request.
    const again = await call(gw.url, 'POST', '/v1/feedback', admin, {
      inference_id: ids[0],
      reward: 1,
    });
    expect(again.status).toBe(404);
    expect(errorCode(again)).toBe('SY_ERR_INFERENCE_UNKNOWN');
    const outcomes = await gw.gateway.metrics.render();
    expect(outcomes).toMatch(/^switchyard_feedback_outcomes_total\{result="counted"\} 2$/m);
    expect(outcomes).toMatch(/^switchyard_feedback_outcomes_total\{result="duplicate"\} 1$/m);

    const byArm = await costs('group_by=arm');
    expect(byArm.map((g) => [g.key, g.calls])).toEqual([
      ['price-ab/control', arms.control],
      ['price-ab/treatment', arms.treatment],
    ]);
    expect(byArm[0]!.cost).toBeCloseTo(arms.control * COST.big, 9);
    expect(byArm[1]!.cost).toBeCloseTo(arms.treatment * COST.small, 9);
    expect(byArm[0]!.edge_share).toBe(0);
    expect(byArm[1]!.edge_share).toBe(1);

    const byJourney = await costs('group_by=journey');
    const support = byJourney.find((g) => g.key === 'support')!;
    expect(support).toMatchObject({
      requests: 3,
      calls: 1,
      conversions: 1,
      feedback: 2,
      fallback_rate: 0,
    });
    expect(support.cost).toBeCloseTo(journeyCost, 9);
    expect(support.cost_per_conversion).toBeCloseTo(journeyCost, 9);
    expect(support.cache_hit_rate).toBeCloseTo(2 / 3, 9);
    const direct = byJourney.find((g) => g.key === '')!;
    expect(direct).toMatchObject({
      requests: 12,
      calls: 12,
      conversions: 0,
      cost_per_conversion: null,
    });

    const byModel = await costs('group_by=model');
    expect(byModel.map((g) => [g.key, g.calls])).toEqual([
      ['big', arms.control],
      ['small', arms.treatment + 1],
    ]);
    const byTenant = await costs('group_by=tenant&tenant=acme&since=2000-01-01');
    expect(byTenant).toHaveLength(1);
    expect(byTenant[0]!.cost).toBeCloseTo(
      arms.control * COST.big + (arms.treatment + 1) * COST.small,
      9,
    );
    expect(await costs('group_by=day&until=2000-01-01')).toEqual([]);
  });

  it('refuses bad queries with 400 SY_ERR_INVALID_REQUEST, and non-admin keys', async () => {
    for (const q of [
      'group_by=colour',
      'since=yesterday',
      'shoe=1',
      'since=2026-01-02&until=2026-01-01',
      'group_by=day&group_by=model',
    ]) {
      const a = await call(gw.url, 'GET', `/admin/costs?${q}`, admin);
      expect(a.status, q).toBe(400);
      expect(errorCode(a), q).toBe('SY_ERR_INVALID_REQUEST');
      expect((a.body['error'] as { request_id: string }).request_id).toBeTruthy();
    }
    const refused = await call(gw.url, 'GET', '/admin/costs', plain);
    expect(refused.status).toBe(403);
    expect(errorCode(refused)).toBe('SY_ERR_ADMIN_REQUIRED');
  });

  it('switchyard costs reads the same totals (table and --json)', async () => {
    await gw.gateway.runtime().costs!.recorder.flush();
    const io = captureIo();
    expect(
      await runCli(['costs', '-c', gw.configPath, '--group-by', 'journey', '--json'], io),
    ).toBe(0);
    const cli = JSON.parse(io.stdout()) as { group_by: string; groups: Group[] };
    expect(cli.groups).toEqual(await costs('group_by=journey'));
    const t = captureIo();
    expect(await runCli(['costs', '-c', gw.configPath, '--group-by', 'journey'], t)).toBe(0);
    expect(t.stdout()).toMatch(/support\s+3\s+1\s+/);
    expect(t.stdout()).toContain('(none)');
    const bad = captureIo();
    expect(await runCli(['costs', '-c', gw.configPath, '--group-by', 'colour'], bad)).toBe(2);
  });
});

describe('costs.outcome_retention_days', () => {
  // One journey request, its feedback, and the same feedback 1.5 s later: with claims kept for
  // 0.5 s (swept every 50 ms) the repeat counts again; with the default 30 days it does not.
  const repeatCounts = async (days: number | undefined): Promise<boolean> => {
    const up = await startUpstream(json(200, chatCompletion('fine', USAGE)));
    const gw = await startTestGateway({
      config: {
        tenants: {
          acme: {
            keys: [{ id: 'ops', hash: hashKey(admin, TEST_SECRET), admin: true }],
            models: ['*'],
          },
        },
        models: { small: openaiModel(up.url, { cost: PRICES.small }) },
        journeys: {
          support: {
            class: 'interactive',
            stages: [{ id: 'answer', infer: { model: 'small', prompt: 'input.text' } }],
          },
        },
        costs: {
          flush_ms: 50,
          ...(days === undefined ? {} : { outcome_retention_days: days }),
        },
      },
    });
    try {
      const a = await call(gw.url, 'POST', '/v1/journeys/support', admin, {
        input: { text: 'hi' },
      });
      expect(a.status, a.text).toBe(200);
      const id = String(a.headers['x-request-id']);
      const fb = { inference_id: id, reward: true };
      expect((await call(gw.url, 'POST', '/v1/feedback', admin, fb)).body['recorded']).toBe(true);
      await new Promise((r) => setTimeout(r, 1_500));
      return (await call(gw.url, 'POST', '/v1/feedback', admin, fb)).body['recorded'] === true;
    } finally {
      await gw.close();
      await up.close();
    }
  };

  it('forgets a feedback claim after the retention, so a repeat counts again; keeps it within', async () => {
    expect(await repeatCounts(0.5 / 86_400)).toBe(true);
    expect(await repeatCounts(undefined)).toBe(false);
  });
});
