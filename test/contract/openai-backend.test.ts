import { expect } from 'vitest';
import { Pool } from 'undici';
import { OpenAiBackend } from '../../src/backends/http/openai.js';
import { systemClock } from '../../src/core/clock.js';
import { chatCompletion } from '../support/upstream.js';
import { httpBackendContract } from './backend.contract.js';

httpBackendContract({
  kind: 'openai',
  operation: 'chat',
  baseUrl: (origin) => `${origin}/v1`,
  make: (baseUrl, caps) =>
    new OpenAiBackend({
      name: 'chat-test',
      baseUrl,
      dispatcher: new Pool(new URL(baseUrl).origin),
      clock: systemClock,
      upstreamModel: 'upstream-model',
      apiKey: 'upstream-secret',
      extraHeaders: {},
      tier: 'central',
      operations: ['chat', 'embeddings'],
      ...caps,
    }),
  request: {
    op: 'chat',
    body: { model: 'chat-test', messages: [{ role: 'user', content: 'hi' }] },
  },
  success: chatCompletion('hello', { prompt_tokens: 7, completion_tokens: 3 }),
  checkSuccess: (result) => {
    expect(result.usage).toEqual({ inputTokens: 7, outputTokens: 3 });
    expect(result.json['object']).toBe('chat.completion');
    expect(JSON.parse(result.raw!.toString('utf8'))).toEqual(result.json);
  },
  errorBody: (message) => ({ error: { message, type: 'invalid_request_error' } }),
});
