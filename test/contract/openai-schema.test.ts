import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventData } from '../../src/backends/http/sse.js';
import { startSimulator, type Simulator } from '../../src/simulator/upstream-simulator.js';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';
import { chatModel } from '../support/chat-model.js';
import { startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * A subset of JSON Schema (type, nullable, enum, required, properties, items), enough to hold
 * answers to the shapes of OpenAI's published OpenAPI spec (openai/openai-openapi), as strict
 * clients generated from it check them (#16 item 9).
 */
interface Schema {
  readonly type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  readonly nullable?: boolean;
  readonly enum?: readonly unknown[];
  readonly required?: readonly string[];
  readonly properties?: Readonly<Record<string, Schema>>;
  readonly items?: Schema;
}

function violations(schema: Schema, value: unknown, path = '$'): string[] {
  if (value === null) return schema.nullable === true ? [] : [`${path}: null is not allowed`];
  if (value === undefined) return [`${path}: missing`];
  const out: string[] = [];
  const t = schema.type;
  const actual = Array.isArray(value)
    ? 'array'
    : Number.isInteger(value)
      ? 'integer'
      : typeof value;
  if (t !== undefined && !(t === actual || (t === 'number' && actual === 'integer')))
    return [`${path}: ${actual} is not ${t}`];
  if (schema.enum !== undefined && !schema.enum.includes(value))
    out.push(`${path}: ${JSON.stringify(value)} is not one of ${JSON.stringify(schema.enum)}`);
  if (t === 'object') {
    const o = value as Record<string, unknown>;
    for (const k of schema.required ?? []) if (!(k in o)) out.push(`${path}.${k}: required`);
    for (const [k, s] of Object.entries(schema.properties ?? {}))
      if (k in o) out.push(...violations(s, o[k], `${path}.${k}`));
  }
  if (t === 'array' && schema.items !== undefined)
    (value as unknown[]).forEach((v, i) =>
      out.push(...violations(schema.items!, v, `${path}[${i}]`)),
    );
  return out;
}

const FINISH = ['stop', 'length', 'tool_calls', 'content_filter', 'function_call'];
const USAGE: Schema = {
  type: 'object',
  required: ['prompt_tokens', 'completion_tokens', 'total_tokens'],
  properties: {
    prompt_tokens: { type: 'integer' },
    completion_tokens: { type: 'integer' },
    total_tokens: { type: 'integer' },
  },
};
/** CreateChatCompletionResponse. */
const COMPLETION: Schema = {
  type: 'object',
  required: ['id', 'choices', 'created', 'model', 'object'],
  properties: {
    id: { type: 'string' },
    object: { type: 'string', enum: ['chat.completion'] },
    created: { type: 'integer' },
    model: { type: 'string' },
    system_fingerprint: { type: 'string' },
    usage: USAGE,
    choices: {
      type: 'array',
      items: {
        type: 'object',
        required: ['finish_reason', 'index', 'message', 'logprobs'],
        properties: {
          finish_reason: { type: 'string', enum: FINISH },
          index: { type: 'integer' },
          logprobs: { type: 'object', nullable: true },
          message: {
            type: 'object',
            required: ['content', 'refusal', 'role'],
            properties: {
              content: { type: 'string', nullable: true },
              refusal: { type: 'string', nullable: true },
              role: { type: 'string', enum: ['assistant'] },
              tool_calls: { type: 'array' },
            },
          },
        },
      },
    },
  },
};
/** CreateChatCompletionStreamResponse. */
const CHUNK: Schema = {
  type: 'object',
  required: ['id', 'choices', 'created', 'model', 'object'],
  properties: {
    id: { type: 'string' },
    object: { type: 'string', enum: ['chat.completion.chunk'] },
    created: { type: 'integer' },
    model: { type: 'string' },
    system_fingerprint: { type: 'string' },
    usage: { ...USAGE, nullable: true },
    choices: {
      type: 'array',
      items: {
        type: 'object',
        required: ['delta', 'finish_reason', 'index'],
        properties: {
          finish_reason: { type: 'string', enum: FINISH, nullable: true },
          index: { type: 'integer' },
          logprobs: { type: 'object', nullable: true },
          delta: {
            type: 'object',
            properties: {
              content: { type: 'string', nullable: true },
              refusal: { type: 'string', nullable: true },
              role: { type: 'string', enum: ['developer', 'system', 'user', 'assistant', 'tool'] },
              tool_calls: { type: 'array' },
            },
          },
        },
      },
    },
  },
};
/** The Response object (its required fields). */
const RESPONSE: Schema = {
  type: 'object',
  required: [
    'id',
    'object',
    'created_at',
    'status',
    'error',
    'incomplete_details',
    'instructions',
    'model',
    'output',
    'parallel_tool_calls',
    'temperature',
    'tool_choice',
    'tools',
    'top_p',
    'metadata',
    'usage',
  ],
  properties: {
    id: { type: 'string' },
    object: { type: 'string', enum: ['response'] },
    created_at: { type: 'number' },
    status: {
      type: 'string',
      enum: ['completed', 'failed', 'in_progress', 'cancelled', 'queued', 'incomplete'],
    },
    error: { type: 'object', nullable: true },
    incomplete_details: { type: 'object', nullable: true },
    instructions: { type: 'string', nullable: true },
    output: { type: 'array', items: { type: 'object', required: ['type'] } },
    usage: {
      type: 'object',
      required: [
        'input_tokens',
        'input_tokens_details',
        'output_tokens',
        'output_tokens_details',
        'total_tokens',
      ],
    },
  },
};

const chunksOf = (text: string): unknown[] =>
  eventData(Buffer.from(text))
    .filter((d) => d !== '[DONE]')
    .map((d) => JSON.parse(d) as unknown);

describe('the validator', () => {
  it('catches a missing required field, a null where none is allowed, and an unknown finish_reason', () => {
    const bad = {
      id: 'x',
      object: 'chat.completion',
      created: 1,
      model: 'm',
      choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'done' }],
    };
    expect(violations(COMPLETION, bad)).toEqual([
      '$.choices[0].logprobs: required',
      '$.choices[0].finish_reason: "done" is not one of ["stop","length","tool_calls","content_filter","function_call"]',
      '$.choices[0].message.refusal: required',
    ]);
    expect(violations(CHUNK, { id: null })).toContain('$.id: null is not allowed');
  });
});

describe("answers Switchyard writes itself follow OpenAI's published schema (#16 item 9)", () => {
  let sim: Simulator;
  let up: TestUpstream;
  let gw: TestGateway;
  const post = async (url: string, body: object, key?: string) => {
    const res = await request(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(key ? { authorization: `Bearer ${key}` } : {}),
      },
      body: JSON.stringify(body),
    });
    return { status: res.statusCode, text: await res.body.text() };
  };

  beforeAll(async () => {
    sim = await startSimulator();
    up = await startUpstream(chatModel);
    gw = await startTestGateway({
      config: {
        models: { chat: openaiModel(up.url), sim: { backend: 'openai', url: `${sim.url}/v1` } },
        journeys: {
          // A chat model's own completion, and an output that is not a completion.
          relay: { stages: [{ id: 'a', infer: { model: 'chat', prompt: 'input.text' } }] },
          fixed: {
            stages: [{ id: 'r', respond: { body: { answer: { const: 'fixed answer' } } } }],
          },
        },
      },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await up?.close();
    await sim?.close();
  });

  it('the simulator: a chat completion and every stream chunk', async () => {
    const chat = { model: 'x', messages: [{ role: 'user', content: 'hi' }] };
    const plain = await post(`${sim.url}/v1/chat/completions`, chat);
    expect(violations(COMPLETION, JSON.parse(plain.text))).toEqual([]);
    const s = await post(`${sim.url}/v1/chat/completions`, {
      ...chat,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = chunksOf(s.text);
    expect(chunks.length).toBeGreaterThan(3);
    for (const c of chunks) expect(violations(CHUNK, c)).toEqual([]);
  });

  it.each(['journey:relay', 'journey:fixed'])(
    '%s: a chat completion with usage, and its stream',
    async (model) => {
      const body = { model, messages: [{ role: 'user', content: 'hi' }] };
      const plain = await post(`${gw.url}/v1/chat/completions`, body, gw.key);
      expect(plain.status).toBe(200);
      const completion = JSON.parse(plain.text) as { usage: unknown };
      expect(violations(COMPLETION, completion)).toEqual([]);
      expect(completion.usage).toEqual(
        model === 'journey:relay'
          ? { prompt_tokens: 1, completion_tokens: 3, total_tokens: 4 } // "seen 1: hi"
          : { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }, // no model call
      );
      const s = await post(
        `${gw.url}/v1/chat/completions`,
        { ...body, stream: true, stream_options: { include_usage: true } },
        gw.key,
      );
      const chunks = chunksOf(s.text) as {
        choices: { finish_reason: string | null }[];
        usage?: unknown;
      }[];
      for (const c of chunks) expect(violations(CHUNK, c)).toEqual([]);
      expect(
        chunks.map((c) => (c.choices.length === 0 ? 'usage' : c.choices[0]!.finish_reason)),
      ).toEqual([null, 'stop', 'usage']);
      expect(chunks[2]!.usage).toEqual(completion.usage);
    },
  );

  it('a Response, translated from chat, and from a journey', async () => {
    for (const model of ['chat', 'sim', 'journey:relay']) {
      const r = await post(`${gw.url}/v1/responses`, { model, input: 'hi' }, gw.key);
      expect(r.status).toBe(200);
      expect(violations(RESPONSE, JSON.parse(r.text))).toEqual([]);
    }
  });
});
