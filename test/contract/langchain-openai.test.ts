import type { AIMessageChunk } from '@langchain/core/messages';
import { HumanMessage, ToolMessage, type AIMessage } from '@langchain/core/messages';
import { ChatOpenAI } from '@langchain/openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';
import { chatModel } from '../support/chat-model.js';
import { startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * LangChain JS (`@langchain/openai` 0.6) against the gateway (#16 "Done means"): ChatOpenAI
 * with the Chat Completions API and with the Responses API (`useResponsesApi`), plain, streamed
 * and with tools, in front of a real local chat completions upstream. Nothing may leave
 * loopback: LangChain fetches tiktoken ranks from the network when it has to count tokens
 * itself, which it must never need here (the gateway reports usage, streams included).
 * (`new ChatOpenAI({ streaming: true }).invoke()` in Chat Completions mode estimates tokens with
 * tiktoken whatever the answer's usage says, LangChain 0.6 `_generate`: streams use `.stream()`,
 * which reads the usage chunk the gateway sends.)
 */
const WEATHER = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'The weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' } },
      required: ['city'],
    },
  },
};

describe.each([false, true])('LangChain ChatOpenAI, useResponsesApi: %s', (useResponsesApi) => {
  let up: TestUpstream;
  let gw: TestGateway;
  let model: ChatOpenAI;
  /** Every URL fetched away from loopback (a download attempt). */
  const offHost: string[] = [];
  const realFetch = globalThis.fetch;

  beforeAll(async () => {
    globalThis.fetch = (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      if (url.hostname !== '127.0.0.1') {
        offHost.push(url.href);
        return Promise.reject(new Error(`no network in tests: ${url.href}`));
      }
      return realFetch(input, init);
    };
    up = await startUpstream(chatModel);
    gw = await startTestGateway({
      config: { models: { chat: openaiModel(up.url, { retry: { max_attempts: 1 } }) } },
    });
    model = new ChatOpenAI({
      model: 'chat',
      apiKey: gw.key,
      configuration: { baseURL: `${gw.url}/v1` },
      maxRetries: 0,
      useResponsesApi,
    });
  });
  afterAll(async () => {
    globalThis.fetch = realFetch;
    await gw?.close();
    await up?.close();
    // Checked last, over every test of the mode.
    expect(offHost).toEqual([]);
  });

  it('invokes and reads the text and the token usage', async () => {
    const r = await model.invoke([new HumanMessage('hello there')]);
    expect(r.text).toBe('seen 1: hello there');
    expect(r.usage_metadata).toMatchObject({ input_tokens: 1, output_tokens: 4, total_tokens: 5 });
    expect(offHost).toEqual([]);
  });

  it('streams the text in chunks, with the usage at the end', async () => {
    let all: AIMessageChunk | undefined;
    let chunks = 0;
    for await (const chunk of await model.stream('stream this')) {
      all = all === undefined ? chunk : all.concat(chunk);
      chunks++;
    }
    expect(chunks).toBeGreaterThan(1);
    expect(all?.text).toBe('seen 1: stream this');
    expect(all?.usage_metadata).toMatchObject({ input_tokens: 1, output_tokens: 4 });
    expect(offHost).toEqual([]);
  });

  it('calls a bound tool, then answers from its result', async () => {
    const withTools = model.bindTools([WEATHER]);
    const first = (await withTools.invoke([new HumanMessage('weather in Paris?')])) as AIMessage;
    expect(first.tool_calls).toEqual([
      expect.objectContaining({ name: 'get_weather', args: { city: 'Paris' } }),
    ]);
    const call = first.tool_calls![0]!;
    const sent = JSON.parse(up.calls.at(-1)!.body) as { tools: { function: { name: string } }[] };
    expect(sent.tools[0]!.function.name).toBe('get_weather');
    const second = await withTools.invoke([
      new HumanMessage('weather in Paris?'),
      first,
      new ToolMessage({ content: '21C and sunny', tool_call_id: call.id! }),
    ]);
    expect(second.text).toBe('tool said: 21C and sunny');
  });

  it('streams a tool call whose arguments arrive whole', async () => {
    const withTools = model.bindTools([WEATHER]);
    let all: AIMessageChunk | undefined;
    for await (const chunk of await withTools.stream('weather in Paris?'))
      all = all === undefined ? chunk : all.concat(chunk);
    expect(all?.tool_calls).toEqual([
      expect.objectContaining({ name: 'get_weather', args: { city: 'Paris' } }),
    ]);
    expect(offHost).toEqual([]);
  });

  it('went through the API the mode names, and every call was answered', () => {
    const lines = gw.logs.filter((l) => l['msg'] === 'request');
    expect(lines.length).toBeGreaterThanOrEqual(5);
    const route = useResponsesApi ? '/v1/responses' : '/v1/chat/completions';
    expect(lines.map((l) => [l['route'], l['status']])).toEqual(lines.map(() => [route, 200]));
  });
});
