import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pool } from 'undici';
import { AnthropicBackend } from '../../src/backends/http/anthropic.js';
import { systemClock } from '../../src/core/clock.js';
import { SwitchyardError } from '../../src/core/errors.js';
import type { BackendStream } from '../../src/contracts/backend.js';
import { callContext } from './backend.contract.js';
import {
  hang,
  json,
  startUpstream,
  type Behaviour,
  type TestUpstream,
} from '../support/upstream.js';
import { ANTHROPIC_KEY, anthropicMessages } from '../support/anthropic-upstream.js';

const CHAT = { model: 'claude', messages: [{ role: 'user', content: 'hi there' }], stream: true };

const event = (type: string, data: object = {}): string =>
  `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
const START = event('message_start', {
  message: {
    id: 'msg_1',
    type: 'message',
    role: 'assistant',
    model: 'm',
    content: [],
    usage: { input_tokens: 3, output_tokens: 1 },
  },
});

/** Writes the given raw SSE text, then ends the body cleanly. */
function events(...parts: string[]): Behaviour {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    for (const p of parts) res.write(p);
    res.end();
  };
}

async function collect(stream: BackendStream): Promise<string> {
  let out = '';
  for await (const chunk of stream.chunks) out += chunk.toString('utf8');
  return out;
}

async function failure(p: Promise<unknown>): Promise<SwitchyardError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(SwitchyardError);
    return err as SwitchyardError;
  }
  throw new Error('expected a failure');
}

/** Streams from a Messages upstream (#16): whole, cut, refused, silent. */
describe('backend: anthropic streaming', () => {
  let up: TestUpstream;
  let backend: AnthropicBackend;
  beforeAll(async () => {
    up = await startUpstream();
    backend = new AnthropicBackend({
      name: 'claude',
      baseUrl: `${up.url}/v1`,
      dispatcher: new Pool(up.url),
      clock: systemClock,
      upstreamModel: 'claude-up',
      apiKey: ANTHROPIC_KEY,
      extraHeaders: {},
      tier: 'central',
      anthropicVersion: '2023-06-01',
      defaultMaxTokens: 64,
      timeoutMs: 3_000,
      firstByteTimeoutMs: 400,
      maxResponseBytes: 32 * 1024,
    });
  });
  afterAll(async () => {
    await up.close();
  });

  it('translates a whole stream and reads its usage, without a usage chunk the client did not ask for', async () => {
    up.behave(anthropicMessages());
    const stream = await backend.stream({ op: 'chat', body: CHAT }, callContext());
    const text = await collect(stream);
    stream.cancel();
    expect(text).toContain('"delta":{"content":"echo: "}');
    expect(text).toContain('"finish_reason":"stop"');
    expect(text).not.toContain('"usage"');
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(stream.usage()).toEqual({ inputTokens: 2, outputTokens: 5 });
  });

  it('ends a stream the upstream closed before message_stop with SY_ERR_UPSTREAM_STREAM_INTERRUPTED', async () => {
    up.behave(
      events(
        START,
        event('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
        event('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'half' } }),
      ),
    );
    const stream = await backend.stream({ op: 'chat', body: CHAT }, callContext());
    const err = await failure(collect(stream));
    expect(err.code).toBe('SY_ERR_UPSTREAM_STREAM_INTERRUPTED');
  });

  it('fails before the first byte (so it may be retried) when the first event is an error', async () => {
    up.behave(
      events(event('error', { error: { type: 'overloaded_error', message: 'Overloaded' } })),
    );
    const err = await failure(backend.stream({ op: 'chat', body: CHAT }, callContext()));
    expect(err.code).toBe('SY_ERR_UPSTREAM_ERROR');
    expect(err.retryable).toBe(true);
  });

  it('refuses a JSON answer to a stream request as a bad response', async () => {
    up.behave(json(200, { type: 'message' }));
    const err = await failure(backend.stream({ op: 'chat', body: CHAT }, callContext()));
    expect(err.code).toBe('SY_ERR_UPSTREAM_BAD_RESPONSE');
  });

  it('times out a stream whose first event never comes', async () => {
    up.behave((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': keep-alive comment\n\n');
      void hang(_req, res, up.calls[0]!);
    });
    const t0 = performance.now();
    const err = await failure(backend.stream({ op: 'chat', body: CHAT }, callContext()));
    expect(err.code).toBe('SY_ERR_UPSTREAM_TIMEOUT');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(380);
  });
});
