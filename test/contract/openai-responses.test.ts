import { join } from 'node:path';
import Database from 'better-sqlite3';
import OpenAI from 'openai';
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
import { sse, startUpstream, type TestUpstream } from '../support/upstream.js';

interface ChatSeen {
  messages: { role: string; content: unknown; tool_calls?: unknown[]; tool_call_id?: string }[];
  [k: string]: unknown;
}

/**
 * The official `openai` Node SDK against Switchyard's Responses API (#16), in front of a real
 * local upstream that speaks only chat completions: every answer is translated both ways.
 */
describe('Responses API with the openai SDK over a chat-only upstream', () => {
  let up: TestUpstream;
  let gw: TestGateway;
  let client: OpenAI;
  let other: OpenAI;
  const otherKey = generateKey('sk');
  const lastChat = (): ChatSeen => JSON.parse(up.calls[up.calls.length - 1]!.body) as ChatSeen;

  beforeAll(async () => {
    up = await startUpstream(chatModel);
    gw = await startTestGateway({
      config: {
        models: { chat: openaiModel(up.url, { retry: { max_attempts: 1 } }) },
        journeys: {
          twostep: {
            stages: [
              { id: 'draft', infer: { model: 'chat', prompt: 'input.text' } },
              { id: 'final', infer: { model: 'chat', prompt: 'draft.text' } },
            ],
          },
        },
      },
    });
    client = new OpenAI({ apiKey: gw.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    other = new OpenAI({ apiKey: otherKey, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  });
  afterAll(async () => {
    await gw?.close();
    await up?.close();
  });

  it('answers a plain create with the text, the usage and a resp_ id, from a chat call', async () => {
    const r = await client.responses.create({
      model: 'chat',
      instructions: 'Be brief.',
      input: 'hello',
      max_output_tokens: 100,
      temperature: 0.2,
    });
    expect(r.id).toMatch(/^resp_/);
    expect(r.object).toBe('response');
    expect(r.status).toBe('completed');
    expect(r.output_text).toBe('seen 2: hello');
    expect(r.usage).toMatchObject({ input_tokens: 2, output_tokens: 3, total_tokens: 5 });
    expect(r.instructions).toBe('Be brief.');
    const seen = lastChat();
    expect(seen.messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'hello' },
    ]);
    expect(seen['max_tokens']).toBe(100);
    // Not configured with `responses: true`: the upstream is only ever asked for chat.
    expect(up.calls.every((c) => c.path === '/v1/chat/completions')).toBe(true);
    expect(seen['temperature']).toBe(0.2);
  });

  it('streams the typed events in order and the SDK assembles the final text', async () => {
    const stream = client.responses.stream({ model: 'chat', input: 'stream me' });
    const types: string[] = [];
    let deltas = '';
    for await (const e of stream) {
      types.push(e.type);
      if (e.type === 'response.output_text.delta') deltas += e.delta;
    }
    const final = await stream.finalResponse();
    expect(final.output_text).toBe('seen 1: stream me');
    expect(deltas).toBe('seen 1: stream me');
    expect(final.usage).toMatchObject({ input_tokens: 1, output_tokens: 4, total_tokens: 5 });
    const firsts = [
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
    ];
    expect(types.slice(0, 5)).toEqual(firsts);
    expect(types.slice(-4)).toEqual([
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    // The stored copy is the streamed answer.
    const stored = await client.responses.retrieve(final.id);
    expect(stored.output_text).toBe('seen 1: stream me');
  });

  it('streams with stream: true on create, each event numbered in sequence', async () => {
    const stream = await client.responses.create({ model: 'chat', input: 'x', stream: true });
    const seq: number[] = [];
    for await (const e of stream) seq.push(e.sequence_number);
    expect(seq).toEqual(seq.map((_, i) => i));
  });

  it('keeps structured output: text.format json_schema becomes response_format', async () => {
    const schema = {
      type: 'object',
      properties: { city: { type: 'string' }, temp_c: { type: 'number' } },
      required: ['city', 'temp_c'],
      additionalProperties: false,
    };
    const r = await client.responses.create({
      model: 'chat',
      input: 'weather?',
      text: { format: { type: 'json_schema', name: 'weather', schema, strict: true } },
    });
    expect(JSON.parse(r.output_text)).toEqual({ city: 'Paris', temp_c: 21 });
    expect(r.text?.format).toMatchObject({ type: 'json_schema', name: 'weather' });
    expect(lastChat()['response_format']).toEqual({
      type: 'json_schema',
      json_schema: { name: 'weather', schema, strict: true },
    });
  });

  it('does a tool call round trip through previous_response_id and function_call_output', async () => {
    const tools = [
      {
        type: 'function' as const,
        name: 'get_weather',
        description: 'Weather of a city',
        parameters: { type: 'object', properties: { city: { type: 'string' } } },
        strict: false,
      },
    ];
    const first = await client.responses.create({
      model: 'chat',
      input: 'weather in Paris?',
      tools,
    });
    const call = first.output.find((o) => o.type === 'function_call');
    expect(call).toMatchObject({
      name: 'get_weather',
      arguments: '{"city":"Paris"}',
      call_id: 'call_abc123',
    });
    expect(lastChat()['tools']).toEqual([
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Weather of a city',
          parameters: tools[0]!.parameters,
          strict: false,
        },
      },
    ]);
    const second = await client.responses.create({
      model: 'chat',
      previous_response_id: first.id,
      input: [{ type: 'function_call_output', call_id: 'call_abc123', output: '21C and sunny' }],
      tools,
    });
    expect(second.output_text).toBe('tool said: 21C and sunny');
    expect(second.previous_response_id).toBe(first.id);
    const seen = lastChat().messages;
    expect(seen[1]).toMatchObject({
      role: 'assistant',
      tool_calls: [{ id: 'call_abc123', type: 'function', function: { name: 'get_weather' } }],
    });
    expect(seen[2]).toEqual({
      role: 'tool',
      tool_call_id: 'call_abc123',
      content: '21C and sunny',
    });
  });

  it('streams a function call: argument deltas, then the whole call', async () => {
    const stream = client.responses.stream({
      model: 'chat',
      input: 'call it',
      tools: [{ type: 'function', name: 'lookup', parameters: {}, strict: false }],
    });
    let args = '';
    stream.on('response.function_call_arguments.delta', (e) => (args += e.delta));
    const final = await stream.finalResponse();
    expect(args).toBe('{"city":"Paris"}');
    expect(final.output).toEqual([
      expect.objectContaining({
        type: 'function_call',
        name: 'lookup',
        arguments: '{"city":"Paris"}',
        status: 'completed',
      }),
    ]);
  });

  it('marks a cut answer incomplete with the reason max_output_tokens', async () => {
    const r = await client.responses.create({
      model: 'chat',
      input: 'a b c d e f',
      max_output_tokens: 16,
    });
    expect(r.status).toBe('incomplete');
    expect(r.incomplete_details).toEqual({ reason: 'max_output_tokens' });
  });

  it('retrieves, lists input items of, and deletes a stored response', async () => {
    const r = await client.responses.create({
      model: 'chat',
      input: [
        { role: 'user', content: 'one' },
        { role: 'user', content: [{ type: 'input_text', text: 'two' }] },
      ],
    });
    const got = await client.responses.retrieve(r.id);
    expect(got.output_text).toBe('seen 2: one | two');
    expect(got.usage).toEqual(r.usage);
    const items = [];
    for await (const item of client.responses.inputItems.list(r.id, { order: 'asc', limit: 1 }))
      items.push(item);
    expect(items.map((i) => (i.type === 'message' ? i.content : null))).toEqual([
      [{ type: 'input_text', text: 'one' }],
      [{ type: 'input_text', text: 'two' }],
    ]);
    expect(items.every((i) => typeof i.id === 'string' && i.id.startsWith('msg_'))).toBe(true);
    expect(await client.responses.delete(r.id)).toEqual({
      id: r.id,
      object: 'response',
      deleted: true,
    });
    const gone = await client.responses.retrieve(r.id).catch((e: unknown) => e);
    expect(gone).toBeInstanceOf(OpenAI.NotFoundError);
    expect((gone as InstanceType<typeof OpenAI.NotFoundError>).code).toBe(
      'SY_ERR_RESPONSE_NOT_FOUND',
    );
  });

  it('prepends the previous input and output for previous_response_id', async () => {
    const a = await client.responses.create({ model: 'chat', input: 'first' });
    const b = await client.responses.create({
      model: 'chat',
      input: 'second',
      previous_response_id: a.id,
    });
    // user first, assistant answer, user second.
    expect(b.output_text).toBe('seen 3: first | second');
    expect(lastChat().messages[1]).toEqual({ role: 'assistant', content: 'seen 1: first' });
    const c = await client.responses.create({
      model: 'chat',
      input: 'third',
      previous_response_id: b.id,
    });
    expect(c.output_text).toBe('seen 5: first | second | third');
    // input_items lists only the request's own input.
    const page = await client.responses.inputItems.list(c.id);
    expect(page.data).toHaveLength(1);
  });

  it('does not keep a response created with store: false', async () => {
    const r = await client.responses.create({ model: 'chat', input: 'x', store: false });
    expect((r as unknown as { store: boolean }).store).toBe(false);
    await expect(client.responses.retrieve(r.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('refuses bad fields with a 400 naming the param', async () => {
    const bad = await client.responses
      .create({ model: 'chat', input: 'x', temperature: 3 })
      .catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(OpenAI.BadRequestError);
    expect((bad as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('temperature');
    expect((bad as InstanceType<typeof OpenAI.BadRequestError>).code).toBe(
      'SY_ERR_INVALID_REQUEST',
    );
    const tool = await client.responses
      .create({ model: 'chat', input: 'x', tools: [{ type: 'web_search' }] })
      .catch((e: unknown) => e);
    expect((tool as InstanceType<typeof OpenAI.BadRequestError>).param).toBe('tools[0].type');
    const prev = await client.responses
      .create({ model: 'chat', input: 'x', previous_response_id: 'resp_nope' })
      .catch((e: unknown) => e);
    expect(prev).toBeInstanceOf(OpenAI.NotFoundError);
    expect((prev as InstanceType<typeof OpenAI.NotFoundError>).param).toBe('previous_response_id');
  });

  it('answers with a journey: the summed usage of its two model calls', async () => {
    const calls = up.calls.length;
    const r = await client.responses.create({ model: 'journey:twostep', input: 'hi there' });
    expect(up.calls.length).toBe(calls + 2);
    // draft: 1 message in, "seen 1: hi there" (4 words) out; final: 1 in, "seen 1: seen 1: hi there" (6) out.
    expect(r.output_text).toBe('seen 1: seen 1: hi there');
    expect(r.usage).toMatchObject({ input_tokens: 2, output_tokens: 10, total_tokens: 12 });
    const s = client.responses.stream({ model: 'journey:twostep', input: 'hi there' });
    const final = await s.finalResponse();
    expect(final.output_text).toBe('seen 1: seen 1: hi there');
    expect(final.usage?.total_tokens).toBe(12);
  });

  it('keeps tenants apart: another tenant gets 404 for the id, and cannot chain on it', async () => {
    const r = await client.responses.create({ model: 'chat', input: 'mine' });
    gw.writeConfig({
      models: { chat: openaiModel(up.url, { retry: { max_attempts: 1 } }) },
      tenants: {
        acme: { keys: [{ id: 'k1', hash: hashKey(gw.key, TEST_SECRET) }], models: ['*'] },
        other: { keys: [{ id: 'k2', hash: hashKey(otherKey, TEST_SECRET) }], models: ['chat'] },
      },
    });
    expect((await gw.gateway.reload()).result).toBe('applied');
    await expect(other.responses.retrieve(r.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(other.responses.delete(r.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(
      other.responses.create({ model: 'chat', input: 'x', previous_response_id: r.id }),
    ).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect((await client.responses.retrieve(r.id)).id).toBe(r.id);
  });

  it('ends a stream cut after its first event with an error the SDK raises, never a clean end', async () => {
    up.behave(sse(['one', ' two', ' three'], { delayMs: 50, resetAfter: 2 }));
    try {
      const stream = client.responses.stream({ model: 'chat', input: 'x' });
      const types: string[] = [];
      const failure = await (async () => {
        for await (const e of stream) types.push(e.type);
      })().catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(OpenAI.APIError);
      expect((failure as InstanceType<typeof OpenAI.APIError>).code).toMatch(/^SY_ERR_UPSTREAM_/);
      expect(types).toContain('response.output_text.delta');
      expect(types).toContain('response.failed');
      expect(types).not.toContain('response.completed');
    } finally {
      up.behave(chatModel);
    }
  });

  it("purges a user's stored responses when the user revokes consent", async () => {
    const mine = await client.responses.create(
      { model: 'chat', input: 'private' },
      { headers: { 'x-switchyard-user': 'u-1' } },
    );
    const theirs = await client.responses.create({ model: 'chat', input: 'kept', user: 'u-2' });
    const auth = { authorization: `Bearer ${gw.key}`, 'content-type': 'application/json' };
    const grant = await request(`${gw.url}/v1/consent/u-1`, {
      method: 'PUT',
      headers: auth,
      body: JSON.stringify({ purposes: { behavioral_inference: true } }),
    });
    expect(grant.statusCode).toBe(200);
    await grant.body.dump();
    const res = await request(`${gw.url}/v1/consent/u-1/revoke`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ purposes: 'all' }),
    });
    const change = (await res.body.json()) as { purged?: Record<string, number> };
    expect(res.statusCode).toBe(200);
    expect(change.purged?.['responses']).toBe(1);
    await expect(client.responses.retrieve(mine.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect((await client.responses.retrieve(theirs.id)).id).toBe(theirs.id);
  });
});

describe('Responses retention', () => {
  it('forgets a stored response once responses.ttl_s has passed, and the sweep deletes it', async () => {
    const up = await startUpstream(chatModel);
    const gw = await startTestGateway({
      config: { models: { chat: openaiModel(up.url) }, responses: { ttl_s: 1, sweep_s: 1 } },
    });
    const rows = (): number => {
      const db = new Database(join(gw.dir, 'var/responses.db'), { readonly: true });
      try {
        return (db.prepare('SELECT COUNT(*) AS n FROM rs_responses').get() as { n: number }).n;
      } finally {
        db.close();
      }
    };
    try {
      const client = new OpenAI({ apiKey: gw.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
      const r = await client.responses.create({ model: 'chat', input: 'x' });
      expect((await client.responses.retrieve(r.id)).id).toBe(r.id);
      expect(rows()).toBe(1);
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      await expect(client.responses.retrieve(r.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      const until = Date.now() + 3_000;
      while (rows() > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      expect(rows()).toBe(0);
    } finally {
      await gw.close();
      await up.close();
    }
  });
});
