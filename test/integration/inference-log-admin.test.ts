import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/program.js';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { captureIo } from '../support/cli-io.js';
import {
  openaiModel,
  startTestGateway,
  TEST_SECRET,
  type TestGateway,
} from '../support/gateway.js';
import { call, errorCode } from '../support/http-call.js';
import {
  chatCompletion,
  json,
  refusedPort,
  startUpstream,
  type TestUpstream,
} from '../support/upstream.js';

// Issue #15: GET /admin/requests, GET /admin/requests/{id} and `switchyard requests`, through a
// real gateway and a real local upstream.

const adminKey = generateKey('sk');
const globexKey = generateKey('sk');
let up: TestUpstream;
let gw: TestGateway;
const ids: Record<string, string> = {};
let between = 0;

const idOf = (a: { headers: Record<string, unknown> }) => a.headers['x-request-id'] as string;
const get = (path: string, key = adminKey) => call(gw.url, 'GET', path, key);
const chat = (key: string, model: string) =>
  call(gw.url, 'POST', '/v1/chat/completions', key, {
    model,
    messages: [{ role: 'user', content: 'hello' }],
  });

beforeAll(async () => {
  up = await startUpstream(
    json(200, chatCompletion('hi', { prompt_tokens: 4, completion_tokens: 2 })),
  );
  const dead = await refusedPort();
  gw = await startTestGateway({
    config: {
      tenants: {
        acme: {
          keys: [{ id: 'ops', hash: hashKey(adminKey, TEST_SECRET), admin: true }],
          models: ['*'],
        },
        globex: { keys: [{ id: 'g1', hash: hashKey(globexKey, TEST_SECRET) }], models: ['*'] },
      },
      models: {
        chat: openaiModel(up.url),
        broken: openaiModel(`http://127.0.0.1:${dead}`),
      },
      journeys: {
        answer: { stages: [{ id: 'reply', infer: { model: 'chat', prompt: 'input.text' } }] },
      },
      inference_log: { enabled: true, flush_ms: 60_000 },
    },
  });
  ids['a1'] = idOf(await chat(adminKey, 'chat'));
  ids['g1'] = idOf(await chat(globexKey, 'chat'));
  await new Promise((r) => setTimeout(r, 5));
  between = Date.now();
  await new Promise((r) => setTimeout(r, 5));
  const broken = await chat(adminKey, 'broken');
  expect(broken.status).toBeGreaterThanOrEqual(500);
  ids['bad'] = idOf(broken);
  ids['j'] = idOf(await call(gw.url, 'POST', '/v1/journeys/answer', adminKey, { input: 'hi' }));
});

afterAll(async () => {
  await gw.close();
  await up.close();
});

interface Listed {
  requests: { id: string; tenant: string; outcome: string; journey?: string; at: string }[];
  next_cursor: string | null;
}
const listed = async (q: string): Promise<Listed> => {
  const a = await get(`/admin/requests${q}`);
  expect(a.status, a.text).toBe(200);
  return a.body as unknown as Listed;
};
const listedIds = async (q: string) => (await listed(q)).requests.map((r) => r.id);

describe('GET /admin/requests', () => {
  it('lists requests newest first and filters by tenant, journey, model, outcome and time', async () => {
    expect(await listedIds('')).toEqual([ids['j'], ids['bad'], ids['g1'], ids['a1']]);
    expect(await listedIds('?tenant=globex')).toEqual([ids['g1']]);
    expect(await listedIds('?journey=answer')).toEqual([ids['j']]);
    // The journey called chat: a model filter finds requests by the models their calls used.
    expect(await listedIds('?model=chat&tenant=acme')).toEqual([ids['j'], ids['a1']]);
    expect(await listedIds('?model=broken')).toEqual([ids['bad']]);
    const bad = (await listed(`?tenant=acme&since=${between}`)).requests;
    expect(bad.map((r) => r.id)).toEqual([ids['j'], ids['bad']]);
    expect(await listedIds(`?until=${new Date(between).toISOString()}`)).toEqual([
      ids['g1'],
      ids['a1'],
    ]);
    const failed = bad.find((r) => r.id === ids['bad'])!;
    expect(failed.outcome).toMatch(/^SY_ERR_/);
    expect(await listedIds(`?outcome=${failed.outcome}`)).toEqual([ids['bad']]);
    expect(await listedIds('?outcome=ok&tenant=acme')).toEqual([ids['j'], ids['a1']]);
    expect(await listedIds('?trace_id=0af7651916cd43dd8448eb211c80319c')).toEqual([]);
  });

  it('pages with limit and the next_cursor until the last page', async () => {
    const first = await listed('?limit=3');
    expect(first.requests).toHaveLength(3);
    expect(first.next_cursor).toEqual(expect.any(String));
    const second = await listed(`?limit=3&cursor=${first.next_cursor}`);
    expect(second.requests.map((r) => r.id)).toEqual([ids['a1']]);
    expect(second.next_cursor).toBeNull();
  });

  it.each([
    ['?limit=1001', 'limit'],
    ['?limit=0', 'limit'],
    ['?since=yesterday', 'since'],
    ['?since=2000&until=1000', 'until'],
    ['?trace_id=xyz', 'trace_id'],
    ['?cursor=abc', 'cursor'],
    ['?colour=red', 'colour'],
    ['?tenant=a&tenant=b', 'tenant'],
  ])('answers %s with 400 SY_ERR_INVALID_REQUEST naming %s', async (q, param) => {
    const a = await get(`/admin/requests${q}`);
    expect(a.status).toBe(400);
    expect(errorCode(a)).toBe('SY_ERR_INVALID_REQUEST');
    expect((a.body['error'] as Record<string, unknown>)['param']).toBe(param);
    expect((a.body['error'] as Record<string, unknown>)['request_id']).toEqual(expect.any(String));
  });

  it('is for admin keys only', async () => {
    const a = await get('/admin/requests', globexKey);
    expect(a.status).toBe(403);
    expect(errorCode(a)).toBe('SY_ERR_ADMIN_REQUIRED');
    const b = await get(`/admin/requests/${ids['a1']}`, globexKey);
    expect(b.status).toBe(403);
  });
});

describe('GET /admin/requests/{id}', () => {
  it('answers the record with its model calls', async () => {
    const a = await get(`/admin/requests/${ids['j']}`);
    expect(a.status).toBe(200);
    expect(a.body).toMatchObject({
      id: ids['j'],
      tenant: 'acme',
      journey: 'answer',
      model: 'journey:answer',
      outcome: 'ok',
      input_tokens: 4,
      output_tokens: 2,
      stages: [{ stage: 'reply', kind: 'infer', outcome: 'continue' }],
      calls: [
        { origin: 'journey', model: 'chat', served_by: 'chat', input_tokens: 4, output_tokens: 2 },
      ],
    });
  });

  it('answers 404 SY_ERR_REQUEST_RECORD_NOT_FOUND for an unknown id', async () => {
    const a = await get('/admin/requests/no-such-request');
    expect(a.status).toBe(404);
    expect(errorCode(a)).toBe('SY_ERR_REQUEST_RECORD_NOT_FOUND');
  });
});

describe('switchyard requests', () => {
  it('lists and shows what the admin API shows, as a table and as JSON', async () => {
    const api = await listed('?tenant=acme');
    await gw.gateway.runtime().inferenceLog!.query(); // written
    let io = captureIo();
    expect(
      await runCli(['requests', 'list', '-c', gw.configPath, '--tenant', 'acme', '--json'], io),
    ).toBe(0);
    expect(JSON.parse(io.stdout())).toEqual(api);

    io = captureIo();
    expect(
      await runCli(['requests', 'list', '-c', gw.configPath, '--limit', '2'], io),
      io.stderr(),
    ).toBe(0);
    const lines = io.stdout().trim().split('\n');
    expect(lines[0]).toMatch(/^time \(UTC\)\s+id\s+tenant\s+model\/journey\s+status\s+outcome/);
    expect(lines).toHaveLength(3);
    expect(lines[1]).toContain(ids['j']);
    expect(io.stderr()).toMatch(/more requests: add --cursor \d+/);

    io = captureIo();
    expect(await runCli(['requests', 'show', ids['j']!, '-c', gw.configPath, '--json'], io)).toBe(
      0,
    );
    expect(JSON.parse(io.stdout())).toEqual((await get(`/admin/requests/${ids['j']}`)).body);

    io = captureIo();
    expect(await runCli(['requests', 'show', ids['j']!, '-c', gw.configPath], io)).toBe(0);
    expect(io.stdout()).toMatch(/^stage\s+kind\s+outcome/m);
    expect(io.stdout()).toMatch(/^journey\s+chat\s+chat\s+chat\s+/m);
  });

  it('exits 1 for an unknown id and 2 for a bad filter', async () => {
    let io = captureIo();
    expect(await runCli(['requests', 'show', 'nope', '-c', gw.configPath], io)).toBe(1);
    expect(io.stderr()).toContain('no request "nope"');
    io = captureIo();
    expect(await runCli(['requests', 'list', '-c', gw.configPath, '--since', 'soon'], io)).toBe(2);
    expect(io.stderr()).toContain('since');
  });
});

describe('with the inference log off', () => {
  it('answers 404 SY_ERR_INFERENCE_LOG_OFF', async () => {
    const off = await startTestGateway({
      config: {
        tenants: {
          acme: { keys: [{ id: 'ops', hash: hashKey(adminKey, TEST_SECRET), admin: true }] },
        },
      },
    });
    try {
      const a = await call(off.url, 'GET', '/admin/requests', adminKey);
      expect(a.status).toBe(404);
      expect(errorCode(a)).toBe('SY_ERR_INFERENCE_LOG_OFF');
    } finally {
      await off.close();
    }
  });
});
