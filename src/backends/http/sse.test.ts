import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../core/clock.js';
import { OpenAiBackend } from './openai.js';
import { eventData, SseSplitter } from './sse.js';

const SEED = 20_261_123;

interface SseEvent {
  readonly data: readonly string[];
  readonly comment: boolean;
  readonly name: string | undefined;
}

/** Text without line breaks, unicode included (so cuts can fall inside a UTF-8 sequence). */
const lineText = fc.string({ unit: 'binary', maxLength: 40 }).map((s) => s.replace(/[\r\n]/g, ''));

const sseEvent: fc.Arbitrary<SseEvent> = fc.record({
  data: fc.array(lineText, { minLength: 1, maxLength: 3 }),
  comment: fc.boolean(),
  name: fc.option(fc.constantFrom('message', 'ping'), { nil: undefined }),
});

function encode(events: readonly SseEvent[], eol: string): Buffer {
  let out = '';
  for (const e of events) {
    if (e.comment) out += `: keep-alive${eol}`;
    if (e.name !== undefined) out += `event: ${e.name}${eol}`;
    for (const line of e.data) out += `data: ${line}${eol}`;
    out += eol;
  }
  return Buffer.from(out, 'utf8');
}

/** `buf` cut at the given points (positions taken modulo its length, duplicates ignored). */
function cut(buf: Buffer, points: readonly number[]): Buffer[] {
  const at = [...new Set(points.map((p) => p % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const p of [...at, buf.length]) {
    if (p > from) out.push(buf.subarray(from, p));
    from = Math.max(from, p);
  }
  return out;
}

describe('SSE splitting', () => {
  it('yields the same events however the stream is cut into chunks', () => {
    fc.assert(
      fc.property(
        fc.array(sseEvent, { minLength: 1, maxLength: 8 }),
        fc.constantFrom('\n', '\r\n'),
        fc.array(fc.nat(), { maxLength: 30 }),
        (events, eol, points) => {
          const whole = encode(events, eol);
          const splitter = new SseSplitter();
          const blocks: Buffer[] = [];
          for (const chunk of cut(whole, points)) {
            const block = splitter.push(chunk);
            if (block === undefined) continue;
            // Every block ends exactly at an event boundary.
            expect(block.toString('latin1').endsWith(eol + eol)).toBe(true);
            blocks.push(block);
          }
          expect(splitter.remainder).toBe(0);
          expect(Buffer.concat(blocks).equals(whole)).toBe(true);
          const data = blocks.flatMap((b) => eventData(b));
          expect(data).toEqual(events.map((e) => e.data.join('\n')));
        },
      ),
      { seed: SEED, numRuns: 2_000 },
    );
  });

  it('holds back an unterminated event as the remainder', () => {
    const splitter = new SseSplitter();
    expect(splitter.push(Buffer.from('data: a\n\ndata: b'))?.toString()).toBe('data: a\n\n');
    expect(splitter.remainder).toBe('data: b'.length);
    expect(splitter.push(Buffer.from('\n'))).toBeUndefined();
    expect(splitter.push(Buffer.from('\n'))?.toString()).toBe('data: b\n\n');
    expect(splitter.remainder).toBe(0);
  });
});

/** An upstream that sends the planned stream in the planned chunks, one write per chunk. */
describe('usage from a streamed answer cut into arbitrary chunks', () => {
  let server: Server;
  let pool: Pool;
  let backend: OpenAiBackend;
  let plan: Buffer[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.socket?.setNoDelay(true);
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        void (async () => {
          for (const chunk of plan) {
            res.write(chunk);
            await new Promise((r) => setImmediate(r));
          }
          res.end();
        })();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    pool = new Pool(url, { connections: 1 });
    backend = new OpenAiBackend({
      name: 'chat',
      baseUrl: `${url}/v1`,
      dispatcher: pool,
      clock: systemClock,
      upstreamModel: 'up',
      apiKey: undefined,
      extraHeaders: {},
      tier: 'central',
      operations: ['chat'],
      timeoutMs: 5_000,
      firstByteTimeoutMs: 5_000,
      maxResponseBytes: 1 << 20,
    });
  });
  afterAll(async () => {
    await pool.close();
    await new Promise<void>((r) => server.close(() => r()));
  });

  const chunk = (content: string): string =>
    `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`;
  const usageChunk = (p: number, c: number): string =>
    `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: p, completion_tokens: c, total_tokens: p + c } })}\n\n`;

  it('reads the usage and forwards every content event, wherever the chunks are cut', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(lineText, { minLength: 1, maxLength: 5 }),
        fc.nat({ max: 100_000 }),
        fc.nat({ max: 100_000 }),
        fc.boolean(),
        fc.array(fc.nat(), { maxLength: 12 }),
        async (contents, prompt, completion, clientWantsUsage, points) => {
          const whole = Buffer.from(
            contents.map(chunk).join('') + usageChunk(prompt, completion) + 'data: [DONE]\n\n',
          );
          plan = cut(whole, points);
          const body = {
            model: 'chat',
            messages: [{ role: 'user', content: 'hi' }],
            stream: true,
            ...(clientWantsUsage ? { stream_options: { include_usage: true } } : {}),
          };
          const controller = new AbortController();
          const stream = await backend.stream(
            { op: 'chat', body },
            {
              requestId: 'r',
              tenant: 't',
              trafficClass: 'interactive',
              signal: controller.signal,
              deadlineAt: systemClock.now() + 5_000,
              attempts: [],
            },
          );
          const out: Buffer[] = [];
          for await (const b of stream.chunks) out.push(b);
          expect(stream.usage()).toEqual({ inputTokens: prompt, outputTokens: completion });
          const data = eventData(Buffer.concat(out));
          expect(data.at(-1)).toBe('[DONE]');
          const forwarded = data
            .slice(0, -1)
            .map((d) => JSON.parse(d) as { choices: { delta: { content: string } }[] });
          expect(
            forwarded.filter((c) => c.choices.length > 0).map((c) => c.choices[0]!.delta.content),
          ).toEqual(contents);
          // The usage-only chunk reaches the client only when it asked for it.
          expect(forwarded.length).toBe(contents.length + (clientWantsUsage ? 1 : 0));
        },
      ),
      { seed: SEED, numRuns: 150 },
    );
  });
});
