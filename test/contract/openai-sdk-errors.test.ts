import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';
import {
  chatCompletion,
  json,
  sse,
  startUpstream,
  type TestUpstream,
} from '../support/upstream.js';

/**
 * #16 item 5: errors and headers as the official OpenAI SDK (v6) sees them through the gateway.
 * The upstream is a real local HTTP server answering in OpenAI's wire format.
 */
const RATE_HEADERS = {
  'x-ratelimit-limit-requests': '500',
  'x-ratelimit-remaining-requests': '499',
  'x-ratelimit-reset-tokens': '6ms',
  'x-request-id': 'req_upstream_123',
  'openai-processing-ms': '42',
};
const MESSAGES = [{ role: 'user' as const, content: 'hi' }];

/** The APIError a chat call through `client` ends with. */
async function failureOf(client: OpenAI): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await client.chat.completions.create({ model: 'chat', messages: MESSAGES });
  } catch (e) {
    if (e instanceof OpenAI.APIError) return e;
    throw e;
  }
  throw new Error('the call succeeded');
}

describe('upstream errors and headers through the OpenAI SDK (#16)', () => {
  let up: TestUpstream;
  let gw: TestGateway;
  let client: OpenAI;
  beforeAll(async () => {
    up = await startUpstream();
    gw = await startTestGateway({ config: { models: { chat: openaiModel(up.url) } } });
    client = new OpenAI({ apiKey: gw.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });
  afterEach(() => {
    up.calls.length = 0;
  });

  const failure = () => failureOf(client);

  it("keeps an upstream 400's param, code, type and message, with switchyard_code beside them", async () => {
    up.behave(
      json(400, {
        error: {
          message: 'Invalid value for temperature: 3 is greater than the maximum of 2',
          type: 'invalid_request_error',
          param: 'temperature',
          code: 'invalid_value',
        },
      }),
    );
    const e = await failure();
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect(e.status).toBe(400);
    expect(e.param).toBe('temperature');
    expect(e.code).toBe('invalid_value');
    expect(e.type).toBe('invalid_request_error');
    expect(e.message).toContain('Invalid value for temperature');
    expect((e.error as Record<string, unknown>)['switchyard_code']).toBe(
      'SY_ERR_UPSTREAM_REJECTED',
    );
    // A 400 is the client's to fix: the SDK is told not to retry it.
    expect(e.headers?.get('x-should-retry')).toBe('false');
  });

  it('keeps context_length_exceeded, and a null param stays null', async () => {
    up.behave(
      json(400, {
        error: {
          message: "This model's maximum context length is 8192 tokens.",
          type: 'invalid_request_error',
          param: null,
          code: 'context_length_exceeded',
        },
      }),
    );
    const e = await failure();
    expect(e.code).toBe('context_length_exceeded');
    expect(e.param).toBeNull();
    expect(e.message).toContain('maximum context length');
  });

  it('passes an upstream 429 through with its rate-limit, retry-after-ms and request-id headers', async () => {
    up.behave(
      json(
        429,
        {
          error: {
            message: 'Rate limit reached',
            type: 'requests',
            param: null,
            code: 'rate_limit_exceeded',
          },
        },
        { ...RATE_HEADERS, 'retry-after': '2', 'retry-after-ms': '1500' },
      ),
    );
    const e = await failure();
    expect(e).toBeInstanceOf(OpenAI.RateLimitError);
    expect(e.code).toBe('rate_limit_exceeded');
    expect(e.type).toBe('requests');
    expect(e.headers?.get('x-ratelimit-remaining-requests')).toBe('499');
    expect(e.headers?.get('x-ratelimit-reset-tokens')).toBe('6ms');
    expect(e.headers?.get('retry-after-ms')).toBe('1500');
    expect(e.headers?.get('retry-after')).toBe('2');
    expect(e.headers?.get('openai-processing-ms')).toBe('42');
    expect(e.headers?.get('x-upstream-request-id')).toBe('req_upstream_123');
    // x-request-id stays the gateway's own: the id of its log line and of the body's request_id.
    expect(e.requestID).toBe((e.error as Record<string, unknown>)['request_id']);
    // One attempt, not retried by the gateway: the SDK may retry after retry-after-ms.
    expect(e.headers?.get('x-should-retry')).toBeNull();
    expect(up.calls).toHaveLength(1);
  });

  it('passes rate-limit headers through on a successful answer, plain and streamed', async () => {
    up.behave(json(200, chatCompletion('fine'), RATE_HEADERS));
    const plain = await client.chat.completions
      .create({ model: 'chat', messages: MESSAGES })
      .withResponse();
    expect(plain.data.choices[0]!.message.content).toBe('fine');
    expect(plain.response.headers.get('x-ratelimit-remaining-requests')).toBe('499');
    expect(plain.response.headers.get('x-upstream-request-id')).toBe('req_upstream_123');

    const streamed = sse(['a', 'b']);
    up.behave((req, res, call) => {
      for (const [k, v] of Object.entries(RATE_HEADERS)) res.setHeader(k, v);
      return streamed(req, res, call);
    });
    const s = await client.chat.completions
      .create({ model: 'chat', messages: MESSAGES, stream: true })
      .withResponse();
    let text = '';
    for await (const chunk of s.data) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('ab');
    expect(s.response.headers.get('x-ratelimit-limit-requests')).toBe('500');
    expect(s.response.headers.get('openai-processing-ms')).toBe('42');
  });

  it('keeps only the message of an upstream 401: the key at fault is the gateway’s, not the client’s', async () => {
    up.behave(
      json(401, {
        error: {
          message: 'Incorrect API key',
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_api_key',
        },
      }),
    );
    const e = await failure();
    expect(e.status).toBe(502);
    expect(e.code).toBe('SY_ERR_UPSTREAM_REFUSED');
    expect(e.message).toContain('Incorrect API key');
    expect(e.headers?.get('x-should-retry')).toBe('false');
  });
});

describe('SDK retries do not stack on the gateway’s (#16 retry stacking)', () => {
  let up: TestUpstream;
  let gw: TestGateway;
  beforeAll(async () => {
    up = await startUpstream(json(503, { error: { message: 'overloaded', type: 'server_error' } }));
    gw = await startTestGateway({
      config: {
        models: {
          // The default retry settings: 3 attempts, a budget of 10 tokens (retries stop at 5).
          chat: openaiModel(up.url, { retry: { base_delay_ms: 1, max_delay_ms: 5 } }),
        },
      },
    });
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  it('with the SDK’s default two retries, the upstream sees no more attempts than the gateway allows', async () => {
    const client = new OpenAI({ apiKey: gw.key, baseURL: `${gw.url}/v1` }); // maxRetries: 2
    const first = await failureOf(client);
    expect(first.status).toBe(502);
    expect(first.headers?.get('x-should-retry')).toBe('false');
    // The gateway's three attempts, and no SDK retry on top (without the header: six).
    expect(up.calls).toHaveLength(3);

    // Further calls: the budget (then the breaker) stops the gateway, and the SDK stops too.
    for (let i = 0; i < 5; i++) {
      const e = await failureOf(client);
      expect(e.headers?.get('x-should-retry'), e.message).toBe('false');
    }
    // max_attempts for the first call plus what the rest of the budget (5 of 10 tokens) allows.
    expect(up.calls.length).toBeLessThanOrEqual(3 + 5);
  });
});
