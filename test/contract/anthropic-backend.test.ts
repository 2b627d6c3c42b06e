import { expect } from 'vitest';
import { Pool } from 'undici';
import { AnthropicBackend } from '../../src/backends/http/anthropic.js';
import { systemClock } from '../../src/core/clock.js';
import { httpBackendContract } from './backend.contract.js';

/** The `anthropic` backend (#16) passes the shared HTTP backend contract against a Messages upstream. */
httpBackendContract({
  kind: 'anthropic',
  operation: 'chat',
  baseUrl: (origin) => `${origin}/v1`,
  make: (baseUrl, caps) =>
    new AnthropicBackend({
      name: 'claude-test',
      baseUrl,
      dispatcher: new Pool(new URL(baseUrl).origin),
      clock: systemClock,
      upstreamModel: 'claude-upstream',
      apiKey: 'upstream-secret',
      extraHeaders: {},
      tier: 'central',
      anthropicVersion: '2023-06-01',
      defaultMaxTokens: 1024,
      ...caps,
    }),
  request: {
    op: 'chat',
    body: { model: 'claude-test', messages: [{ role: 'user', content: 'hi' }] },
  },
  success: {
    id: 'msg_1',
    type: 'message',
    role: 'assistant',
    model: 'claude-upstream',
    content: [{ type: 'text', text: 'hello' }],
    stop_reason: 'end_turn',
    stop_sequence: null,
    usage: { input_tokens: 7, output_tokens: 3, cache_read_input_tokens: 2 },
  },
  checkSuccess: (result) => {
    // Cache reads are input tokens too (priced and counted against quotas).
    expect(result.usage).toEqual({ inputTokens: 9, outputTokens: 3 });
    expect(result.json['object']).toBe('chat.completion');
    expect(result.json['choices']).toEqual([
      {
        index: 0,
        message: { role: 'assistant', content: 'hello', refusal: null },
        logprobs: null,
        finish_reason: 'stop',
        stop_reason: null,
      },
    ]);
  },
  errorBody: (message) => ({ type: 'error', error: { type: 'invalid_request_error', message } }),
});
