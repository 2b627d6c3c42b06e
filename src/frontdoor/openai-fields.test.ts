import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { JsonObject, JsonValue } from '../contracts/json.js';
import { SwitchyardError } from '../core/errors.js';
import { validateChat, validateEmbeddings } from './openai-fields.js';

const CHAT: JsonObject = { model: 'chat', messages: [{ role: 'user', content: 'hi' }] };
const EMBED: JsonObject = { model: 'embed', input: 'hi' };

/** The `param` of the 400 a body gets, or 'ok'. */
function refusal(validate: (b: JsonObject) => void, body: JsonObject): string {
  try {
    validate(body);
    return 'ok';
  } catch (err) {
    expect(err).toBeInstanceOf(SwitchyardError);
    const e = err as SwitchyardError;
    expect(e.code).toBe('SY_ERR_INVALID_REQUEST');
    return e.param ?? '(no param)';
  }
}

const chat = (extra: JsonObject): string => refusal(validateChat, { ...CHAT, ...extra });
const embed = (extra: JsonObject): string => refusal(validateEmbeddings, { ...EMBED, ...extra });

/** Values out of each field's documented range (OpenAI API reference), and the param named. */
const BAD_CHAT: readonly [string, JsonValue, string?][] = [
  ['max_tokens', -1],
  ['max_tokens', 0],
  ['max_tokens', 1.5],
  ['max_tokens', '100'],
  ['max_completion_tokens', 0],
  ['temperature', -0.1],
  ['temperature', 2.01],
  ['temperature', '1'],
  ['top_p', 1.5],
  ['top_p', -1],
  ['n', 0],
  ['n', 129],
  ['n', 2.5],
  ['presence_penalty', 2.5],
  ['frequency_penalty', -3],
  ['logprobs', 'yes'],
  ['top_logprobs', 21],
  ['top_logprobs', -1],
  ['seed', 1.5],
  ['seed', '42'],
  ['stop', ['a', 'b', 'c', 'd', 'e']],
  ['stop', []],
  ['stop', 7],
  ['stop', ['a', 3], 'stop[1]'],
  ['logit_bias', { '50256': 101 }, 'logit_bias.50256'],
  ['logit_bias', { '50256': -100.5 }, 'logit_bias.50256'],
  ['logit_bias', { word: 1 }, 'logit_bias.word'],
  ['logit_bias', [1, 2]],
  ['user', 42],
  ['user', null],
  ['response_format', 'json'],
  ['response_format', { type: 'xml' }, 'response_format.type'],
  ['response_format', { type: 'json_schema' }, 'response_format.json_schema'],
  ['tools', { type: 'function' }],
  ['tools', [{ type: 'function', function: {} }], 'tools[0].function'],
  ['tools', ['f'], 'tools[0]'],
  ['tool_choice', 'always'],
  ['parallel_tool_calls', 'true'],
  ['stream', 'true'],
  ['stream_options', 'usage'],
  ['metadata', { k: 1 }, 'metadata.k'],
  ['modalities', ['video'], 'modalities[0]'],
  ['messages', [], 'messages'],
  ['messages', [{ role: 'robot', content: 'x' }], 'messages[0].role'],
  ['messages', [{ content: 'x' }], 'messages[0].role'],
  ['messages', [{ role: 'user', content: 5 }], 'messages[0].content'],
  ['messages', ['hi'], 'messages[0]'],
  ['model', ''],
  ['model', 7],
];

describe('validateChat', () => {
  it('accepts a minimal request and every field at the edges of its documented range', () => {
    expect(chat({})).toBe('ok');
    expect(
      chat({
        max_tokens: 1,
        max_completion_tokens: 100_000,
        temperature: 2,
        top_p: 0,
        n: 128,
        presence_penalty: -2,
        frequency_penalty: 2,
        logprobs: true,
        top_logprobs: 20,
        seed: -42,
        stop: ['a', 'b', 'c', 'd'],
        logit_bias: { '50256': -100, '1': 100 },
        user: 'u-1',
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema: {} } },
        tools: [{ type: 'function', function: { name: 'f', parameters: {} } }],
        tool_choice: { type: 'function', function: { name: 'f' } },
        parallel_tool_calls: false,
        stream: false,
        stream_options: null,
        metadata: { k: 'v' },
        reasoning_effort: 'low',
        unknown_vendor_field: { anything: true },
      }),
    ).toBe('ok');
    expect(chat({ temperature: 0, top_p: 1, stop: 'END', tool_choice: 'required' })).toBe('ok');
  });

  it('treats null as unset for the fields the reference marks nullable', () => {
    for (const f of ['max_tokens', 'temperature', 'top_p', 'n', 'seed', 'stop', 'logit_bias'])
      expect(chat({ [f]: null }), f).toBe('ok');
  });

  it('refuses each value outside its documented range with a 400 naming the field', () => {
    for (const [field, value, param] of BAD_CHAT)
      expect(chat({ [field]: value }), `${field}: ${JSON.stringify(value)}`).toBe(param ?? field);
  });

  it('refuses top_logprobs without logprobs: true', () => {
    expect(chat({ top_logprobs: 5 })).toBe('top_logprobs');
    expect(chat({ top_logprobs: 5, logprobs: false })).toBe('top_logprobs');
    expect(chat({ top_logprobs: 0, logprobs: true })).toBe('ok');
  });

  it('requires model and messages', () => {
    expect(refusal(validateChat, { messages: CHAT['messages']! })).toBe('model');
    expect(refusal(validateChat, { model: 'chat' })).toBe('messages');
  });

  it('accepts any in-range sampling parameters and refuses any out of range (property)', () => {
    const inRange = fc.record({
      temperature: fc.double({ min: 0, max: 2, noNaN: true }),
      top_p: fc.double({ min: 0, max: 1, noNaN: true }),
      n: fc.integer({ min: 1, max: 128 }),
      max_tokens: fc.integer({ min: 1, max: 2 ** 31 }),
      presence_penalty: fc.double({ min: -2, max: 2, noNaN: true }),
    });
    fc.assert(
      fc.property(inRange, (fields) => chat(fields) === 'ok'),
      { seed: 13, numRuns: 500 },
    );
    const outOfRange = fc.oneof(
      fc
        .double({ min: 2, max: 1e300, noNaN: true, minExcluded: true })
        .map((t) => ['temperature', t] as const),
      fc.integer({ max: 0 }).map((m) => ['max_tokens', m] as const),
      fc.integer({ min: 129 }).map((n) => ['n', n] as const),
    );
    fc.assert(
      fc.property(outOfRange, ([field, v]) => chat({ [field]: v }) === field),
      { seed: 13, numRuns: 500 },
    );
  });
});

describe('validateEmbeddings', () => {
  it('accepts each documented input shape and option', () => {
    expect(embed({})).toBe('ok');
    expect(embed({ input: ['a', 'b'], dimensions: 1, encoding_format: 'base64', user: 'u' })).toBe(
      'ok',
    );
    expect(embed({ input: [1, 2, 3], encoding_format: 'float' })).toBe('ok');
    expect(embed({ input: [[1, 2], [3]] })).toBe('ok');
  });

  it('refuses out-of-range options and inputs with a 400 naming the field', () => {
    const bad: [string, JsonValue][] = [
      ['dimensions', 0],
      ['dimensions', -3],
      ['dimensions', 1.5],
      ['encoding_format', 'hex'],
      ['encoding_format', null],
      ['user', 1],
      ['input', ''],
      ['input', []],
      ['input', ['ok', '']],
      ['input', [1, -2]],
      ['input', [1.5]],
      ['input', [[]]],
      ['input', Array.from({ length: 2049 }, () => 'x')],
      ['input', { text: 'x' }],
      ['model', null],
    ];
    for (const [field, value] of bad)
      expect(embed({ [field]: value }), `${field}: ${JSON.stringify(value)}`).toBe(field);
  });
});
