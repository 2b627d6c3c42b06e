import Anthropic, { APIError } from '@anthropic-ai/sdk';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';
import { json, sse, startUpstream, type TestUpstream } from '../support/upstream.js';
import { chatEcho } from '../support/chat-echo.js';

/**
 * The official Anthropic SDK against `/v1/messages` with an OpenAI-style chat upstream behind it
 * (#16): every Messages feature is translated to the chat form and back.
 */
describe('the Anthropic SDK against /v1/messages, served by an OpenAI chat upstream', () => {
  let up: TestUpstream;
  let broken: TestUpstream;
  let gw: TestGateway;
  let client: Anthropic;

  beforeAll(async () => {
    up = await startUpstream(chatEcho);
    broken = await startUpstream();
    gw = await startTestGateway({
      config: {
        models: {
          chat: openaiModel(up.url),
          broken: openaiModel(broken.url, { retry: { max_attempts: 1 } }),
        },
      },
    });
    client = new Anthropic({ apiKey: gw.key, baseURL: gw.url, maxRetries: 0 });
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
    await broken.close();
  });
  afterEach(() => {
    up.calls.length = 0;
  });

  const sent = (): Record<string, unknown> =>
    JSON.parse(up.calls[up.calls.length - 1]!.body) as Record<string, unknown>;

  it('answers messages.create with a text block, end_turn and usage; the upstream gets the chat form', async () => {
    const msg = await client.messages.create({
      model: 'chat',
      max_tokens: 64,
      system: 'Be brief.',
      messages: [{ role: 'user', content: 'Hello there' }],
    });
    expect(msg.type).toBe('message');
    expect(msg.role).toBe('assistant');
    expect(msg.id).toMatch(/^msg_/);
    expect(msg.content).toEqual([{ type: 'text', text: 'echo: Hello there' }]);
    expect(msg.stop_reason).toBe('end_turn');
    expect(msg.stop_sequence).toBeNull();
    expect(msg.usage.input_tokens).toBe(4);
    expect(msg.usage.output_tokens).toBe(5);
    expect(up.calls[0]!.headers['x-api-key']).toBeUndefined(); // the tenant key stays here
    expect(sent()).toMatchObject({
      max_tokens: 64,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hello there' },
      ],
    });
  });

  it('takes a system prompt as blocks and reports the stop sequence that ended the answer', async () => {
    const msg = await client.messages.create({
      model: 'chat',
      max_tokens: 64,
      system: [
        { type: 'text', text: 'One.' },
        { type: 'text', text: 'Two.' },
      ],
      stop_sequences: ['STOP'],
      messages: [{ role: 'user', content: [{ type: 'text', text: 'go STOP here' }] }],
    });
    expect(sent()['messages']).toEqual([
      { role: 'system', content: 'One.\nTwo.' },
      { role: 'user', content: 'go STOP here' },
    ]);
    expect(sent()['stop']).toEqual(['STOP']);
    expect(msg.stop_reason).toBe('stop_sequence');
    expect(msg.stop_sequence).toBe('STOP');
    expect(msg.content).toEqual([{ type: 'text', text: 'echo: go ' }]);
  });

  it('says max_tokens when the answer was cut by the limit', async () => {
    const msg = await client.messages.create({
      model: 'chat',
      max_tokens: 2,
      messages: [{ role: 'user', content: 'a long question' }],
    });
    expect(msg.stop_reason).toBe('max_tokens');
    expect(sent()['max_tokens']).toBe(2);
  });

  it('streams the real event sequence, and messages.stream gives the text and the final message', async () => {
    const stream = client.messages.stream({
      model: 'chat',
      max_tokens: 64,
      messages: [{ role: 'user', content: 'stream these words' }],
    });
    const types: string[] = [];
    let text = '';
    stream.on('streamEvent', (e) => types.push(e.type));
    stream.on('text', (t) => (text += t));
    const final = await stream.finalMessage();
    expect(text).toBe('echo: stream these words');
    expect(final.content).toEqual([{ type: 'text', text: 'echo: stream these words' }]);
    expect(final.stop_reason).toBe('end_turn');
    expect(final.usage.output_tokens).toBe(5);
    expect(final.usage.input_tokens).toBe(3); // the upstream's count, from message_delta
    expect(types[0]).toBe('message_start');
    expect(types[1]).toBe('content_block_start');
    expect(types.filter((t) => t === 'content_block_delta').length).toBe(4);
    expect(types.slice(-3)).toEqual(['content_block_stop', 'message_delta', 'message_stop']);
    expect(sent()['stream_options']).toEqual({ include_usage: true });
  });

  it('sends ping after message_start, as the Messages stream does', async () => {
    const res = await request(`${gw.url}/v1/messages`, {
      method: 'POST',
      headers: {
        'x-api-key': gw.key,
        'anthropic-version': '2023-06-01',
        'content-type': 'application/json',
      },
      body: JSON.stringify({
        model: 'chat',
        max_tokens: 10,
        stream: true,
        temperature: 0.3,
        top_p: 0.9,
        top_k: 40,
        messages: [{ role: 'user', content: 'hi' }],
      }),
    });
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    const text = await res.body.text();
    const events = [...text.matchAll(/^event: (\S+)$/gm)].map((m) => m[1]);
    expect(events.slice(0, 3)).toEqual(['message_start', 'ping', 'content_block_start']);
    expect(events[events.length - 1]).toBe('message_stop');
    // Sampling fields the 2026 SDK types no longer list still reach chat upstreams.
    expect(sent()).toMatchObject({ temperature: 0.3, top_p: 0.9, top_k: 40 });
  });

  it('turns output_config.format into a strict json_schema response_format, and system turns into system messages', async () => {
    const schema = { type: 'object', properties: { ok: { type: 'boolean' } } };
    await client.messages.create({
      model: 'chat',
      max_tokens: 16,
      output_config: { format: { type: 'json_schema', schema } },
      messages: [
        { role: 'system', content: 'Answer in JSON.' },
        { role: 'user', content: 'ok?' },
      ],
    });
    expect(sent()['response_format']).toEqual({
      type: 'json_schema',
      json_schema: { name: 'output', schema, strict: true },
    });
    expect(sent()['messages']).toEqual([
      { role: 'system', content: 'Answer in JSON.' },
      { role: 'user', content: 'ok?' },
    ]);
  });

  it('runs a tool-use round trip: tool_use block, then the tool_result answered', async () => {
    const tools: Anthropic.Tool[] = [
      {
        name: 'get_weather',
        description: 'Weather of a city',
        input_schema: { type: 'object', properties: { city: { type: 'string' } } },
      },
    ];
    const first = await client.messages.create({
      model: 'chat',
      max_tokens: 64,
      tools,
      tool_choice: { type: 'any', disable_parallel_tool_use: true },
      messages: [{ role: 'user', content: 'Weather in Paris?' }],
    });
    expect(sent()['tools']).toEqual([
      {
        type: 'function',
        function: {
          name: 'get_weather',
          description: 'Weather of a city',
          parameters: { type: 'object', properties: { city: { type: 'string' } } },
        },
      },
    ]);
    expect(sent()['tool_choice']).toBe('required');
    expect(sent()['parallel_tool_calls']).toBe(false);
    expect(first.stop_reason).toBe('tool_use');
    const use = first.content.find((b) => b.type === 'tool_use')!;
    expect(use).toMatchObject({
      type: 'tool_use',
      id: 'call_1',
      name: 'get_weather',
      input: { city: 'Paris' },
    });

    const second = await client.messages.create({
      model: 'chat',
      max_tokens: 64,
      tools,
      messages: [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: first.content },
        {
          role: 'user',
          content: [{ type: 'tool_result', tool_use_id: use.id, content: '18C and sunny' }],
        },
      ],
    });
    expect(sent()['messages']).toEqual([
      { role: 'user', content: 'Weather in Paris?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          {
            id: 'call_1',
            type: 'function',
            function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
          },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: '18C and sunny' },
    ]);
    expect(second.content).toEqual([{ type: 'text', text: 'tool said: 18C and sunny' }]);
    expect(second.stop_reason).toBe('end_turn');
  });

  it('streams a tool call as input_json_delta that the SDK assembles into the input', async () => {
    const stream = client.messages.stream({
      model: 'chat',
      max_tokens: 64,
      tools: [{ name: 'get_weather', input_schema: { type: 'object' } }],
      messages: [{ role: 'user', content: 'Weather?' }],
    });
    const deltas: string[] = [];
    stream.on('inputJson', (partial) => deltas.push(partial));
    const final = await stream.finalMessage();
    expect(deltas).toEqual(['{"city":', '"Paris"}']);
    expect(final.stop_reason).toBe('tool_use');
    expect(final.content).toEqual([
      { type: 'tool_use', id: 'call_1', name: 'get_weather', input: { city: 'Paris' } },
    ]);
  });

  it('counts tokens without calling the model, more for a longer prompt', async () => {
    const short = await client.messages.countTokens({
      model: 'chat',
      messages: [{ role: 'user', content: 'Hello' }],
    });
    const long = await client.messages.countTokens({
      model: 'chat',
      system: 'You are a careful assistant that answers in French.',
      messages: [{ role: 'user', content: 'Hello, how is the weather in Paris today?' }],
    });
    expect(short.input_tokens).toBe(7); // 3 to prime + 3 for the turn + "Hello"
    expect(long.input_tokens).toBeGreaterThan(short.input_tokens + 15);
    expect(up.calls).toHaveLength(0);
  });

  it('surfaces errors as the SDK typed errors, in Anthropic shape with the Switchyard code', async () => {
    const notFound = await client.messages
      .create({ model: 'nope', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(notFound).toBeInstanceOf(Anthropic.NotFoundError);
    const nf = notFound as InstanceType<typeof Anthropic.NotFoundError>;
    expect(nf.status).toBe(404);
    expect(nf.error).toMatchObject({
      type: 'error',
      error: { type: 'not_found_error', switchyard_code: 'SY_ERR_MODEL_NOT_FOUND' },
    });

    const missing = await client.messages
      // @ts-expect-error max_tokens is required: the gateway must say so
      .create({ model: 'chat', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(Anthropic.BadRequestError);
    expect((missing as APIError).message).toContain('max_tokens');

    const bad = new Anthropic({ apiKey: 'sk-not-a-key', baseURL: gw.url, maxRetries: 0 });
    const auth = await bad.messages
      .create({ model: 'chat', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(auth).toBeInstanceOf(Anthropic.AuthenticationError);
  });

  it('maps an upstream failure to an Anthropic api_error the SDK raises as InternalServerError', async () => {
    broken.behave(json(500, { error: { message: 'boom' } }));
    const err = await client.messages
      .create({ model: 'broken', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.InternalServerError);
    expect((err as APIError).error).toMatchObject({
      type: 'error',
      error: { type: 'api_error', switchyard_code: 'SY_ERR_UPSTREAM_ERROR' },
    });
  });

  it('ends a stream that fails after its first byte with an error event the SDK raises', async () => {
    broken.behave(sse(['one ', 'two ', 'three ', 'four '], { resetAfter: 2, delayMs: 5 }));
    const stream = client.messages.stream({
      model: 'broken',
      max_tokens: 64,
      messages: [{ role: 'user', content: 'x' }],
    });
    let text = '';
    stream.on('text', (t) => (text += t));
    const err = await stream.finalMessage().catch((e: unknown) => e);
    expect(text).toBe('one two ');
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).error).toMatchObject({
      type: 'error',
      error: { type: 'api_error', switchyard_code: 'SY_ERR_UPSTREAM_STREAM_INTERRUPTED' },
    });
  });

  it('authenticates with Authorization: Bearer too, and refuses a malformed anthropic-version', async () => {
    const bearer = new Anthropic({
      authToken: gw.key,
      apiKey: null,
      baseURL: gw.url,
      maxRetries: 0,
    });
    const msg = await bearer.messages.create({
      model: 'chat',
      max_tokens: 16,
      messages: [{ role: 'user', content: 'bearer' }],
    });
    expect(msg.content).toEqual([{ type: 'text', text: 'echo: bearer' }]);
    const res = await request(`${gw.url}/v1/messages`, {
      method: 'POST',
      headers: {
        'x-api-key': gw.key,
        'anthropic-version': 'latest',
        'content-type': 'application/json',
      },
      body: JSON.stringify({
        model: 'chat',
        max_tokens: 5,
        messages: [{ role: 'user', content: 'x' }],
      }),
    });
    expect(res.statusCode).toBe(400);
    expect(await res.body.json()).toMatchObject({
      type: 'error',
      error: { type: 'invalid_request_error', switchyard_code: 'SY_ERR_INVALID_REQUEST' },
    });
  });
});
