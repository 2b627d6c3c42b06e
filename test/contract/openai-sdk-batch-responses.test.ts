import OpenAI, { toFile } from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';
import { responsesModel } from '../support/responses-model.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * #16: batches of `/v1/responses` lines through the official OpenAI SDK (v6). Each line is the
 * route's own non-streamed turn: a chat model answers through the chat translation, a model whose
 * upstream speaks the Responses API gets the request passed through.
 */

interface LineOut {
  id: string;
  custom_id: string;
  response: { status_code: number; request_id: string; body: Record<string, unknown> } | null;
  error: { code: string; message: string } | null;
}

interface Body {
  messages?: { role: string; content: string }[];
  stream?: boolean;
}

const line = (customId: string, body: Record<string, unknown>): string =>
  JSON.stringify({ custom_id: customId, method: 'POST', url: '/v1/responses', body });

async function until<T>(f: () => Promise<T>, ok: (v: T) => boolean, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`condition not met: ${JSON.stringify(v).slice(0, 400)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('batches of /v1/responses lines (#16)', () => {
  let chatUp: TestUpstream;
  let nativeUp: TestUpstream;
  let gw: TestGateway;
  let client: OpenAI;

  const chatBodies = (): Body[] =>
    chatUp.calls
      .filter((c) => c.path.endsWith('/chat/completions'))
      .map((c) => JSON.parse(c.body) as Body);

  async function run(lines: readonly string[]) {
    const file = await client.files.create({
      file: await toFile(Buffer.from(lines.join('\n') + '\n'), 'responses.jsonl'),
      purpose: 'batch',
    });
    const created = await client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/responses',
      completion_window: '24h',
    });
    expect(created).toMatchObject({ status: 'in_progress', endpoint: '/v1/responses' });
    const done = await until(
      () => client.batches.retrieve(created.id),
      (b) => b.status !== 'in_progress',
    );
    const read = async (id: string | null | undefined): Promise<LineOut[]> =>
      id === null || id === undefined
        ? []
        : (await (await client.files.content(id)).text())
            .trim()
            .split('\n')
            .map((l) => JSON.parse(l) as LineOut);
    return { done, out: await read(done.output_file_id), errs: await read(done.error_file_id) };
  }

  beforeAll(async () => {
    chatUp = await startUpstream((req, res, call) => {
      const b = JSON.parse(call.body) as Body;
      const asked = b.messages?.at(-1)?.content ?? '';
      return json(
        200,
        chatCompletion(`echo ${asked} (${b.messages?.length ?? 0} messages)`, {
          prompt_tokens: 10,
          completion_tokens: 5,
        }),
      )(req, res, call);
    });
    nativeUp = await startUpstream(responsesModel);
    gw = await startTestGateway({
      config: {
        models: {
          chat: openaiModel(chatUp.url, { cost: { in_per_1k: 1, out_per_1k: 2 } }),
          native: openaiModel(nativeUp.url, { responses: true, upstream_model: 'up-model' }),
        },
        journeys: {
          relay: { stages: [{ id: 'ask', infer: { model: 'chat', prompt: 'input.text' } }] },
        },
        batches: { poll_ms: 20 },
        costs: { flush_ms: 50 },
      },
    });
    client = new OpenAI({ apiKey: gw.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  });
  afterAll(async () => {
    await gw?.close();
    await chatUp?.close();
    await nativeUp?.close();
  });

  it('answers each line with the Response object the route answers, stores it as store says, and refuses a streaming line alone', async () => {
    const first = await client.responses.create({ model: 'chat', input: 'remember me' });
    const { done, out, errs } = await run([
      line('plain', { model: 'chat', input: 'hello', instructions: 'be brief' }),
      line('unstored', { model: 'chat', input: 'quiet', store: false }),
      line('follow', { model: 'chat', input: 'again', previous_response_id: first.id }),
      line('streamed', { model: 'chat', input: 'flow', stream: true }),
      line('lost', { model: 'chat', input: 'x', previous_response_id: 'resp_nope' }),
    ]);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 5, completed: 3, failed: 2 });
    expect(out.map((l) => l.custom_id)).toEqual(['plain', 'unstored', 'follow']);
    const [plain, unstored, follow] = out.map((l) => l.response!);
    expect(plain!.status_code).toBe(200);
    expect(plain!.body).toMatchObject({
      object: 'response',
      status: 'completed',
      model: 'chat',
      instructions: 'be brief',
      store: true,
      output: [
        {
          type: 'message',
          role: 'assistant',
          content: [{ type: 'output_text', text: 'echo hello (2 messages)' }],
        },
      ],
      usage: { input_tokens: 10, output_tokens: 5, total_tokens: 15 },
    });
    expect(plain!.body['id']).toMatch(/^resp_/);
    // A stored batch Response is the tenant's, as one made by the route: retrievable by id.
    const got = await client.responses.retrieve(plain!.body['id'] as string);
    expect(got.output_text).toBe('echo hello (2 messages)');
    expect(unstored!.body['store']).toBe(false);
    await expect(client.responses.retrieve(unstored!.body['id'] as string)).rejects.toMatchObject({
      status: 404,
    });
    // previous_response_id expanded from the store: the earlier turn's input and output, then this.
    expect(follow!.body['previous_response_id']).toBe(first.id);
    expect(follow!.body).toMatchObject({
      output: [{ content: [{ text: 'echo again (3 messages)' }] }],
    });
    expect(errs.map((l) => [l.custom_id, l.response?.status_code])).toEqual([
      ['streamed', 400],
      ['lost', 404],
    ]);
    const streamErr = errs[0]!.response!.body['error'] as Record<string, unknown>;
    expect(streamErr).toMatchObject({ param: 'stream', switchyard_code: 'SY_ERR_INVALID_REQUEST' });
    expect(String(streamErr['message'])).toContain('cannot stream');
    expect((errs[1]!.response!.body['error'] as Record<string, unknown>)['switchyard_code']).toBe(
      'SY_ERR_RESPONSE_NOT_FOUND',
    );
    // The refused lines never reached the upstream; nothing was streamed.
    const asked = chatBodies().map((b) => b.messages?.at(-1)?.content);
    expect(asked).not.toContain('flow');
    expect(asked).not.toContain('x');
    expect(chatBodies().some((b) => b.stream === true)).toBe(false);
  });

  it('passes a line through to an upstream that speaks the Responses API, unstored upstream', async () => {
    const { done, out } = await run([line('n1', { model: 'native', input: 'native hello' })]);
    expect(done.status).toBe('completed');
    const call = nativeUp.calls.at(-1)!;
    expect(call.path).toBe('/v1/responses');
    expect(JSON.parse(call.body)).toMatchObject({ model: 'up-model', store: false });
    const body = out[0]!.response!.body;
    expect(body).toMatchObject({ object: 'response', store: true });
    expect(body['id']).toMatch(/^resp_up/);
    const got = await client.responses.retrieve(body['id'] as string);
    expect(got.output_text).toBe('items 1: native hello');
  });

  it('answers a journey line with the Response the route answers for that journey; an unknown journey fails its line alone', async () => {
    const { done, out, errs } = await run([
      line('j', { model: 'journey:relay', input: 'journey hello' }),
      line('p', { model: 'chat', input: 'plain hello' }),
      line('u', { model: 'journey:nope', input: 'x' }),
    ]);
    expect(done.request_counts).toEqual({ total: 3, completed: 2, failed: 1 });
    expect(out.map((l) => l.custom_id)).toEqual(['j', 'p']);
    const direct = (await client.responses.create({
      model: 'journey:relay',
      input: 'journey hello',
    })) as unknown as Record<string, unknown>;
    const meaningful = (b: Record<string, unknown>) => ({
      object: b['object'],
      status: b['status'],
      model: b['model'],
      store: b['store'],
      output: (b['output'] as Record<string, unknown>[]).map(({ id: _id, ...item }) => item),
      usage: b['usage'],
    });
    const body = out[0]!.response!.body;
    expect(meaningful(body)).toEqual(meaningful(direct));
    expect(body).toMatchObject({
      object: 'response',
      model: 'journey:relay',
      output: [{ content: [{ type: 'output_text', text: 'echo journey hello (1 messages)' }] }],
      usage: { input_tokens: 10, output_tokens: 5, total_tokens: 15 },
    });
    // Stored as the route stores it: the tenant's, retrievable by id.
    const got = await client.responses.retrieve(body['id'] as string);
    expect(got.output_text).toBe('echo journey hello (1 messages)');
    expect(out[1]!.response!.body).toMatchObject({
      output: [{ content: [{ text: 'echo plain hello (1 messages)' }] }],
    });
    expect(errs.map((l) => [l.custom_id, l.response?.status_code])).toEqual([['u', 404]]);
    expect((errs[0]!.response!.body['error'] as Record<string, unknown>)['switchyard_code']).toBe(
      'SY_ERR_JOURNEY_NOT_FOUND',
    );
  });

  it('puts each line’s cost in the cost ledger under the batch class', async () => {
    const rt = gw.gateway.runtime();
    await rt.costs!.recorder.flush();
    const before =
      (await rt.costs!.store.totals({ groupBy: 'class', tenant: 'acme' })).find(
        (g) => g.key === 'batch',
      )?.costNanos ?? 0;
    const { done } = await run([
      line('c1', { model: 'chat', input: 'one' }),
      line('c2', { model: 'chat', input: 'two' }),
    ]);
    const lines = await rt.batches!.store.lines(done.id);
    // 10 in and 5 out tokens at 1 and 2 per 1k: 0.02 a line.
    for (const l of lines) expect(l.cost).toBeCloseTo(0.02, 9);
    await rt.costs!.recorder.flush();
    const after = (await rt.costs!.store.totals({ groupBy: 'class', tenant: 'acme' })).find(
      (g) => g.key === 'batch',
    );
    expect((after!.costNanos - before) / 1e9).toBeCloseTo(0.04, 9);
  });

  it('checks each line as the route does at create time: a bad Responses body fails the batch', async () => {
    const file = await client.files.create({
      file: await toFile(
        Buffer.from(
          [
            line('ok', { model: 'chat', input: 'fine' }),
            line('bad', { model: 'chat', input: 42 }),
            line('nomodel', { model: 'missing', input: 'hi' }),
          ].join('\n'),
        ),
        'bad.jsonl',
      ),
      purpose: 'batch',
    });
    const before = chatUp.calls.length;
    const b = await client.batches.create({
      input_file_id: file.id,
      endpoint: '/v1/responses',
      completion_window: '24h',
    });
    expect(b.status).toBe('failed');
    expect(b.errors?.data?.map((e) => [e.line, e.code, e.param])).toEqual([
      [2, 'invalid_request', 'body.input'],
      [3, 'model_not_found', 'body.model'],
    ]);
    expect(chatUp.calls.length).toBe(before);
  });
});
