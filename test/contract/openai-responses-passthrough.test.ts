import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';
import { responsesModel } from '../support/responses-model.js';
import { startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * An upstream configured with `responses: true` speaks the Responses API itself (#16): the
 * gateway passes requests and streams through, and keeps the stored conversation.
 */
describe('Responses API passed through to an upstream that speaks it', () => {
  let up: TestUpstream;
  let gw: TestGateway;
  let client: OpenAI;
  const lastBody = (): Record<string, unknown> =>
    JSON.parse(up.calls[up.calls.length - 1]!.body) as Record<string, unknown>;

  const outputTokens = async (): Promise<number> => {
    const text = await (await fetch(`${gw.url}/metrics`)).text();
    const m = /switchyard_tokens_total\{model="native",type="output"\} (\d+)/.exec(text);
    return m === null ? 0 : Number(m[1]);
  };

  beforeAll(async () => {
    up = await startUpstream(responsesModel);
    gw = await startTestGateway({
      config: {
        models: {
          native: openaiModel(up.url, {
            responses: true,
            upstream_model: 'up-model',
            retry: { max_attempts: 1 },
          }),
        },
      },
    });
    client = new OpenAI({ apiKey: gw.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  });
  afterAll(async () => {
    await gw?.close();
    await up?.close();
  });

  it('sends the request to the upstream /responses and answers its Response, stored', async () => {
    const r = await client.responses.create({ model: 'native', input: 'hello', instructions: 'x' });
    expect(up.calls[up.calls.length - 1]!.path).toBe('/v1/responses');
    expect(lastBody()).toMatchObject({
      model: 'up-model',
      input: [{ role: 'user' }],
      store: false,
      instructions: 'x',
    });
    expect(r.output_text).toBe('items 1: hello');
    expect(r.usage).toMatchObject({ input_tokens: 1, output_tokens: 3, total_tokens: 4 });
    const got = await client.responses.retrieve(r.id);
    expect(got.output_text).toBe('items 1: hello');
    expect((got as unknown as { store: boolean }).store).toBe(true);
  });

  it('expands previous_response_id into the input it sends upstream', async () => {
    const a = await client.responses.create({ model: 'native', input: 'one' });
    const b = await client.responses.create({
      model: 'native',
      input: 'two',
      previous_response_id: a.id,
    });
    expect(lastBody()['previous_response_id']).toBeUndefined();
    // user one, the assistant's message, user two.
    expect(b.output_text).toBe('items 3: one | two');
    expect(b.previous_response_id).toBe(a.id);
  });

  it('forwards the upstream stream event for event and stores its final Response', async () => {
    const before = await outputTokens();
    const stream = client.responses.stream({ model: 'native', input: 'stream this' });
    const types: string[] = [];
    for await (const e of stream) types.push(e.type);
    const final = await stream.finalResponse();
    expect(final.output_text).toBe('items 1: stream this');
    expect(types[0]).toBe('response.created');
    expect(types[types.length - 1]).toBe('response.completed');
    expect(types.filter((t) => t === 'response.output_text.delta')).toHaveLength(4);
    expect(lastBody()['stream']).toBe(true);
    expect((await client.responses.retrieve(final.id)).output_text).toBe('items 1: stream this');
    // Usage came from the stream's terminal event: 4 output tokens settled.
    expect((await outputTokens()) - before).toBe(4);
  });
});
