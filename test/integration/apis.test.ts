import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { generateKey } from '../../src/core/api-key.js';
import { startSimulator, type Simulator } from '../../src/simulator/upstream-simulator.js';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';

/** The public APIs as their official clients and plain HTTP see them. */
describe('OpenAI and KServe v2 APIs', () => {
  let sim: Simulator;
  let gw: TestGateway;
  let client: OpenAI;

  beforeAll(async () => {
    sim = await startSimulator();
    gw = await startTestGateway({
      config: {
        models: {
          chat: openaiModel(sim.url, { upstream_model: 'large-v1' }),
          embed: openaiModel(sim.url, { operations: ['embeddings'] }),
          sum: { backend: 'kserve', url: sim.url },
        },
      },
    });
    client = new OpenAI({ apiKey: gw.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  });
  afterAll(async () => {
    await gw.close();
    await sim.close();
  });

  const get = async (path: string, key: string | undefined = gw.key) => {
    const res = await request(`${gw.url}${path}`, {
      headers: key === undefined ? {} : { authorization: `Bearer ${key}` },
    });
    return {
      status: res.statusCode,
      headers: res.headers,
      body: (await res.body.json()) as Record<string, unknown>,
    };
  };
  const post = async (path: string, body: unknown, key: string | undefined = gw.key) => {
    const res = await request(`${gw.url}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(key === undefined ? {} : { authorization: `Bearer ${key}` }),
      },
      body: JSON.stringify(body),
    });
    return {
      status: res.statusCode,
      headers: res.headers,
      body: (await res.body.json()) as Record<string, unknown>,
    };
  };

  it('serves a chat completion to the official OpenAI SDK', async () => {
    const completion = await client.chat.completions.create({
      model: 'chat',
      messages: [{ role: 'user', content: 'ping pong' }],
    });
    expect(completion.choices[0]?.message.content).toContain('You said: ping pong');
    expect(completion.usage?.prompt_tokens).toBeGreaterThan(0);
  });

  it('streams a chat completion to the official OpenAI SDK, usage included when asked', async () => {
    const stream = await client.chat.completions.create({
      model: 'chat',
      messages: [{ role: 'user', content: 'stream me' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    let usage: unknown;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toContain('You said: stream me');
    expect(usage).toMatchObject({ prompt_tokens: 3 });
  });

  it('serves embeddings to the official OpenAI SDK', async () => {
    const res = await client.embeddings.create({
      model: 'embed',
      input: ['a', 'b'],
      dimensions: 8,
    });
    expect(res.data).toHaveLength(2);
    expect(res.data[0]?.embedding).toHaveLength(8);
  });

  it('lists and retrieves models through the OpenAI SDK', async () => {
    const ids = [];
    for await (const m of client.models.list()) ids.push(m.id);
    expect(ids.sort()).toEqual(['chat', 'embed']);
    expect((await client.models.retrieve('chat')).id).toBe('chat');
  });

  it('gives the OpenAI SDK errors it understands: code, type and status', async () => {
    const err = await client.chat.completions
      .create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('SY_ERR_MODEL_NOT_FOUND');
    const bad = new OpenAI({ apiKey: generateKey('sk'), baseURL: `${gw.url}/v1`, maxRetries: 0 });
    await expect(bad.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
  });

  it('refuses a chat request for an embeddings-only model with a 400', async () => {
    const res = await post('/v1/chat/completions', {
      model: 'embed',
      messages: [{ role: 'user', content: 'x' }],
    });
    expect(res.status).toBe(400);
    expect(res.body['error']).toMatchObject({
      code: 'SY_ERR_OPERATION_UNSUPPORTED',
      param: 'model',
    });
  });

  it('points at the offending field of an invalid chat request', async () => {
    const res = await post('/v1/chat/completions', {
      model: 'chat',
      messages: [{ content: 'no role' }],
    });
    expect(res.status).toBe(400);
    expect(res.body['error']).toMatchObject({
      code: 'SY_ERR_INVALID_REQUEST',
      param: 'messages[0].role',
    });
  });

  it('serves KServe v2 server and model metadata, readiness and inference', async () => {
    expect((await get('/v2', undefined)).body).toMatchObject({ name: 'switchyard' });
    expect((await get('/v2/health/live', undefined)).status).toBe(200);
    expect((await get('/v2/health/ready', undefined)).body).toEqual({ ready: true });
    const meta = await get('/v2/models/sum');
    expect(meta.body).toMatchObject({
      name: 'sum',
      inputs: [{ name: 'INPUT0', datatype: 'FP32' }],
    });
    expect((await get('/v2/models/sum/ready')).body).toEqual({ name: 'sum', ready: true });
    const infer = await post('/v2/models/sum/versions/1/infer', {
      id: 'r1',
      inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [2, 3], data: [1, 2, 3, 4, 5, 6] }],
    });
    expect(infer.status).toBe(200);
    expect(infer.body).toMatchObject({
      model_name: 'sum',
      id: 'r1',
      outputs: [{ name: 'SUM', shape: [2, 1], data: [6, 15] }],
    });
  });

  it('answers KServe errors in the Open Inference Protocol shape', async () => {
    const missing = await post('/v2/models/sum/infer', { inputs: [] });
    expect(missing.status).toBe(400);
    expect(typeof missing.body['error']).toBe('string');
    expect(missing.body['code']).toBe('SY_ERR_INVALID_REQUEST');
    const unknownVersion = await get('/v2/models/sum/versions/9');
    expect(unknownVersion.status).toBe(404);
    expect(unknownVersion.body['code']).toBe('SY_ERR_MODEL_NOT_FOUND');
    const notKServe = await get('/v2/models/chat');
    expect(notKServe.status).toBe(400);
    expect(notKServe.body['code']).toBe('SY_ERR_OPERATION_UNSUPPORTED');
  });

  it('answers /healthz, /readyz and /metrics without a key', async () => {
    expect((await get('/healthz', undefined)).body).toEqual({ status: 'ok' });
    expect((await get('/readyz', undefined)).body).toMatchObject({ status: 'ready' });
    const res = await request(`${gw.url}/metrics`);
    expect(res.headers['content-type']).toContain('text/plain');
    const text = await res.body.text();
    expect(text).toContain(
      'switchyard_requests_total{route="/v1/chat/completions",model="chat",status="200",class="interactive"}',
    );
    expect(text).toMatch(
      /gen_ai_client_token_usage_count\{gen_ai_operation_name="chat",gen_ai_system="openai",gen_ai_request_model="chat",gen_ai_response_model="[^"]+",gen_ai_token_type="input"\} [1-9]/,
    );
    expect(text).toMatch(
      /gen_ai_server_time_to_first_token_seconds_count\{gen_ai_request_model="chat"\} [1-9]/,
    );
    expect(text).toMatch(
      /switchyard_upstream_duration_seconds_count\{backend="sum",outcome="ok"\} [1-9]/,
    );
    expect(text).toContain('switchyard_breaker_state{backend="chat"} 0');
  });
});

describe('tenants and keys', () => {
  let sim: Simulator;
  let gw: TestGateway;
  beforeAll(async () => {
    sim = await startSimulator();
    gw = await startTestGateway({
      config: {
        models: {
          'chat-a': openaiModel(sim.url),
          'chat-b': openaiModel(sim.url),
          other: openaiModel(sim.url),
        },
      },
    });
    // Limit acme to chat-* after start: rewrite and reload.
    const cfg = (await import('yaml')).parse(
      (await import('node:fs')).readFileSync(gw.configPath, 'utf8'),
    ) as Record<string, Record<string, Record<string, unknown>>>;
    cfg['tenants']!['acme']!['models'] = ['chat-*'];
    gw.writeConfig(cfg);
    expect((await gw.gateway.reload()).result).toBe('applied');
  });
  afterAll(async () => {
    await gw.close();
    await sim.close();
  });

  const chat = async (model: string, auth: Record<string, string>) => {
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'x' }] }),
    });
    return {
      status: res.statusCode,
      body: (await res.body.json()) as { error?: { code: string } },
    };
  };

  it('limits a tenant to its list of models', async () => {
    expect((await chat('chat-b', { authorization: `Bearer ${gw.key}` })).status).toBe(200);
    const denied = await chat('other', { authorization: `Bearer ${gw.key}` });
    expect(denied.status).toBe(403);
    expect(denied.body.error?.code).toBe('SY_ERR_MODEL_FORBIDDEN');
    const list = await request(`${gw.url}/v1/models`, {
      headers: { authorization: `Bearer ${gw.key}` },
    });
    const ids = ((await list.body.json()) as { data: { id: string }[] }).data
      .map((m) => m.id)
      .sort();
    expect(ids).toEqual(['chat-a', 'chat-b']);
  });

  it('tells a missing key from a malformed one and an unknown one', async () => {
    expect((await chat('chat-a', {})).body.error?.code).toBe('SY_ERR_AUTH_MISSING');
    const typo = gw.key.slice(0, -1) + (gw.key.endsWith('a') ? 'b' : 'a');
    const malformed = await chat('chat-a', { authorization: `Bearer ${typo}` });
    expect(malformed.status).toBe(401);
    expect(malformed.body.error?.code).toBe('SY_ERR_AUTH_INVALID');
    const unknown = await chat('chat-a', { authorization: `Bearer ${generateKey('sk')}` });
    expect(unknown.status).toBe(401);
    expect((await chat('chat-a', { 'x-api-key': gw.key })).status).toBe(200);
    expect((await chat('chat-a', { authorization: `Basic ${gw.key}` })).status).toBe(401);
  });

  it('never writes a key to the log, only its fingerprint', async () => {
    const stranger = generateKey('sk');
    await chat('chat-a', { authorization: `Bearer ${stranger}` });
    await chat('chat-a', { authorization: `Bearer ${gw.key}` });
    await expect
      .poll(() => gw.logs.filter((l) => l['msg'] === 'request').length)
      .toBeGreaterThanOrEqual(2);
    const text = gw.logText();
    expect(text).not.toContain(gw.key);
    expect(text).not.toContain(stranger);
    expect(text).not.toContain(gw.key.slice(6, 20));
    const ok = gw.logs.find(
      (l) => l['msg'] === 'request' && l['status'] === 200 && l['model'] === 'chat-a',
    )!;
    expect(ok).toMatchObject({
      tenant: 'acme',
      key_fp: expect.stringMatching(/^fp:[0-9a-f]{12}$/) as unknown,
      route: '/v1/chat/completions',
      path: 'chat-a#1:ok',
    });
    expect(typeof ok['req_id']).toBe('string');
  });
});
