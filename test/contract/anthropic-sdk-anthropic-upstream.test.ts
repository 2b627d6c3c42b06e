import Anthropic, { APIError } from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { startUpstream, type TestUpstream } from '../support/upstream.js';
import { ANTHROPIC_KEY, anthropicMessages } from '../support/anthropic-upstream.js';

/**
 * `backend: anthropic` (#16) behind both front doors: the Anthropic SDK on /v1/messages and the
 * OpenAI SDK on /v1/chat/completions, against a local server speaking the Messages protocol.
 */
describe('backend: anthropic, with a Messages upstream', () => {
  let up: TestUpstream;
  let gw: TestGateway;
  let anthropic: Anthropic;
  let openai: OpenAI;

  beforeAll(async () => {
    process.env['SY_TEST_ANTHROPIC_KEY'] = ANTHROPIC_KEY;
    process.env['SY_TEST_WRONG_KEY'] = 'sk-ant-wrong';
    up = await startUpstream(anthropicMessages());
    const model = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
      backend: 'anthropic',
      url: `${up.url}/v1`,
      api_key: { env: 'SY_TEST_ANTHROPIC_KEY' },
      ...extra,
    });
    gw = await startTestGateway({
      config: {
        models: {
          claude: model({ upstream_model: 'claude-up' }),
          dated: model({ anthropic_version: '2026-01-01', default_max_tokens: 77 }),
          overloaded: model({ retry: { max_attempts: 1 } }),
          wrongkey: model({ api_key: { env: 'SY_TEST_WRONG_KEY' } }),
        },
      },
    });
    anthropic = new Anthropic({ apiKey: gw.key, baseURL: gw.url, maxRetries: 0 });
    openai = new OpenAI({ apiKey: gw.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });
  afterEach(() => {
    up.calls.length = 0;
  });

  const sent = (): Record<string, unknown> =>
    JSON.parse(up.calls[up.calls.length - 1]!.body) as Record<string, unknown>;
  const tools: Anthropic.Tool[] = [
    { name: 'get_weather', description: 'Weather', input_schema: { type: 'object' } },
  ];

  describe('the Anthropic SDK on /v1/messages', () => {
    it('answers messages.create; the upstream gets its key, a version and the upstream model', async () => {
      const msg = await anthropic.messages.create({
        model: 'claude',
        max_tokens: 50,
        system: 'You are terse.',
        messages: [{ role: 'user', content: 'Hello Claude' }],
      });
      expect(msg.content).toEqual([{ type: 'text', text: 'echo: Hello Claude' }]);
      expect(msg.id).toBe('msg_01upstream');
      expect(msg.model).toBe('claude-up-20260101');
      expect(msg.stop_reason).toBe('end_turn');
      // 2 words of turns; the 3 system words were cache reads, kept apart.
      expect(msg.usage).toMatchObject({
        input_tokens: 2,
        output_tokens: 5,
        cache_read_input_tokens: 3,
      });
      const call = up.calls[0]!;
      expect(call.headers['x-api-key']).toBe(ANTHROPIC_KEY);
      expect(call.headers['anthropic-version']).toBe('2023-06-01');
      expect(call.headers['authorization']).toBeUndefined();
      expect(sent()).toMatchObject({
        model: 'claude-up',
        max_tokens: 50,
        system: 'You are terse.',
        messages: [{ role: 'user', content: [{ type: 'text', text: 'Hello Claude' }] }],
      });
    });

    it('keeps the stop sequence that ended the answer, both ways', async () => {
      const msg = await anthropic.messages.create({
        model: 'claude',
        max_tokens: 50,
        stop_sequences: ['###'],
        messages: [{ role: 'user', content: 'before ### after' }],
      });
      expect(sent()['stop_sequences']).toEqual(['###']);
      expect(msg.stop_reason).toBe('stop_sequence');
      expect(msg.stop_sequence).toBe('###');
      expect(msg.content).toEqual([{ type: 'text', text: 'echo: before ' }]);
    });

    it('streams with messages.stream: text, final message, usage from the upstream', async () => {
      const stream = anthropic.messages.stream({
        model: 'claude',
        max_tokens: 50,
        messages: [{ role: 'user', content: 'three little words' }],
      });
      let text = '';
      stream.on('text', (t) => (text += t));
      const final = await stream.finalMessage();
      expect(text).toBe('echo: three little words');
      expect(final.stop_reason).toBe('end_turn');
      expect(final.usage.input_tokens).toBe(3);
      expect(final.usage.output_tokens).toBe(5);
      expect(sent()['stream']).toBe(true);
    });

    it('runs a tool-use round trip, streamed and whole', async () => {
      const stream = anthropic.messages.stream({
        model: 'claude',
        max_tokens: 50,
        tools,
        tool_choice: { type: 'tool', name: 'get_weather' },
        messages: [{ role: 'user', content: 'Weather in Paris?' }],
      });
      const first = await stream.finalMessage();
      expect(sent()['tool_choice']).toEqual({ type: 'tool', name: 'get_weather' });
      expect(sent()['tools']).toEqual(tools);
      expect(first.stop_reason).toBe('tool_use');
      expect(first.content).toEqual([
        { type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: { city: 'Paris' } },
      ]);
      const second = await anthropic.messages.create({
        model: 'claude',
        max_tokens: 50,
        tools,
        messages: [
          { role: 'user', content: 'Weather in Paris?' },
          { role: 'assistant', content: first.content },
          {
            role: 'user',
            content: [
              { type: 'tool_result', tool_use_id: 'toolu_01', content: '18C' },
              { type: 'text', text: 'Thanks.' },
            ],
          },
        ],
      });
      // The upstream checked the tool_result answers the tool_use of the turn before.
      expect((sent()['messages'] as unknown[])[2]).toEqual({
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 'toolu_01', content: '18C' },
          { type: 'text', text: 'Thanks.' },
        ],
      });
      expect(second.content).toEqual([{ type: 'text', text: 'tool said: 18C' }]);
    });

    it('raises the upstream 529 as the SDK error of an overloaded API', async () => {
      const err = await anthropic.messages
        .create({ model: 'overloaded', max_tokens: 5, messages: [{ role: 'user', content: 'x' }] })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Anthropic.InternalServerError);
      expect((err as APIError).error).toMatchObject({
        type: 'error',
        error: { type: 'api_error', switchyard_code: 'SY_ERR_UPSTREAM_ERROR' },
      });
      expect((err as APIError).message).toContain('Overloaded');
    });

    it('ends a stream whose upstream sent an error event with an error event the SDK raises', async () => {
      const stream = anthropic.messages.stream({
        model: 'claude',
        max_tokens: 50,
        messages: [{ role: 'user', content: 'please FAIL_MID_STREAM now' }],
      });
      let text = '';
      stream.on('text', (t) => (text += t));
      const err = await stream.finalMessage().catch((e: unknown) => e);
      expect(text).toBe('echo: ');
      expect(err).toBeInstanceOf(APIError);
      expect((err as APIError).error).toMatchObject({
        error: { switchyard_code: 'SY_ERR_UPSTREAM_ERROR' },
      });
      expect((err as APIError).message).toContain('overloaded_error');
    });
  });

  describe('the OpenAI SDK on /v1/chat/completions', () => {
    it('gets a chat completion from the Messages upstream: system, usage and finish_reason mapped', async () => {
      const c = await openai.chat.completions.create({
        model: 'claude',
        messages: [
          { role: 'system', content: 'Be nice.' },
          { role: 'user', content: 'hi there' },
        ],
        max_tokens: 40,
        stop: ['zzz'],
        temperature: 0.5,
      });
      expect(sent()).toMatchObject({
        model: 'claude-up',
        system: 'Be nice.',
        max_tokens: 40,
        stop_sequences: ['zzz'],
        temperature: 0.5,
        messages: [{ role: 'user', content: [{ type: 'text', text: 'hi there' }] }],
      });
      expect(c.object).toBe('chat.completion');
      expect(c.choices[0]!.message.content).toBe('echo: hi there');
      expect(c.choices[0]!.finish_reason).toBe('stop');
      expect(c.usage).toMatchObject({ prompt_tokens: 4, completion_tokens: 5, total_tokens: 9 });
      expect(c.usage?.prompt_tokens_details?.cached_tokens).toBe(2);
    });

    it('calls tools both ways: tool_calls out, tool messages back as tool_result turns', async () => {
      const weather = {
        type: 'function' as const,
        function: { name: 'get_weather', parameters: { type: 'object' } },
      };
      const first = await openai.chat.completions.create({
        model: 'claude',
        messages: [{ role: 'user', content: 'Weather?' }],
        tools: [weather],
        tool_choice: 'required',
        parallel_tool_calls: false,
      });
      expect(sent()['tool_choice']).toEqual({ type: 'any', disable_parallel_tool_use: true });
      expect(first.choices[0]!.finish_reason).toBe('tool_calls');
      const call = first.choices[0]!.message.tool_calls![0]!;
      expect(call).toEqual({
        id: 'toolu_01',
        type: 'function',
        function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
      });
      const second = await openai.chat.completions.create({
        model: 'claude',
        tools: [weather],
        messages: [
          { role: 'user', content: 'Weather?' },
          first.choices[0]!.message,
          { role: 'tool', tool_call_id: call.id, content: 'sunny' },
        ],
      });
      expect(second.choices[0]!.message.content).toBe('tool said: sunny');
    });

    it('streams chat chunks translated from Messages events, with usage when asked', async () => {
      const stream = await openai.chat.completions.create({
        model: 'claude',
        messages: [{ role: 'user', content: 'a streamed answer' }],
        stream: true,
        stream_options: { include_usage: true },
      });
      let text = '';
      let finish: string | null = null;
      let usage: OpenAI.CompletionUsage | undefined;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? '';
        finish = chunk.choices[0]?.finish_reason ?? finish;
        if (chunk.usage) usage = chunk.usage;
      }
      expect(text).toBe('echo: a streamed answer');
      expect(finish).toBe('stop');
      expect(usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 5 });
    });

    it('streams tool calls as tool_calls deltas the SDK can join', async () => {
      const stream = await openai.chat.completions.create({
        model: 'claude',
        messages: [{ role: 'user', content: 'Weather?' }],
        tools: [{ type: 'function', function: { name: 'get_weather' } }],
        stream: true,
      });
      let args = '';
      let name = '';
      let finish: string | null = null;
      for await (const chunk of stream) {
        const tc = chunk.choices[0]?.delta.tool_calls?.[0];
        name += tc?.function?.name ?? '';
        args += tc?.function?.arguments ?? '';
        finish = chunk.choices[0]?.finish_reason ?? finish;
      }
      expect(name).toBe('get_weather');
      expect(JSON.parse(args)).toEqual({ city: 'Paris' });
      expect(finish).toBe('tool_calls');
    });
  });

  describe('config keys', () => {
    it('anthropic_version sets the header sent upstream', async () => {
      await openai.chat.completions.create({
        model: 'dated',
        messages: [{ role: 'user', content: 'x' }],
      });
      expect(up.calls[0]!.headers['anthropic-version']).toBe('2026-01-01');
    });

    it('default_max_tokens is what a chat request without max_tokens asks for', async () => {
      await openai.chat.completions.create({
        model: 'dated',
        messages: [{ role: 'user', content: 'x' }],
      });
      expect(sent()['max_tokens']).toBe(77);
      await openai.chat.completions.create({
        model: 'claude',
        messages: [{ role: 'user', content: 'x' }],
      });
      expect(sent()['max_tokens']).toBe(4096);
    });

    it('api_key is sent as x-api-key: a wrong one is refused upstream (502 to the client)', async () => {
      const err = await openai.chat.completions
        .create({ model: 'wrongkey', messages: [{ role: 'user', content: 'x' }] })
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(502);
      expect(up.calls[0]!.headers['x-api-key']).toBe('sk-ant-wrong');
    });
  });
});
