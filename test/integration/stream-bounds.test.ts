import OpenAI from 'openai';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.js';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';
import {
  sse,
  sseChunk,
  startUpstream,
  type Behaviour,
  type TestUpstream,
} from '../support/upstream.js';

/**
 * #16 item 6: a stream is bounded by an idle timeout between events and a maximum duration, not
 * by the unary deadline; the client may set both within the config's caps; a stream that fails
 * after its first byte ends with an error event the official OpenAI SDK raises. The deadline is
 * shortened to 1 s so a 3 s healthy stream stands for the 36 s one against 30 s.
 */
const MESSAGES = [{ role: 'user' as const, content: 'hi' }];
const words = (n: number): string[] => Array.from({ length: n }, (_, i) => `w${i} `);

/** Sends `before` events, then nothing more (the connection stays open). */
function stall(before: number): Behaviour {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    for (let i = 0; i < before; i++) res.write(sseChunk(`s${i}`));
    return new Promise<void>((resolve) => res.on('close', () => resolve()));
  };
}

/** Anthropic's event sequence for `before` words, then nothing more (the connection stays open). */
function stallAnthropic(before: number): Behaviour {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const send = (type: string, data: object): boolean =>
      res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
    send('message_start', {
      message: {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model: 'claude-up',
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: 3, output_tokens: 1 },
      },
    });
    send('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
    for (let i = 0; i < before; i++)
      send('content_block_delta', { index: 0, delta: { type: 'text_delta', text: `a${i}` } });
    return new Promise<void>((resolve) => res.on('close', () => resolve()));
  };
}

describe('stream bounds (#16)', () => {
  let up: TestUpstream;
  let gw: TestGateway;
  let client: OpenAI;
  beforeAll(async () => {
    process.env['SY_TEST_STREAM_BOUNDS_ANTHROPIC_KEY'] = 'sk-ant-test';
    up = await startUpstream();
    gw = await startTestGateway({
      config: {
        server: {
          host: '127.0.0.1',
          port: 0,
          deadline: { default_ms: 1_000 },
          stream: {
            idle_timeout_ms: 600,
            idle_timeout_cap_ms: 1_200,
            duration_ms: 5_000,
            duration_cap_ms: 6_000,
          },
        },
        models: {
          chat: openaiModel(up.url),
          claude: {
            backend: 'anthropic',
            url: `${up.url}/v1`,
            api_key: { env: 'SY_TEST_STREAM_BOUNDS_ANTHROPIC_KEY' },
            upstream_model: 'claude-up',
          },
        },
      },
    });
    client = new OpenAI({ apiKey: gw.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  /** Streams through the SDK; returns the text and the error the iterator threw, if any. */
  async function consume(
    headers: Record<string, string> = {},
    model = 'chat',
  ): Promise<{
    text: string;
    error: InstanceType<typeof OpenAI.APIError> | undefined;
    ms: number;
  }> {
    const t0 = performance.now();
    let text = '';
    try {
      const stream = await client.chat.completions.create(
        { model, messages: MESSAGES, stream: true },
        { headers },
      );
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    } catch (e) {
      if (!(e instanceof OpenAI.APIError)) throw e;
      return { text, error: e, ms: performance.now() - t0 };
    }
    return { text, error: undefined, ms: performance.now() - t0 };
  }

  it('does not cut a healthy 3 s stream at the 1 s deadline', async () => {
    up.behave(sse(words(30), { delayMs: 100 }));
    const r = await consume();
    expect(r.error).toBeUndefined();
    expect(r.text).toBe(words(30).join(''));
    expect(r.ms).toBeGreaterThan(2_500);
  });

  it('ends a stalled stream by the idle timeout, with an error event the SDK raises', async () => {
    up.behave(stall(2));
    const r = await consume();
    expect(r.text).toBe('s0s1');
    expect(r.error?.code).toBe('SY_ERR_STREAM_IDLE_TIMEOUT');
    // The idle timeout (600 ms), not the 1 s deadline nor the upstream's first-byte timeout.
    expect(r.ms).toBeGreaterThan(550);
    expect(r.ms).toBeLessThan(1_000);
  });

  it('ends a stalled stream from an anthropic upstream by the same idle timeout', async () => {
    up.behave(stallAnthropic(2));
    const r = await consume({}, 'claude');
    expect(r.text).toBe('a0a1');
    expect(r.error?.code).toBe('SY_ERR_STREAM_IDLE_TIMEOUT');
    expect(r.ms).toBeGreaterThan(550);
    expect(r.ms).toBeLessThan(1_000);
  });

  it('ends a stream the upstream resets with an error event the SDK raises', async () => {
    up.behave(sse(words(10), { delayMs: 20, resetAfter: 3 }));
    const r = await consume();
    expect(r.text).toBe(words(3).join(''));
    expect(r.error?.code).toBe('SY_ERR_UPSTREAM_STREAM_INTERRUPTED');
  });

  it('takes the idle timeout from x-switchyard-stream-idle-ms, within idle_timeout_cap_ms', async () => {
    up.behave(stall(1));
    const short = await consume({ 'x-switchyard-stream-idle-ms': '150' });
    expect(short.error?.code).toBe('SY_ERR_STREAM_IDLE_TIMEOUT');
    expect(short.ms).toBeLessThan(500);
    // Events 1 s apart pass under a 1.5 s ask (clamped to the 1.2 s cap); 100 s is clamped too.
    up.behave(sse(words(3), { delayMs: 1_000 }));
    const patient = await consume({ 'x-switchyard-stream-idle-ms': '1500' });
    expect(patient.error).toBeUndefined();
    up.behave(stall(1));
    const capped = await consume({ 'x-switchyard-stream-idle-ms': '100000' });
    expect(capped.error?.code).toBe('SY_ERR_STREAM_IDLE_TIMEOUT');
    expect(capped.ms).toBeGreaterThan(1_100);
    expect(capped.ms).toBeLessThan(2_000);
  });

  it('ends a stream at its maximum duration, from duration_ms or x-switchyard-stream-max-ms within duration_cap_ms', async () => {
    up.behave(sse(words(200), { delayMs: 50 })); // 10 s if let run
    const asked = await consume({ 'x-switchyard-stream-max-ms': '1500' });
    expect(asked.error?.code).toBe('SY_ERR_STREAM_MAX_DURATION');
    expect(asked.ms).toBeGreaterThan(1_400);
    expect(asked.ms).toBeLessThan(2_200);
    const byDefault = await consume();
    expect(byDefault.error?.code).toBe('SY_ERR_STREAM_MAX_DURATION');
    expect(byDefault.ms).toBeGreaterThan(4_900);
    expect(byDefault.ms).toBeLessThan(5_800);
    const capped = await consume({ 'x-switchyard-stream-max-ms': '60000' });
    expect(capped.error?.code).toBe('SY_ERR_STREAM_MAX_DURATION');
    expect(capped.ms).toBeGreaterThan(5_900);
    expect(capped.ms).toBeLessThan(6_800);
  }, 30_000);

  it('refuses a malformed stream header with 400, naming it', async () => {
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${gw.key}`,
        'content-type': 'application/json',
        'x-switchyard-stream-idle-ms': '-5',
      },
      body: JSON.stringify({ model: 'chat', messages: MESSAGES, stream: true }),
    });
    expect(res.statusCode).toBe(400);
    const body = (await res.body.json()) as { error: { code: string; param: string } };
    expect(body.error).toMatchObject({
      code: 'SY_ERR_INVALID_REQUEST',
      param: 'x-switchyard-stream-idle-ms',
    });
  });

  it('refuses a config whose stream defaults exceed their caps', () => {
    const bad = (stream: Record<string, number>) =>
      configSchema.safeParse({ server: { stream } }).success;
    expect(bad({ idle_timeout_ms: 2_000, idle_timeout_cap_ms: 1_000 })).toBe(false);
    expect(bad({ duration_ms: 2_000, duration_cap_ms: 1_000 })).toBe(false);
    expect(bad({ idle_timeout_ms: 1_000, duration_ms: 1_000 })).toBe(true);
  });
});
