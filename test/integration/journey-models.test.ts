import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import {
  openaiModel,
  startTestGateway,
  TEST_SECRET,
  type TestGateway,
} from '../support/gateway.js';
import { chatModel } from '../support/chat-model.js';
import { startUpstream, type TestUpstream } from '../support/upstream.js';

/** Journeys are models (#16 item 8): listed in /v1/models for the tenants allowed to call them. */
describe('journeys in /v1/models', () => {
  let up: TestUpstream;
  let gw: TestGateway;
  const chatOnly = generateKey('sk');
  const oneJourney = generateKey('sk');
  const get = async (path: string, key: string) => {
    const res = await request(`${gw.url}${path}`, { headers: { authorization: `Bearer ${key}` } });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
  };
  const ids = async (key: string): Promise<string[]> =>
    ((await get('/v1/models', key)).body['data'] as { id: string }[]).map((m) => m.id).sort();

  beforeAll(async () => {
    up = await startUpstream(chatModel);
    gw = await startTestGateway();
    gw.writeConfig({
      models: { chat: openaiModel(up.url) },
      tenants: {
        acme: { keys: [{ id: 'k1', hash: hashKey(gw.key, TEST_SECRET) }], models: ['*'] },
        b: { keys: [{ id: 'k2', hash: hashKey(chatOnly, TEST_SECRET) }], models: ['chat'] },
        c: {
          keys: [{ id: 'k3', hash: hashKey(oneJourney, TEST_SECRET) }],
          models: ['journey:relay'],
        },
      },
      journeys: {
        relay: { stages: [{ id: 'a', infer: { model: 'chat', prompt: 'input.text' } }] },
        fixed: { stages: [{ id: 'r', respond: { body: { answer: { const: 'ok' } } } }] },
      },
    });
    expect((await gw.gateway.reload()).result).toBe('applied');
  });
  afterAll(async () => {
    await gw?.close();
    await up?.close();
  });

  it('lists journey:<name> only to tenants allowed to call it', async () => {
    expect(await ids(gw.key)).toEqual(['chat', 'journey:fixed', 'journey:relay']);
    expect(await ids(chatOnly)).toEqual(['chat']);
    expect(await ids(oneJourney)).toEqual(['journey:relay']);
  });

  it('retrieves a journey model for an allowed tenant, 404 for others and unknown journeys', async () => {
    const ok = await get('/v1/models/journey:relay', oneJourney);
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ id: 'journey:relay', object: 'model' });
    expect((await get('/v1/models/journey:relay', chatOnly)).status).toBe(404);
    expect((await get('/v1/models/journey:nope', gw.key)).status).toBe(404);
  });
});
