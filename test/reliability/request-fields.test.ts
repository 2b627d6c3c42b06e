import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openaiModel } from '../support/gateway.js';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import { chatAndEmbeddings, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * Issue #13, finding 7: a negative `max_tokens` was forwarded upstream and answered 200. The
 * OpenAI fields the gateway forwards are now checked against their documented ranges, and a
 * value out of range is a 400 `SY_ERR_INVALID_REQUEST` naming the field, before any upstream
 * call. The gateway runs as a child process.
 */
const CHAT = { model: 'chat', messages: [{ role: 'user', content: 'hi' }] };

interface Answer {
  readonly status: number;
  readonly code: string | undefined;
  readonly param: string | null | undefined;
}

describe('OpenAI request fields out of their documented ranges (#13, finding 7)', () => {
  let up: TestUpstream;
  let gw: ProcessGateway;

  beforeAll(async () => {
    up = await startUpstream(chatAndEmbeddings);
    gw = await startProcessGateway({
      config: {
        models: {
          chat: openaiModel(up.url),
          embed: openaiModel(up.url, { operations: ['embeddings'] }),
        },
      },
    });
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  const post = async (path: string, body: unknown): Promise<Answer> => {
    const res = await fetch(`${gw.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.key}`, 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    const parsed = (await res.json()) as { error?: { code: string; param: string | null } };
    return { status: res.status, code: parsed.error?.code, param: parsed.error?.param };
  };
  const refused = (param: string): Answer => ({
    status: 400,
    code: 'SY_ERR_INVALID_REQUEST',
    param,
  });

  it('refuses a negative max_tokens with a 400 naming it, and never calls the upstream', async () => {
    const before = up.calls.length;
    expect(await post('/v1/chat/completions', { ...CHAT, max_tokens: -5 })).toEqual(
      refused('max_tokens'),
    );
    expect(up.calls.length).toBe(before);
  });

  it('refuses each chat field outside its documented range', async () => {
    const before = up.calls.length;
    const cases: [string, unknown][] = [
      ['max_tokens', 0],
      ['max_completion_tokens', -1],
      ['temperature', 2.5],
      ['top_p', 1.1],
      ['n', 129],
      ['presence_penalty', -2.1],
      ['frequency_penalty', 9],
      ['logprobs', 'true'],
      ['top_logprobs', 21],
      ['seed', 0.5],
      ['stop', ['1', '2', '3', '4', '5']],
      ['user', 5],
      ['response_format', 'json'],
      ['tools', 'search'],
    ];
    for (const [field, value] of cases)
      expect(await post('/v1/chat/completions', { ...CHAT, [field]: value }), field).toEqual(
        refused(field),
      );
    expect(await post('/v1/chat/completions', { ...CHAT, logit_bias: { '42': 250 } })).toEqual(
      refused('logit_bias.42'),
    );
    expect(up.calls.length).toBe(before);
  });

  it('refuses embeddings options outside their documented range', async () => {
    const before = up.calls.length;
    const base = { model: 'embed', input: 'hi' };
    expect(await post('/v1/embeddings', { ...base, dimensions: 0 })).toEqual(refused('dimensions'));
    expect(await post('/v1/embeddings', { ...base, encoding_format: 'hex' })).toEqual(
      refused('encoding_format'),
    );
    expect(await post('/v1/embeddings', { ...base, input: [1, -1] })).toEqual(refused('input'));
    expect(up.calls.length).toBe(before);
  });

  it('refuses numbers that overflow to Infinity as invalid JSON, a long mantissa included', async () => {
    for (const n of ['1e999', `1${'0'.repeat(300)}e10`]) {
      const text = `{"model":"chat","messages":[{"role":"user","content":"x"}],"temperature":${n}}`;
      expect((await post('/v1/chat/completions', text)).code).toBe('SY_ERR_INVALID_JSON');
    }
  });

  it('forwards values at the edges of each range as they are', async () => {
    const edges = {
      ...CHAT,
      max_tokens: 1,
      temperature: 2,
      top_p: 0,
      n: 128,
      presence_penalty: -2,
      frequency_penalty: 2,
      logprobs: true,
      top_logprobs: 20,
      seed: 7,
      stop: ['a', 'b', 'c', 'd'],
      logit_bias: { '42': -100 },
      user: 'u',
    };
    const before = up.calls.length;
    expect((await post('/v1/chat/completions', edges)).status).toBe(200);
    expect(up.calls.length).toBe(before + 1);
    expect(JSON.parse(up.calls.at(-1)!.body)).toMatchObject(edges);
  });
});
