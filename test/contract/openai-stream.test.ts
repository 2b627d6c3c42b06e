import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pool } from 'undici';
import { OpenAiBackend } from '../../src/backends/http/openai.js';
import { eventData } from '../../src/backends/http/sse.js';
import { systemClock } from '../../src/core/clock.js';
import { SwitchyardError } from '../../src/core/errors.js';
import type { BackendStream } from '../../src/contracts/backend.js';
import { callContext } from './backend.contract.js';
import {
  hang,
  json,
  sse,
  sseChunk,
  sseCut,
  startUpstream,
  type TestUpstream,
} from '../support/upstream.js';

const CHAT = { model: 'chat', messages: [{ role: 'user', content: 'hi' }], stream: true };

async function collect(stream: BackendStream): Promise<string> {
  let out = '';
  for await (const chunk of stream.chunks) out += chunk.toString('utf8');
  return out;
}

function contents(text: string): string[] {
  return eventData(Buffer.from(text))
    .filter((d) => d !== '[DONE]')
    .map((d) => {
      const c = JSON.parse(d) as { choices: { delta: { content?: string } }[] };
      return c.choices[0]?.delta.content ?? '';
    });
}

describe('OpenAI-compatible streaming', () => {
  let up: TestUpstream;
  let backend: OpenAiBackend;
  beforeAll(async () => {
    up = await startUpstream();
    backend = new OpenAiBackend({
      name: 'chat',
      baseUrl: `${up.url}/v1`,
      dispatcher: new Pool(up.url),
      clock: systemClock,
      upstreamModel: 'up-model',
      apiKey: undefined,
      extraHeaders: {},
      tier: 'central',
      operations: ['chat'],
      timeoutMs: 3_000,
      firstByteTimeoutMs: 500,
      maxResponseBytes: 32 * 1024,
    });
  });
  afterAll(async () => {
    await up.close();
  });

  it('asks the upstream for usage and reads it from the stream', async () => {
    up.behave(sse(['a', 'b', 'c'], { usage: { prompt: 11, completion: 3 } }));
    const stream = await backend.stream({ op: 'chat', body: CHAT }, callContext());
    const text = await collect(stream);
    const sent = JSON.parse(up.calls.at(-1)!.body) as Record<string, unknown>;
    expect(sent['stream_options']).toEqual({ include_usage: true });
    expect(sent['model']).toBe('up-model');
    expect(stream.usage()).toEqual({ inputTokens: 11, outputTokens: 3 });
    expect(contents(text)).toEqual(['a', 'b', 'c']);
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
  });

  it('drops the usage-only chunk a client did not ask for, and keeps it for one that did', async () => {
    up.behave(sse(['a'], { usage: { prompt: 2, completion: 1 } }));
    const hidden = await collect(await backend.stream({ op: 'chat', body: CHAT }, callContext()));
    expect(hidden).not.toContain('"usage"');
    const asked = { ...CHAT, stream_options: { include_usage: true } };
    const shown = await collect(await backend.stream({ op: 'chat', body: asked }, callContext()));
    expect(shown).toContain('"prompt_tokens":2');
  });

  it('forwards events as they arrive, without waiting for the end of the stream', async () => {
    up.behave(sse(['one', 'two', 'three'], { delayMs: 150 }));
    const t0 = performance.now();
    const stream = await backend.stream({ op: 'chat', body: CHAT }, callContext());
    const iterator = stream.chunks[Symbol.asyncIterator]();
    const first = await iterator.next();
    const firstAt = performance.now() - t0;
    expect(contents((first.value as Buffer).toString())).toEqual(['one']);
    expect(firstAt).toBeLessThan(140);
    stream.cancel();
  });

  it('fails before the first byte with a retryable error when the upstream resets at once', async () => {
    up.behave(sse(['never'], { resetAfter: 0 }));
    const err = await backend
      .stream({ op: 'chat', body: CHAT }, callContext())
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SwitchyardError);
    expect((err as SwitchyardError).retryable).toBe(true);
  });

  it('ends with SY_ERR_UPSTREAM_STREAM_INTERRUPTED when the upstream resets mid-stream', async () => {
    up.behave(sse(['a', 'b', 'c', 'd'], { resetAfter: 2, delayMs: 20 }));
    const stream = await backend.stream({ op: 'chat', body: CHAT }, callContext());
    const seen: string[] = [];
    const err = await (async () => {
      for await (const chunk of stream.chunks) seen.push(...contents(chunk.toString()));
    })().catch((e: unknown) => e);
    expect(seen).toEqual(['a', 'b']);
    expect((err as SwitchyardError).code).toBe('SY_ERR_UPSTREAM_STREAM_INTERRUPTED');
  });

  it('ends with SY_ERR_UPSTREAM_STREAM_INTERRUPTED when the body ends cleanly without a finish_reason or [DONE] (#13)', async () => {
    up.behave(sseCut(['a', 'b', 'c']));
    const stream = await backend.stream({ op: 'chat', body: CHAT }, callContext());
    const seen: string[] = [];
    const err = await (async () => {
      for await (const chunk of stream.chunks) seen.push(...contents(chunk.toString()));
    })().catch((e: unknown) => e);
    expect(seen).toEqual(['a', 'b', 'c']); // what came is forwarded...
    expect((err as SwitchyardError).code).toBe('SY_ERR_UPSTREAM_STREAM_INTERRUPTED'); // ...then the cut is told
  });

  it('takes a stream whose every choice got a finish_reason as whole, without [DONE]', async () => {
    up.behave(sseCut(['a', 'b'], [sseChunk('', 'stop')]));
    const text = await collect(await backend.stream({ op: 'chat', body: CHAT }, callContext()));
    expect(contents(text)).toEqual(['a', 'b', '']);
  });

  it('wants a finish_reason for each of the n choices asked for, unless [DONE] comes', async () => {
    const two = { ...CHAT, n: 2 };
    const finish = (index: number): string =>
      `data: ${JSON.stringify({ choices: [{ index, delta: {}, finish_reason: 'length' }] })}\n\n`;
    up.behave(sseCut(['a'], [finish(0)]));
    const cut = await backend.stream({ op: 'chat', body: two }, callContext());
    await expect(collect(cut)).rejects.toMatchObject({
      code: 'SY_ERR_UPSTREAM_STREAM_INTERRUPTED',
    });
    up.behave(sseCut(['a'], [finish(0), finish(1)]));
    await collect(await backend.stream({ op: 'chat', body: two }, callContext()));
    up.behave(sseCut(['a'], [finish(0), 'data: [DONE]\n\n']));
    await collect(await backend.stream({ op: 'chat', body: two }, callContext()));
  });

  it('does not take a finish_reason written inside the content for the end', async () => {
    up.behave(sseCut(['"finish_reason":"stop"', 'x']));
    const stream = await backend.stream({ op: 'chat', body: CHAT }, callContext());
    await expect(collect(stream)).rejects.toMatchObject({
      code: 'SY_ERR_UPSTREAM_STREAM_INTERRUPTED',
    });
  });

  it('waits for the first event at most the share of the deadline a fallback chain left it', async () => {
    up.behave((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
    });
    const t0 = performance.now();
    const err = await backend
      .stream({ op: 'chat', body: CHAT }, callContext({ firstByteBy: systemClock.now() + 150 }))
      .catch((e: unknown) => e);
    expect((err as SwitchyardError).code).toBe('SY_ERR_ATTEMPT_TIMEOUT');
    expect(performance.now() - t0).toBeLessThan(450); // its own first-byte timeout is 500 ms
  });

  it('streams on past the share once the first event is in hand', async () => {
    up.behave(sse(['a', 'b', 'c'], { delayMs: 100 }));
    const ctx = callContext({ firstByteBy: systemClock.now() + 80 });
    const text = await collect(await backend.stream({ op: 'chat', body: CHAT }, ctx));
    expect(contents(text)).toEqual(['a', 'b', 'c']);
  });

  it('times out a stream whose first event never comes', async () => {
    up.behave((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': keep-alive comment without a blank line');
    });
    const err = await backend
      .stream({ op: 'chat', body: CHAT }, callContext())
      .catch((e: unknown) => e);
    expect((err as SwitchyardError).code).toBe('SY_ERR_UPSTREAM_TIMEOUT');
  });

  it('refuses a stream that grows past the size cap', async () => {
    up.behave(
      sse(
        Array.from({ length: 400 }, () => 'x'.repeat(200)),
        { delayMs: 1 },
      ),
    );
    const stream = await backend.stream({ op: 'chat', body: CHAT }, callContext());
    const err = await collect(stream).catch((e: unknown) => e);
    expect((err as SwitchyardError).code).toBe('SY_ERR_UPSTREAM_RESPONSE_TOO_LARGE');
  });

  it('refuses a 200 answer to a stream request that is not an event stream', async () => {
    up.behave(json(200, { object: 'chat.completion' }));
    const err = await backend
      .stream({ op: 'chat', body: CHAT }, callContext())
      .catch((e: unknown) => e);
    expect((err as SwitchyardError).code).toBe('SY_ERR_UPSTREAM_BAD_RESPONSE');
  });

  it('stops reading and frees the upstream when the consumer cancels', async () => {
    up.behave(
      sse(
        Array.from({ length: 50 }, (_, i) => String(i)),
        { delayMs: 20 },
      ),
    );
    const stream = await backend.stream({ op: 'chat', body: CHAT }, callContext());
    stream.cancel();
    await expect.poll(() => up.calls.at(-1)?.aborted, { timeout: 2_000 }).toBe(true);
  });

  it('never calls an upstream for a request whose deadline has passed', async () => {
    up.behave(hang);
    const before = up.calls.length;
    const err = await backend
      .stream(
        { op: 'chat', body: CHAT },
        callContext({
          signal: AbortSignal.abort(new SwitchyardError('SY_ERR_DEADLINE_EXCEEDED', '1')),
        }),
      )
      .catch((e: unknown) => e);
    expect((err as SwitchyardError).code).toBe('SY_ERR_DEADLINE_EXCEEDED');
    expect(up.calls.length).toBe(before);
  });
});
