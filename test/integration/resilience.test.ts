import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { startTestGateway, openaiModel, type TestGateway } from '../support/gateway.js';
import {
  chatCompletion,
  hang,
  json,
  refusedPort,
  sse,
  startUpstream,
  type TestUpstream,
} from '../support/upstream.js';

const CHAT = { model: 'primary', messages: [{ role: 'user', content: 'hi' }] };

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

async function chat(
  gw: TestGateway,
  body: unknown = CHAT,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${gw.key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.body.text();
  return {
    status: res.statusCode,
    headers: res.headers,
    body: text.startsWith('{') ? (JSON.parse(text) as Record<string, unknown>) : { text },
  };
}

function code(a: Answer): unknown {
  return (a.body['error'] as Record<string, unknown> | undefined)?.['code'];
}

async function metric(gw: TestGateway, line: RegExp): Promise<number> {
  const text = await gw.gateway.metrics.render();
  const hit = text.split('\n').find((l) => line.test(l));
  return hit === undefined ? 0 : Number(hit.split(' ').at(-1));
}

describe('retries, breaker, fallback and deadlines through the gateway', () => {
  let a: TestUpstream;
  let b: TestUpstream;
  let gw: TestGateway;
  const noBreaker = { consecutive_failures: 10_000, min_calls: 10_000 };

  beforeAll(async () => {
    a = await startUpstream();
    b = await startUpstream(json(200, chatCompletion('from-b')));
  });
  afterAll(async () => {
    await a.close();
    await b.close();
  });
  afterEach(async () => {
    await gw.close();
    a.calls.length = 0;
    b.calls.length = 0;
    b.behave(json(200, chatCompletion('from-b')));
  });

  it('retries a 503 and answers from the second attempt, with the route saying so', async () => {
    gw = await startTestGateway({
      config: { models: { primary: openaiModel(a.url, { retry: { base_delay_ms: 1 } }) } },
    });
    let n = 0;
    a.behave((req, res, call) =>
      (n++ === 0 ? json(503, { error: { message: 'busy' } }) : json(200, chatCompletion('ok')))(
        req,
        res,
        call,
      ),
    );
    const answer = await chat(gw);
    expect(answer.status).toBe(200);
    expect(a.calls).toHaveLength(2);
    expect(answer.headers['x-switchyard-route']).toBe('primary#1:UPSTREAM_ERROR>primary#2:ok');
  });

  it('never retries a request the upstream rejected as invalid', async () => {
    gw = await startTestGateway({ config: { models: { primary: openaiModel(a.url) } } });
    a.behave(json(400, { error: { message: 'bad temperature' } }));
    const answer = await chat(gw);
    expect(answer.status).toBe(400);
    expect(code(answer)).toBe('SY_ERR_UPSTREAM_REJECTED');
    expect(a.calls).toHaveLength(1);
  });

  it('spends at most the retry budget when an upstream keeps failing', async () => {
    gw = await startTestGateway({
      config: {
        models: {
          primary: openaiModel(a.url, {
            retry: {
              base_delay_ms: 0,
              max_delay_ms: 0,
              budget_ratio: 0.1,
              budget_tokens: 10,
              max_attempts: 3,
            },
            breaker: noBreaker,
          }),
        },
      },
    });
    a.behave(json(503, { error: { message: 'down' } }));
    const requests = 200;
    for (let i = 0; i < requests; i++) expect((await chat(gw)).status).toBe(502);
    const retries = a.calls.length - requests;
    expect(retries).toBeGreaterThan(0);
    // Nothing was answered: only half the bucket (5 tokens) was ever there to spend.
    expect(retries).toBeLessThanOrEqual(5);
    expect(
      await metric(
        gw,
        /^switchyard_retries_total\{backend="primary",decision="budget_exhausted"\}/,
      ),
    ).toBeGreaterThan(100);
  });

  it('opens the breaker after consecutive failures, sheds calls while open, and closes after a good probe', async () => {
    gw = await startTestGateway({
      config: {
        models: {
          primary: openaiModel(a.url, {
            retry: { max_attempts: 1 },
            breaker: {
              consecutive_failures: 3,
              cooldown_ms: 400,
              half_open_probes: 1,
              min_calls: 1000,
            },
          }),
        },
      },
    });
    a.behave(json(500, { error: { message: 'broken' } }));
    for (let i = 0; i < 3; i++) expect(code(await chat(gw))).toBe('SY_ERR_UPSTREAM_ERROR');
    expect(await metric(gw, /^switchyard_breaker_state\{backend="primary"\}/)).toBe(1);
    const open = await chat(gw);
    expect(open.status).toBe(503);
    expect(code(open)).toBe('SY_ERR_CIRCUIT_OPEN');
    expect(open.headers['retry-after']).toBeDefined();
    expect(a.calls).toHaveLength(3); // the open breaker kept the call from the upstream

    await new Promise((r) => setTimeout(r, 450));
    a.behave(json(500, { error: { message: 'still broken' } }));
    expect(code(await chat(gw))).toBe('SY_ERR_UPSTREAM_ERROR'); // the half-open probe fails...
    expect(code(await chat(gw))).toBe('SY_ERR_CIRCUIT_OPEN'); // ...and the breaker opens again
    expect(a.calls).toHaveLength(4);

    await new Promise((r) => setTimeout(r, 450));
    a.behave(json(200, chatCompletion('healed')));
    expect((await chat(gw)).status).toBe(200); // the probe succeeds and closes the breaker
    expect(await metric(gw, /^switchyard_breaker_state\{backend="primary"\}/)).toBe(0);
    for (let i = 0; i < 3; i++) expect((await chat(gw)).status).toBe(200);
  });

  it('falls back to the next model when the primary upstream is unreachable', async () => {
    const dead = await refusedPort();
    gw = await startTestGateway({
      config: {
        models: {
          primary: openaiModel(`http://127.0.0.1:${dead}`, {
            retry: { max_attempts: 1 },
            fallback: ['secondary'],
          }),
          secondary: openaiModel(b.url),
        },
      },
    });
    const answer = await chat(gw);
    expect(answer.status).toBe(200);
    expect(JSON.stringify(answer.body)).toContain('from-b');
    expect(answer.headers['x-switchyard-route']).toBe(
      'primary#1:UPSTREAM_UNREACHABLE>secondary#1:ok',
    );
    expect(
      await metric(
        gw,
        /^switchyard_fallbacks_total\{model="primary",from="primary",to="secondary"/,
      ),
    ).toBe(1);
  });

  it('falls back for a stream before its first byte', async () => {
    gw = await startTestGateway({
      config: {
        models: {
          primary: openaiModel(a.url, { retry: { max_attempts: 1 }, fallback: ['secondary'] }),
          secondary: openaiModel(b.url),
        },
      },
    });
    a.behave(json(503, { error: { message: 'down' } }));
    b.behave(sse(['x', 'y']));
    const answer = await chat(gw, { ...CHAT, stream: true });
    expect(answer.status).toBe(200);
    expect(String(answer.body['text'])).toContain('"content":"y"');
    expect(answer.headers['x-switchyard-route']).toBe('primary#1:UPSTREAM_ERROR>secondary#1:ok');
  });

  it('does not fall back when the upstream rejected the request as invalid', async () => {
    gw = await startTestGateway({
      config: {
        models: {
          primary: openaiModel(a.url, { fallback: ['secondary'] }),
          secondary: openaiModel(b.url),
        },
      },
    });
    a.behave(json(422, { error: { message: 'bad' } }));
    expect(code(await chat(gw))).toBe('SY_ERR_UPSTREAM_REJECTED');
    expect(b.calls).toHaveLength(0);
  });

  it('makes no upstream call after the client deadline has passed', async () => {
    gw = await startTestGateway({
      config: {
        models: {
          // Share 1: the primary may use the whole deadline, so it runs out during the primary.
          primary: openaiModel(a.url, {
            fallback: ['secondary'],
            retry: { max_attempts: 3 },
            first_byte_share: 1,
          }),
          secondary: openaiModel(b.url),
        },
      },
    });
    a.behave(hang);
    const t0 = performance.now();
    const answer = await chat(gw, CHAT, { 'x-switchyard-timeout-ms': '250' });
    const took = performance.now() - t0;
    expect(answer.status).toBe(504);
    expect(code(answer)).toBe('SY_ERR_DEADLINE_EXCEEDED');
    expect(took).toBeLessThan(1_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(a.calls).toHaveLength(1); // no retry...
    expect(b.calls).toHaveLength(0); // ...and no fallback once the budget is spent
    expect(a.calls[0]!.aborted).toBe(true); // and the one call in flight was cancelled
    expect(Number(a.calls[0]!.headers['x-switchyard-timeout-ms'])).toBeLessThanOrEqual(250);
  });

  it('clamps a client budget to the configured maximum', async () => {
    gw = await startTestGateway({
      config: {
        server: { host: '127.0.0.1', port: 0, deadline: { max_ms: 300, default_ms: 200 } },
        models: { primary: openaiModel(a.url) },
      },
    });
    a.behave(json(200, chatCompletion()));
    await chat(gw, CHAT, { 'x-switchyard-timeout-ms': '999999' });
    expect(Number(a.calls[0]!.headers['x-switchyard-timeout-ms'])).toBeLessThanOrEqual(300);
  });

  it('aborts the upstream request when the client disconnects', async () => {
    gw = await startTestGateway({ config: { models: { primary: openaiModel(a.url) } } });
    a.behave(hang);
    const controller = new AbortController();
    const pending = request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.key}`, 'content-type': 'application/json' },
      body: JSON.stringify(CHAT),
      signal: controller.signal,
    }).catch(() => undefined);
    await expect.poll(() => a.calls.length).toBe(1);
    controller.abort();
    await pending;
    await expect.poll(() => a.calls[0]!.aborted, { timeout: 2_000 }).toBe(true);
    await expect
      .poll(() => gw.logs.some((l) => l['code'] === 'SY_ERR_CLIENT_CLOSED' && l['status'] === 499))
      .toBe(true);
  });

  it('aborts the upstream stream when the client disconnects mid-stream', async () => {
    gw = await startTestGateway({ config: { models: { primary: openaiModel(a.url) } } });
    a.behave(
      sse(
        Array.from({ length: 100 }, (_, i) => `t${i}`),
        { delayMs: 30 },
      ),
    );
    const controller = new AbortController();
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...CHAT, stream: true }),
      signal: controller.signal,
    });
    expect(res.statusCode).toBe(200);
    for await (const _chunk of res.body) break;
    controller.abort();
    await expect.poll(() => a.calls[0]!.aborted, { timeout: 2_000 }).toBe(true);
  });

  it('ends a stream cut by the upstream with an SSE error event, after the 200 was sent', async () => {
    gw = await startTestGateway({ config: { models: { primary: openaiModel(a.url) } } });
    a.behave(sse(['a', 'b', 'c'], { resetAfter: 2, delayMs: 10 }));
    const answer = await chat(gw, { ...CHAT, stream: true });
    expect(answer.status).toBe(200);
    const text = String(answer.body['text']);
    expect(text).toContain('"content":"b"');
    expect(text).toContain('SY_ERR_UPSTREAM_STREAM_INTERRUPTED');
    expect(a.calls).toHaveLength(1); // never retried after the first byte
  });
});
