import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SwitchyardError } from '../../core/errors.js';
import { ChatChunks, chatToAnthropic } from './anthropic-wire.js';

const opts = { upstreamModel: 'claude-up', defaultMaxTokens: 99, stream: false };

describe('chatToAnthropic', () => {
  it('joins system messages, merges same-role turns, and turns tool messages into tool_result turns', () => {
    const req = chatToAnthropic(
      {
        model: 'claude',
        messages: [
          { role: 'system', content: 'A.' },
          { role: 'developer', content: [{ type: 'text', text: 'B.' }] },
          { role: 'user', content: 'one' },
          {
            role: 'user',
            content: [
              { type: 'text', text: '' },
              { type: 'text', text: 'two' },
            ],
          },
          {
            role: 'assistant',
            content: '',
            tool_calls: [
              { id: 'c1', type: 'function', function: { name: 'f', arguments: '{"x":1}' } },
            ],
          },
          { role: 'tool', tool_call_id: 'c1', content: 'r1' },
          { role: 'user', content: 'more' },
        ],
      },
      opts,
    );
    expect(req).toEqual({
      model: 'claude-up',
      max_tokens: 99,
      system: 'A.\n\nB.',
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'one' },
            { type: 'text', text: 'two' },
          ],
        },
        {
          role: 'assistant',
          content: [{ type: 'tool_use', id: 'c1', name: 'f', input: { x: 1 } }],
        },
        {
          role: 'user',
          content: [
            { type: 'tool_result', tool_use_id: 'c1', content: 'r1' },
            { type: 'text', text: 'more' },
          ],
        },
      ],
    });
  });

  it('refuses what an Anthropic model cannot take, naming the field', () => {
    const msgs = [{ role: 'user', content: 'x' }];
    const cases: [Record<string, unknown>, string][] = [
      [{ messages: msgs, n: 2 }, 'n'],
      [{ messages: msgs, response_format: { type: 'json_object' } }, 'response_format'],
      [{ messages: msgs, tools: [{ type: 'custom', custom: { name: 'x' } }] }, 'tools[0]'],
      [
        {
          messages: [
            {
              role: 'assistant',
              content: null,
              tool_calls: [{ id: 'a', function: { name: 'f', arguments: '[1]' } }],
            },
          ],
        },
        'messages[0].tool_calls[0].function.arguments',
      ],
    ];
    for (const [body, param] of cases) {
      try {
        chatToAnthropic(body as never, opts);
        throw new Error(`expected ${param} to be refused`);
      } catch (err) {
        expect((err as SwitchyardError).code).toBe('SY_ERR_INVALID_REQUEST');
        expect((err as SwitchyardError).param).toBe(param);
      }
    }
  });
});

describe('ChatChunks', () => {
  const ev = (o: object): string => JSON.stringify(o);

  it('counts cache reads as input and ends with [DONE] only at message_stop', () => {
    const c = new ChatChunks('claude', 1, true);
    c.push(
      ev({
        type: 'message_start',
        message: {
          id: 'msg_1',
          model: 'm',
          usage: { input_tokens: 4, cache_read_input_tokens: 6, output_tokens: 1 },
        },
      }),
    );
    expect(c.usage).toEqual({ inputTokens: 10, outputTokens: 1 });
    const fin = c.push(
      ev({
        type: 'message_delta',
        delta: { stop_reason: 'max_tokens', stop_sequence: null },
        usage: { output_tokens: 12 },
      }),
    );
    expect(fin).toContain('"finish_reason":"length"');
    expect(c.done).toBe(false);
    const end = c.push(ev({ type: 'message_stop' }));
    expect(c.done).toBe(true);
    expect(end).toContain('"prompt_tokens":10');
    expect(end).toContain('"cached_tokens":6');
    expect(end.endsWith('data: [DONE]\n\n')).toBe(true);
  });

  it('throws a registry error for an error event, a rate-limit one as SY_ERR_UPSTREAM_RATE_LIMITED', () => {
    const c = new ChatChunks('claude', 1, false);
    expect(() =>
      c.push(ev({ type: 'error', error: { type: 'rate_limit_error', message: 'slow' } })),
    ).toThrow(expect.objectContaining({ code: 'SY_ERR_UPSTREAM_RATE_LIMITED' }) as Error);
  });

  it('takes any event data without throwing anything but a registry error (property)', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.jsonValue().map((v) => JSON.stringify(v)),
        ),
        (data) => {
          const c = new ChatChunks('claude', 1, true);
          try {
            c.push(data);
          } catch (err) {
            expect(err).toBeInstanceOf(SwitchyardError);
          }
        },
      ),
      { seed: 16, numRuns: 500 },
    );
  });
});
