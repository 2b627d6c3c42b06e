import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { JsonObject } from '../contracts/json.js';
import { SwitchyardError } from '../core/errors.js';
import { messagesToChat } from './anthropic-request.js';

const base = { model: 'm', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] };

function refusal(body: unknown): SwitchyardError {
  try {
    messagesToChat(body as JsonObject);
  } catch (err) {
    expect(err).toBeInstanceOf(SwitchyardError);
    return err as SwitchyardError;
  }
  throw new Error('expected a refusal');
}

describe('messagesToChat', () => {
  it('refuses what the Messages API refuses, naming the field in param', () => {
    const cases: [unknown, string][] = [
      [{ ...base, max_tokens: undefined }, 'max_tokens'],
      [{ ...base, max_tokens: 0 }, 'max_tokens'],
      [{ ...base, messages: [] }, 'messages'],
      [{ ...base, temperature: 1.5 }, 'temperature'],
      [{ ...base, messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].role'],
      [
        {
          ...base,
          messages: [
            { role: 'user', content: [{ type: 'tool_use', id: 'a', name: 'f', input: {} }] },
          ],
        },
        'messages[0].content[0]',
      ],
      [{ ...base, tools: [{ type: 'web_search_20250305', name: 'web_search' }] }, 'tools[0].type'],
      [{ ...base, tools: [{ name: 'f' }] }, 'tools[0].input_schema'],
      [{ ...base, tool_choice: { type: 'sometimes' } }, 'tool_choice.type'],
      [{ ...base, stop_sequences: 'STOP' }, 'stop_sequences'],
      [{ ...base, output_config: { format: { type: 'regex' } } }, 'output_config.format'],
    ];
    for (const [body, param] of cases) {
      const e = refusal(body);
      expect(e.code).toBe('SY_ERR_INVALID_REQUEST');
      expect(e.param).toBe(param);
    }
  });

  it('puts a turn’s tool results before its other content, marks errors, and drops thinking', () => {
    const chat = messagesToChat({
      ...base,
      messages: [
        { role: 'user', content: 'q' },
        {
          role: 'assistant',
          content: [
            { type: 'thinking', thinking: 'hmm', signature: 's' },
            { type: 'text', text: 'Let me look.' },
            { type: 'tool_use', id: 't1', name: 'f', input: { a: 1 } },
          ],
        },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'and?' },
            {
              type: 'tool_result',
              tool_use_id: 't1',
              is_error: true,
              content: [{ type: 'text', text: 'boom' }],
            },
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } },
          ],
        },
      ],
    });
    expect(chat['messages']).toEqual([
      { role: 'user', content: 'q' },
      {
        role: 'assistant',
        content: 'Let me look.',
        tool_calls: [{ id: 't1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }],
      },
      { role: 'tool', tool_call_id: 't1', content: 'Error: boom' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'and?' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } },
        ],
      },
    ]);
  });

  it('maps tool_choice none without parallel flags, and metadata.user_id to user', () => {
    const chat = messagesToChat({
      ...base,
      tools: [{ name: 'f', input_schema: { type: 'object' } }],
      tool_choice: { type: 'none' },
      metadata: { user_id: 'u-1' },
    });
    expect(chat['tool_choice']).toBe('none');
    expect(chat['parallel_tool_calls']).toBeUndefined();
    expect(chat['user']).toBe('u-1');
  });

  it('answers any JSON body with a chat request or a 400, never another error (property)', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.jsonValue(), (messages, extra) => {
        const body = { model: 'm', max_tokens: 5, messages, system: extra, tools: extra };
        try {
          messagesToChat(body as JsonObject);
        } catch (err) {
          expect(err).toBeInstanceOf(SwitchyardError);
          expect((err as SwitchyardError).code).toBe('SY_ERR_INVALID_REQUEST');
        }
      }),
      { seed: 16, numRuns: 500 },
    );
  });
});
