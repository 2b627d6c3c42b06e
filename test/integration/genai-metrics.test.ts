import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';
import { call } from '../support/http-call.js';
import {
  chatCompletion,
  json,
  sse,
  startUpstream,
  type TestUpstream,
} from '../support/upstream.js';

/**
 * GenAI metrics (#15 item 5), named per the OpenTelemetry GenAI semantic conventions, beside
 * the switchyard_* ones: read from /metrics after real calls through a real upstream.
 */

describe('GenAI metrics on /metrics', () => {
  let up: TestUpstream;
  let gw: TestGateway;
  let text = '';

  /** The value of the one sample named `name` with exactly these labels. */
  function sample(name: string, labels: Record<string, string>): number | undefined {
    const want = Object.entries(labels)
      .map(([k, v]) => `${k}="${v}"`)
      .join(',');
    const line = text.split('\n').find((l) => l.startsWith(`${name}{${want}}`));
    return line === undefined ? undefined : Number(line.split(' ').at(-1));
  }

  beforeAll(async () => {
    up = await startUpstream();
    gw = await startTestGateway({
      config: {
        models: {
          chat: openaiModel(up.url, { upstream_model: 'gpt-test-2026' }),
          broken: openaiModel(up.url, { retry: { max_attempts: 1 } }),
        },
      },
    });
    const ask = (model: string, extra: Record<string, unknown> = {}) =>
      call(gw.url, 'POST', '/v1/chat/completions', gw.key, {
        model,
        messages: [{ role: 'user', content: 'hi' }],
        ...extra,
      });
    up.behave(json(200, chatCompletion('hello', { prompt_tokens: 7, completion_tokens: 3 })));
    expect((await ask('chat')).status).toBe(200);
    up.behave(sse(['a', 'b'], { usage: { prompt: 41, completion: 9 }, delayMs: 5 }));
    expect((await ask('chat', { stream: true })).status).toBe(200);
    up.behave(json(500, { error: { message: 'boom' } }));
    expect((await ask('broken')).status).toBe(502);
    // Streams settle when they end; give the record a moment.
    await new Promise((r) => setTimeout(r, 50));
    text = await (await request(`${gw.url}/metrics`)).body.text();
  });
  afterAll(async () => {
    await gw?.close();
    await up?.close();
  });

  it('observes gen_ai_client_token_usage per call, by token type, request and response model and system', () => {
    const base = {
      gen_ai_operation_name: 'chat',
      gen_ai_system: 'openai',
      gen_ai_request_model: 'chat',
      gen_ai_response_model: 'gpt-test-2026',
    };
    expect(sample('gen_ai_client_token_usage_sum', { ...base, gen_ai_token_type: 'input' })).toBe(
      48,
    );
    expect(sample('gen_ai_client_token_usage_sum', { ...base, gen_ai_token_type: 'output' })).toBe(
      12,
    );
    expect(sample('gen_ai_client_token_usage_count', { ...base, gen_ai_token_type: 'input' })).toBe(
      2,
    );
    // Bucket 16 holds the 7-token call, not the 41-token stream.
    expect(
      sample('gen_ai_client_token_usage_bucket', { le: '16', ...base, gen_ai_token_type: 'input' }),
    ).toBe(1);
    // A failed call used no tokens: no token observation for it.
    expect(text).not.toMatch(/gen_ai_client_token_usage_count\{[^}]*gen_ai_request_model="broken"/);
  });

  it('observes gen_ai_client_operation_duration_seconds per call, with error_type on failures', () => {
    const ok = {
      gen_ai_operation_name: 'chat',
      gen_ai_system: 'openai',
      gen_ai_request_model: 'chat',
      gen_ai_response_model: 'gpt-test-2026',
      error_type: '',
    };
    expect(sample('gen_ai_client_operation_duration_seconds_count', ok)).toBe(2);
    expect(sample('gen_ai_client_operation_duration_seconds_sum', ok)).toBeGreaterThan(0);
    expect(text).toMatch(
      /gen_ai_client_operation_duration_seconds_count\{gen_ai_operation_name="chat",gen_ai_system="openai",gen_ai_request_model="broken",gen_ai_response_model="[^"]+",error_type="SY_ERR_UPSTREAM_[A-Z_]+"\} 1/,
    );
  });

  it('observes gen_ai_server_time_to_first_token_seconds for streams only', () => {
    expect(
      sample('gen_ai_server_time_to_first_token_seconds_count', { gen_ai_request_model: 'chat' }),
    ).toBe(1);
    expect(
      sample('gen_ai_server_time_to_first_token_seconds_sum', { gen_ai_request_model: 'chat' }),
    ).toBeGreaterThan(0);
  });
});
