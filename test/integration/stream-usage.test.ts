import { countTokens } from 'gpt-tokenizer';
import { request } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { events, subscribe, type ModelCallEvent } from '../../src/core/events.js';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import {
  openaiModel,
  startTestGateway,
  TEST_SECRET,
  type TestGateway,
} from '../support/gateway.js';
import { call } from '../support/http-call.js';
import { sse, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * Stream-exact tokens (#15 item 4): a streamed chat call is priced from the stream's usage
 * chunk; without one, from a real tokenizer over what was delivered (marked estimated); a cut
 * stream costs what it delivered.
 */

const PRICE = { in_per_1k: 1, out_per_1k: 2 };
const MESSAGES = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Tell me about the harbour at dawn, in three short clauses.' },
];
const PIECES = ['The harbour ', 'wakes slowly; ', 'gulls argue, ', 'ropes creak.'];

/** The prompt count, computed here with gpt-tokenizer itself: 3 + per message (3 + role + content). */
function promptTokens(): number {
  return MESSAGES.reduce((n, m) => n + 3 + countTokens(m.role) + countTokens(m.content), 3);
}

function cost(input: number, output: number): number {
  return (PRICE.in_per_1k * input + PRICE.out_per_1k * output) / 1000;
}

async function stream(
  gw: TestGateway,
  extra: Record<string, unknown> = {},
): Promise<{ status: number; text: string }> {
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${gw.key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'chat', messages: MESSAGES, stream: true, ...extra }),
  });
  return { status: res.statusCode, text: await res.body.text() };
}

describe('stream-exact usage', () => {
  let up: TestUpstream;
  let gw: TestGateway;
  const seen: ModelCallEvent[] = [];
  let off: () => void;

  beforeAll(async () => {
    up = await startUpstream();
    gw = await startTestGateway({
      config: { models: { chat: openaiModel(up.url, { cost: PRICE }) } },
    });
    off = subscribe(events.modelCall, (e) => seen.push(e));
  });
  afterAll(async () => {
    off();
    await gw.close();
    await up.close();
  });
  beforeEach(() => {
    seen.length = 0;
  });

  /** The model-call event of the last request (settled when its stream ended). */
  async function settled(): Promise<ModelCallEvent> {
    for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(seen).toHaveLength(1);
    return seen[0]!;
  }

  it('prices a stream from its usage chunk, asks for it, and hides it from a client that did not ask', async () => {
    up.behave(sse(PIECES, { usage: { prompt: 41, completion: 9 } }));
    const r = await stream(gw);
    expect(r.status).toBe(200);
    expect(
      (JSON.parse(up.calls.at(-1)!.body) as Record<string, unknown>)['stream_options'],
    ).toEqual({ include_usage: true });
    expect(r.text).not.toContain('"usage"');
    expect(r.text).toContain('data: [DONE]');
    const e = await settled();
    expect(e).toMatchObject({ inputTokens: 41, outputTokens: 9, estimated: false, outcome: 'ok' });
    expect(e.cost).toBeCloseTo(cost(41, 9), 12);
  });

  it('forwards the usage chunk to a client that asked for it', async () => {
    up.behave(sse(PIECES, { usage: { prompt: 41, completion: 9 } }));
    const r = await stream(gw, { stream_options: { include_usage: true } });
    expect(r.text).toContain('"prompt_tokens":41');
    const e = await settled();
    expect(e).toMatchObject({ inputTokens: 41, outputTokens: 9, estimated: false });
  });

  it('counts a stream without a usage chunk with the tokenizer and marks it estimated', async () => {
    up.behave(sse(PIECES)); // this upstream ignores include_usage
    const r = await stream(gw);
    expect(r.status).toBe(200);
    const e = await settled();
    const output = countTokens(PIECES.join(''));
    expect(output).toBeGreaterThan(4);
    expect(e).toMatchObject({
      inputTokens: promptTokens(),
      outputTokens: output,
      estimated: true,
      outcome: 'ok',
    });
    expect(e.cost).toBeCloseTo(cost(promptTokens(), output), 12);
  });

  it('charges a cut stream for what it delivered, not for what was promised', async () => {
    up.behave(sse(PIECES, { resetAfter: 2, delayMs: 15, usage: { prompt: 41, completion: 9 } }));
    const r = await stream(gw);
    expect(r.status).toBe(200);
    expect(r.text).toContain('SY_ERR_UPSTREAM_STREAM_INTERRUPTED');
    const e = await settled();
    const output = countTokens(PIECES.slice(0, 2).join(''));
    expect(e).toMatchObject({
      inputTokens: promptTokens(),
      outputTokens: output,
      estimated: true,
      outcome: 'SY_ERR_UPSTREAM_STREAM_INTERRUPTED',
    });
    expect(e.cost).toBeCloseTo(cost(promptTokens(), output), 12);
  });

  it('charges a stream the client cancelled for what was delivered before it left', async () => {
    up.behave(sse(PIECES, { delayMs: 60, usage: { prompt: 41, completion: 9 } }));
    const ac = new AbortController();
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', messages: MESSAGES, stream: true }),
      signal: ac.signal,
    });
    let got = '';
    try {
      for await (const chunk of res.body) {
        got += String(chunk);
        if ((got.match(/"content"/g) ?? []).length >= 2) ac.abort();
      }
    } catch {
      // aborted
    }
    const e = await settled();
    expect(e.estimated).toBe(true);
    expect(e.outcome).toBe('SY_ERR_CLIENT_CLOSED');
    // What was delivered: a prefix of at least the two events the client read, never all five.
    const prefixes = [2, 3, 4].map((n) => countTokens(PIECES.slice(0, n).join('')));
    expect(prefixes).toContain(e.outputTokens);
    expect(e.inputTokens).toBe(promptTokens());
  });
});

describe('estimated tokens in the inference log', () => {
  const admin = generateKey('sk');
  let up: TestUpstream;
  let gw: TestGateway;
  beforeAll(async () => {
    up = await startUpstream();
    gw = await startTestGateway({
      config: {
        tenants: {
          acme: {
            keys: [{ id: 'ops', hash: hashKey(admin, TEST_SECRET), admin: true }],
            models: ['*'],
          },
        },
        models: { chat: openaiModel(up.url, { cost: PRICE }) },
        inference_log: { enabled: true, path: 'inference.db', flush_ms: 20 },
      },
    });
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  async function recorded(id: string) {
    for (let i = 0; i < 100; i++) {
      const a = await call(gw.url, 'GET', `/admin/requests/${id}`, admin);
      if (a.status === 200 && (a.body['calls'] as unknown[]).length > 0) return a.body;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`no record of ${id}`);
  }

  it('marks the request and its call tokens_estimated when the tokenizer counted them, and only then', async () => {
    const send = async (id: string) => {
      const res = await request(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${admin}`,
          'content-type': 'application/json',
          'x-request-id': id,
        },
        body: JSON.stringify({ model: 'chat', messages: MESSAGES, stream: true }),
      });
      expect(res.statusCode).toBe(200);
      await res.body.text();
    };
    up.behave(sse(PIECES)); // no usage chunk: counted by the tokenizer
    await send('est-1');
    up.behave(sse(PIECES, { usage: { prompt: 41, completion: 9 } }));
    await send('exact-1');
    const est = await recorded('est-1');
    expect(est['tokens_estimated']).toBe(true);
    expect(est['output_tokens']).toBe(countTokens(PIECES.join('')));
    expect((est['calls'] as Record<string, unknown>[])[0]!['tokens_estimated']).toBe(true);
    const exact = await recorded('exact-1');
    expect(exact['tokens_estimated']).toBeUndefined();
    expect(exact['output_tokens']).toBe(9);
    expect((exact['calls'] as Record<string, unknown>[])[0]!['tokens_estimated']).toBeUndefined();
    // The list shows the flag too.
    const list = await call(gw.url, 'GET', '/admin/requests?limit=2', admin);
    expect(
      (list.body['requests'] as Record<string, unknown>[]).map((r) => [
        r['id'],
        r['tokens_estimated'],
      ]),
    ).toEqual([
      ['exact-1', undefined],
      ['est-1', true],
    ]);
  });
});
