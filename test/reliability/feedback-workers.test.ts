import type { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { TEST_SECRET } from '../support/gateway.js';
import { pinTwoWorkers, poolCall, type PoolAnswer } from '../support/worker-pools.js';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * `/v1/feedback` outcomes with `serve --workers 2` sharing one SQLite file (#15, #17): each check
 * sends the request through a connection pinned to one worker and the feedback through one pinned
 * to the other. With the inference log on, the other worker finds the request's cost key in it
 * (the read has every worker write its buffer first) and the outcome counts once; with the log
 * off, only the worker that served the request can join it. The experiment's reward is credited
 * once by the worker that counted the outcome, from the exposure the serving worker wrote when
 * asked to.
 */

const app = generateKey('sk');
const ops = generateKey('sk');
const other = generateKey('sk');

interface Group {
  key: string;
  requests: number;
  feedback: number;
  conversions: number;
}

function config(upstream: string, logOn: boolean): Record<string, unknown> {
  return {
    tenants: {
      acme: {
        keys: [
          { id: 'app', hash: hashKey(app, TEST_SECRET) },
          { id: 'ops', hash: hashKey(ops, TEST_SECRET), admin: true },
        ],
        models: ['*'],
      },
      beta: { keys: [{ id: 'b', hash: hashKey(other, TEST_SECRET) }], models: ['*'] },
    },
    models: {
      small: { backend: 'openai', url: `${upstream}/v1`, cost: { per_call: 0.001 } },
      reco: { backend: 'openai', url: `${upstream}/v1`, cost: { per_call: 0.001 } },
      'reco-2': { backend: 'openai', url: `${upstream}/v1`, cost: { per_call: 0.001 } },
    },
    experiments: [
      {
        id: 'reco-ab',
        slot: 'reco',
        kind: 'ab',
        variants: [
          { name: 'one', model: 'reco' },
          { name: 'two', model: 'reco-2' },
        ],
      },
    ],
    // Exposures too: only a lookup that has every worker write its exposures first finds one.
    release: { flush_ms: 600_000 },
    journeys: {
      ask: {
        class: 'interactive',
        stages: [{ id: 'answer', infer: { model: 'small', prompt: 'input.text' } }],
      },
    },
    // Written behind rarely: only a read that has every worker write first finds a record.
    inference_log: { enabled: logOn, flush_ms: 600_000 },
    costs: { flush_ms: 600_000 },
    state: { sqlite: 'state/shared.db' },
  };
}

const send = (pool: Pool, method: 'GET' | 'POST', path: string, key: string, body?: unknown) =>
  poolCall(pool, method, path, key, body);
const pinTwo = (url: string, pools: Pool[]) => pinTwoWorkers(url, ops, pools);

const code = (a: PoolAnswer): unknown => (a.body['error'] as { code?: unknown } | undefined)?.code;

async function journeyTotals(pool: Pool): Promise<Group | undefined> {
  const a = await send(pool, 'GET', '/admin/costs?group_by=journey', ops);
  expect(a.status).toBe(200);
  return (a.body['groups'] as Group[]).find((g) => g.key === 'ask');
}

describe('feedback with serve --workers 2 sharing SQLite, inference log on (#15)', () => {
  let gw: ProcessGateway;
  let up: TestUpstream;
  const pools: Pool[] = [];

  beforeAll(async () => {
    up = await startUpstream(json(200, chatCompletion('fine')));
    gw = await startProcessGateway({ args: ['--workers', '2'], config: config(up.url, true) });
  }, 60_000);

  afterAll(async () => {
    for (const p of pools) await p.destroy().catch(() => undefined);
    await gw?.close();
    await up?.close();
  });

  it('counts feedback given to the other worker once, and refuses another tenant', async () => {
    const [one, two] = await pinTwo(gw.url, pools);
    const req = await send(one, 'POST', '/v1/journeys/ask', app, { input: { text: 'hi' } });
    expect(req.status).toBe(200);
    // Another tenant: refused (after the bounded wait for a record of its own), and it takes
    // nothing from the owner.
    const stolen = await send(two, 'POST', '/v1/feedback', other, {
      inference_id: req.id,
      reward: true,
    });
    expect(stolen.status).toBe(404);
    expect(code(stolen)).toBe('SY_ERR_INFERENCE_UNKNOWN');
    const fb = await send(two, 'POST', '/v1/feedback', app, { inference_id: req.id, reward: 1 });
    expect(fb.status).toBe(200);
    expect(fb.body['recorded']).toBe(true);
    for (const w of [one, two]) {
      const again = await send(w, 'POST', '/v1/feedback', app, {
        inference_id: req.id,
        reward: 1,
      });
      expect(again.status).toBe(404);
      expect(code(again)).toBe('SY_ERR_INFERENCE_UNKNOWN');
    }
    expect(await journeyTotals(one)).toMatchObject({ requests: 1, feedback: 1, conversions: 1 });
  });

  it("credits the experiment's reward once, on the worker that did not serve it", async () => {
    const [one, two] = await pinTwo(gw.url, pools);
    const req = await send(one, 'POST', '/v1/chat/completions', app, {
      model: 'reco',
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(req.status).toBe(200);
    const started = Date.now();
    const fb = await send(two, 'POST', '/v1/feedback', app, { inference_id: req.id, reward: 1 });
    expect(fb.status, fb.text).toBe(200);
    expect(fb.body).toMatchObject({ accepted: true, experiment: 'reco-ab', recorded: true });
    // Found at once (the bounded wait would be 5 s): worker one wrote its exposures when asked.
    expect(Date.now() - started).toBeLessThan(2_000);
    const again = await send(one, 'POST', '/v1/feedback', app, {
      inference_id: req.id,
      reward: 1,
    });
    expect(again.status).toBe(404);
    // Each worker's stats: the store's counters plus its own unwritten ones. Only worker two
    // credited the reward; worker one, which served the inference, did not.
    const rewards = async (w: Pool) => {
      const a = await send(w, 'GET', '/admin/experiments/reco-ab/stats', ops);
      expect(a.status).toBe(200);
      return Object.fromEntries(
        (a.body['variants'] as { variant: string; metrics: Record<string, { n: number }> }[]).map(
          (v) => [v.variant, v.metrics['reward']?.n ?? 0],
        ),
      );
    };
    const variant = String(fb.body['variant']);
    expect(await rewards(two)).toEqual({ one: 0, two: 0, [variant]: 1 });
    expect(await rewards(one)).toEqual({ one: 0, two: 0 });
  });
});

describe('feedback with serve --workers 2 sharing SQLite, inference log off (#15)', () => {
  let gw: ProcessGateway;
  let up: TestUpstream;
  const pools: Pool[] = [];

  beforeAll(async () => {
    up = await startUpstream(json(200, chatCompletion('fine')));
    gw = await startProcessGateway({ args: ['--workers', '2'], config: config(up.url, false) });
  }, 60_000);

  afterAll(async () => {
    for (const p of pools) await p.destroy().catch(() => undefined);
    await gw?.close();
    await up?.close();
  });

  it('joins only on the worker that served the request, at once, still counting once', async () => {
    const [one, two] = await pinTwo(gw.url, pools);
    const req = await send(one, 'POST', '/v1/journeys/ask', app, { input: { text: 'hi' } });
    expect(req.status).toBe(200);
    // Nothing to look the request up in: the other worker answers at once, not recorded.
    const started = Date.now();
    const elsewhere = await send(two, 'POST', '/v1/feedback', app, {
      inference_id: req.id,
      reward: 1,
    });
    expect(elsewhere.status).toBe(404);
    expect(Date.now() - started).toBeLessThan(400);
    const here = await send(one, 'POST', '/v1/feedback', app, { inference_id: req.id, reward: 1 });
    expect(here.status).toBe(200);
    expect(here.body['recorded']).toBe(true);
    const again = await send(one, 'POST', '/v1/feedback', app, {
      inference_id: req.id,
      reward: 1,
    });
    expect(again.status).toBe(404);
    expect(await journeyTotals(two)).toMatchObject({ requests: 1, feedback: 1, conversions: 1 });
  });
});
