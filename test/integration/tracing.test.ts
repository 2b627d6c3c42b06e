import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { events, subscribe } from '../../src/core/events.js';
import { openaiModel, startTestGateway, type TestGateway } from '../support/gateway.js';
import { startOtlpReceiver, treeOf, type OtlpReceiver } from '../support/otlp-receiver.js';
import {
  chatCompletion,
  json,
  sseChunk,
  sseUsage,
  startUpstream,
  type TestUpstream,
} from '../support/upstream.js';
import { freePort, startVectorNode, type VectorNode } from '../support/vector-node.js';
import { generateKey } from '../../src/core/api-key.js';
import { clustered } from '../support/vectors.js';

/**
 * Traces (#15): spans of every handoff reach a real OTLP/HTTP receiver, which decodes them with
 * the OpenTelemetry protobuf definitions; the tree and the GenAI attributes are checked, and the
 * W3C trace context is continued from the client to the upstreams and to other gateway nodes.
 */

const CLIENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CLIENT_SPAN = '00f067aa0ba902b7';
const traceparent = (trace = CLIENT_TRACE, span = CLIENT_SPAN, flags = '01') =>
  `00-${trace}-${span}-${flags}`;

const tracing = (endpoint: string, extra: Record<string, unknown> = {}) => ({
  enabled: true,
  otlp: { endpoint },
  export: { interval_ms: 50 },
  ...extra,
});

async function post(
  gw: TestGateway,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
) {
  const res = await request(`${gw.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${gw.key}`, ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, headers: res.headers, json: (await res.body.json()) as Json };
}

type Json = Record<string, unknown>;

const CHAT = { model: 'chat-large', messages: [{ role: 'user', content: 'hi' }] };

describe('traces of a direct chat call', () => {
  let receiver: OtlpReceiver;
  let up: TestUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    up = await startUpstream(
      json(200, chatCompletion('hello', { prompt_tokens: 7, completion_tokens: 3 })),
    );
    gw = await startTestGateway({
      config: {
        models: { 'chat-large': openaiModel(up.url, { tier: 'central' }) },
        tracing: tracing(receiver.endpoint, { service_name: 'gw-direct' }),
      },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await up?.close();
    await receiver?.close();
  });

  it('continues the client trace: request → admission, model call → attempt, with GenAI attributes', async () => {
    const seen = { request: '', model: '' };
    const offs = [
      subscribe(events.requestDone, (e) => {
        if (e.route === '/v1/chat/completions') seen.request = e.traceId ?? '';
      }),
      subscribe(events.modelCall, (e) => {
        seen.model = e.traceId ?? '';
      }),
    ];
    const res = await post(gw, '/v1/chat/completions', CHAT, { traceparent: traceparent() });
    offs.forEach((off) => off());
    expect(res.status).toBe(200);
    expect(res.headers['x-switchyard-trace-id']).toBe(CLIENT_TRACE);
    expect(seen).toEqual({ request: CLIENT_TRACE, model: CLIENT_TRACE });

    const spans = await receiver.waitFor(
      (s) => treeOf(s, CLIENT_TRACE).named(/^POST /).length === 1,
    );
    const t = treeOf(spans, CLIENT_TRACE);
    const root = t.one('POST /v1/chat/completions');
    expect(root.parentSpanId).toBe(CLIENT_SPAN);
    expect(root.kind).toBe(2);
    expect(root.resource['service.name']).toBe('gw-direct');
    expect(root.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.route': '/v1/chat/completions',
      'http.response.status_code': 200,
      'switchyard.tenant': 'acme',
      'switchyard.route_code': 'chat-large#1:ok',
    });
    const admission = t.one('admission');
    expect(admission.parentSpanId).toBe(root.spanId);
    const model = t.one('chat chat-large');
    expect(model.parentSpanId).toBe(root.spanId);
    expect(model.kind).toBe(3);
    expect(model.attributes).toMatchObject({
      'gen_ai.system': 'openai',
      'gen_ai.operation.name': 'chat',
      'gen_ai.request.model': 'chat-large',
      'gen_ai.response.model': 'upstream-model',
      'gen_ai.usage.input_tokens': 7,
      'gen_ai.usage.output_tokens': 3,
      'gen_ai.response.finish_reasons': ['stop'],
      'switchyard.tier': 'central',
      'switchyard.route_code': 'chat-large#1:ok',
    });
    const attempt = t.one('attempt chat-large');
    expect(attempt.parentSpanId).toBe(model.spanId);
    expect(attempt.kind).toBe(3);
    expect(attempt.attributes['switchyard.attempt']).toBe(1);

    // The upstream was asked under the attempt's span, in the same trace.
    const sent = String(up.calls.at(-1)!.headers['traceparent']);
    expect(sent).toBe(`00-${CLIENT_TRACE}-${attempt.spanId}-01`);
  });

  it('puts a stream’s finish reasons and usage on its model span, as the reader saw them go by', async () => {
    const trace = 'aa'.repeat(16);
    up.behave((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(sseChunk('one '));
      res.write(sseChunk('two', 'length'));
      res.write(sseUsage(5, 2));
      res.end('data: [DONE]\n\n');
    });
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${gw.key}`,
        traceparent: traceparent(trace),
      },
      body: JSON.stringify({ ...CHAT, stream: true }),
    });
    expect(await res.body.text()).toContain('[DONE]');
    up.behave(json(200, chatCompletion('hello', { prompt_tokens: 7, completion_tokens: 3 })));
    expect(res.statusCode).toBe(200);
    const spans = await receiver.waitFor((s) => treeOf(s, trace).named(/^chat /).length === 1);
    expect(treeOf(spans, trace).one('chat chat-large').attributes).toMatchObject({
      'gen_ai.response.finish_reasons': ['length'],
      'gen_ai.usage.input_tokens': 5,
      'gen_ai.usage.output_tokens': 2,
    });
  });

  it('starts a trace of its own without a traceparent, and marks a failed call as an error', async () => {
    up.behave(json(500, { error: { message: 'boom' } }));
    const res = await post(gw, '/v1/chat/completions', CHAT);
    up.behave(json(200, chatCompletion()));
    expect(res.status).toBe(502);
    const id = String(res.headers['x-switchyard-trace-id']);
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    expect(id).not.toBe(CLIENT_TRACE);
    const spans = await receiver.waitFor((s) => treeOf(s, id).named(/^POST /).length === 1);
    const t = treeOf(spans, id);
    const root = t.one('POST /v1/chat/completions');
    expect(root.parentSpanId).toBe('');
    expect(root.status.code).toBe(2);
    expect(root.attributes['error.type']).toBe((res.json['error'] as { code: string }).code);
    const model = t.one('chat chat-large');
    expect(model.status.code).toBe(2);
    for (const a of t.named('attempt chat-large')) expect(a.status.code).toBe(2);
  });
});

describe('traces of a five-stage journey with a fallback', () => {
  let receiver: OtlpReceiver;
  let big: TestUpstream;
  let small: TestUpstream;
  let gw: TestGateway;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    big = await startUpstream(json(503, { error: { message: 'down' } }));
    small = await startUpstream(json(200, chatCompletion('from small')));
    gw = await startTestGateway({
      config: {
        models: {
          big: openaiModel(big.url, { tier: 'central', retry: { max_attempts: 1 } }),
          small: openaiModel(small.url, { tier: 'regional' }),
        },
        journeys: {
          help: {
            stages: [
              { id: 'cache', cache: { ttl_ms: 60_000 } },
              { id: 'query', transform: { set: { prompt: { template: 'Q: {input.text}' } } } },
              {
                id: 'route',
                branch: {
                  cases: [{ when: "attr.plan == 'pro'", to: 'answer' }],
                  else: { to: 'answer' },
                },
              },
              {
                id: 'answer',
                fallback: {
                  try: [
                    { infer: { model: 'big', prompt: 'query.prompt' } },
                    { infer: { model: 'small', prompt: 'query.prompt' } },
                  ],
                },
              },
              { id: 'reply', respond: { body: { answer: 'answer.text' } } },
            ],
          },
        },
        tracing: tracing(receiver.endpoint),
      },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await big?.close();
    await small?.close();
    await receiver?.close();
  });

  it('hangs every stage under the journey, and each alternative and its model call under the fallback', async () => {
    const res = await post(
      gw,
      '/v1/journeys/help',
      { input: 'where is my parcel', attributes: { plan: 'pro' } },
      { traceparent: traceparent() },
    );
    expect(res.status).toBe(200);
    expect(res.json['output']).toEqual({ answer: 'from small' });
    const spans = await receiver.waitFor(
      (s) => treeOf(s, CLIENT_TRACE).named(/^POST /).length === 1,
    );
    const t = treeOf(spans, CLIENT_TRACE);
    const root = t.one('POST /v1/journeys/:name');
    expect(root.parentSpanId).toBe(CLIENT_SPAN);
    const journey = t.one('journey help');
    expect(journey.parentSpanId).toBe(root.spanId);
    expect(journey.attributes['switchyard.decisions']).toEqual(['fallback']);
    expect(t.childrenOf(journey).map((s) => s.name)).toEqual(
      expect.arrayContaining([
        'stage cache',
        'stage query',
        'stage route',
        'stage answer',
        'stage reply',
      ]),
    );
    expect(t.childrenOf(journey)).toHaveLength(5);
    // The cache stage's lookup.
    const lookup = t.one('cache.lookup');
    expect(t.parentOf(lookup)!.name).toBe('stage cache');
    expect(lookup.attributes['switchyard.cache.result']).toBe('miss');
    // The fallback: the first alternative failed (error status), the second answered.
    const answer = t.one('stage answer');
    const alts = t.childrenOf(answer);
    expect(alts.map((s) => s.name).sort()).toEqual(['stage answer-infer0', 'stage answer-infer1']);
    const first = t.one('stage answer-infer0');
    expect(first.status.code).toBe(2);
    const bigCall = t.one('chat big');
    expect(bigCall.parentSpanId).toBe(first.spanId);
    expect(bigCall.status.code).toBe(2);
    expect(bigCall.attributes['error.type']).toBe('SY_ERR_UPSTREAM_ERROR');
    const second = t.one('stage answer-infer1');
    expect(second.status.code).toBe(0);
    const smallCall = t.one('chat small');
    expect(smallCall.parentSpanId).toBe(second.spanId);
    expect(smallCall.attributes).toMatchObject({
      'gen_ai.system': 'openai',
      'gen_ai.request.model': 'small',
      'gen_ai.usage.input_tokens': 7,
      'gen_ai.usage.output_tokens': 3,
      'switchyard.tier': 'regional',
    });
    const attempt = t.one('attempt small');
    expect(attempt.parentSpanId).toBe(smallCall.spanId);
    expect(String(small.calls.at(-1)!.headers['traceparent'])).toBe(
      `00-${CLIENT_TRACE}-${attempt.spanId}-01`,
    );
    expect(String(big.calls.at(-1)!.headers['traceparent'])).toBe(
      `00-${CLIENT_TRACE}-${t.one('attempt big').spanId}-01`,
    );
  });
});

describe('traces across a remote vector shard', () => {
  let receiver: OtlpReceiver;
  let a: VectorNode;
  let b: VectorNode;
  const DIMS = 8;
  const vs = clustered(10, DIMS, 2, 5);

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    const ports = { a: await freePort(), b: await freePort() };
    const keys = { a: generateKey('sk'), b: generateKey('sk') };
    process.env['SY_TEST_TRACE_A_KEY'] = keys.a;
    const vectors = {
      scan_workers: 0,
      collections: {
        memories: {
          dims: DIMS,
          shards: [
            {
              id: 'mem-a',
              node: 'a',
              entity_types: ['item'],
              url: `http://127.0.0.1:${ports.a}`,
              api_key: { env: 'SY_TEST_TRACE_A_KEY' },
            },
            { id: 'mem-b', entity_types: ['session'], index: 'exact' },
          ],
        },
      },
    };
    a = await startVectorNode({
      node: 'a',
      vectors,
      port: ports.a,
      nodeKey: keys.a,
      extra: { tracing: tracing(receiver.endpoint, { service_name: 'node-a' }) },
    });
    b = await startVectorNode({
      node: 'b',
      vectors,
      port: ports.b,
      nodeKey: keys.b,
      extra: { tracing: tracing(receiver.endpoint, { service_name: 'node-b' }) },
    });
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await receiver?.close();
  });

  const call = async (node: VectorNode, path: string, body: unknown, headers = {}) => {
    const res = await request(`${node.url}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${node.acmeKey}`,
        ...headers,
      },
      body: JSON.stringify(body),
    });
    return { status: res.statusCode, json: (await res.body.json()) as Json };
  };

  it('continues the trace on the node that holds the shard, under the shard search span', async () => {
    const up = await call(a, '/v1/vectors/memories/upsert', {
      records: [0, 1, 2].map((i) => ({
        id: `r${i}`,
        vector: Array.from(vs[i]!),
        meta: { label: 'public', entityType: 'item' },
      })),
    });
    expect(up.status).toBe(200);
    const found = await call(
      b,
      '/v1/vectors/memories/search',
      { vector: Array.from(vs[1]!), k: 2 },
      { traceparent: traceparent() },
    );
    expect(found.status).toBe(200);
    expect((found.json['hits'] as { id: string }[])[0]!.id).toBe('r1');
    const spans = await receiver.waitFor(
      (s) => treeOf(s, CLIENT_TRACE).named(/^POST /).length === 2,
    );
    const t = treeOf(spans, CLIENT_TRACE);
    const root = t.one('POST /v1/vectors/:collection/search');
    expect(root.parentSpanId).toBe(CLIENT_SPAN);
    expect(root.resource['service.name']).toBe('node-b');
    const retrieval = t.one('retrieval');
    expect(retrieval.parentSpanId).toBe(root.spanId);
    expect(retrieval.attributes['switchyard.shards']).toEqual(
      expect.arrayContaining(['mem-a', 'mem-b']),
    );
    const remote = t.one('shard.search mem-a');
    expect(remote.parentSpanId).toBe(retrieval.spanId);
    expect(remote.kind).toBe(3);
    expect(remote.attributes['switchyard.shard.location']).toBe('remote');
    expect(t.one('shard.search mem-b').attributes['switchyard.shard.location']).toBe('local');
    // Node a served the shard search as a child of node b's shard span.
    const served = t.one('POST /v1/vector-shards/:shard/:op');
    expect(served.resource['service.name']).toBe('node-a');
    expect(served.parentSpanId).toBe(remote.spanId);
    expect(served.kind).toBe(2);
  });
});

describe('trace ids as Prometheus exemplars', () => {
  let receiver: OtlpReceiver;
  let up: TestUpstream;
  let gw: TestGateway;
  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    up = await startUpstream(json(200, chatCompletion()));
    gw = await startTestGateway({
      config: {
        models: { 'chat-large': openaiModel(up.url) },
        tracing: tracing(receiver.endpoint),
      },
    });
  });
  afterAll(async () => {
    await gw?.close();
    await up?.close();
    await receiver?.close();
  });
  const scrape = async (accept?: string) => {
    const res = await request(`${gw.url}/metrics`, {
      headers: accept === undefined ? {} : { accept },
    });
    return { type: String(res.headers['content-type']), text: await res.body.text() };
  };

  it('puts the trace id on the request-duration bucket when scraped as OpenMetrics', async () => {
    const res = await post(gw, '/v1/chat/completions', CHAT, { traceparent: traceparent() });
    expect(res.status).toBe(200);
    const om = await scrape('application/openmetrics-text; version=1.0.0,text/plain;q=0.5');
    expect(om.type).toContain('application/openmetrics-text');
    expect(om.text.endsWith('# EOF\n')).toBe(true);
    const lines = om.text
      .split('\n')
      .filter(
        (l) =>
          l.startsWith('switchyard_request_duration_seconds_bucket{') &&
          l.includes('route="/v1/chat/completions"'),
      );
    const withExemplar = lines.filter((l) => l.includes(`# {trace_id="${CLIENT_TRACE}"}`));
    expect(withExemplar).toHaveLength(1);
    // Counters keep their names in OpenMetrics form.
    expect(om.text).toMatch(/^# TYPE switchyard_requests counter$/m);
    expect(om.text).toMatch(/^switchyard_requests_total\{route="\/v1\/chat\/completions"/m);
    // Scrapes and probes are not traced (the chat call's spans arrive; the scrape's never do).
    await receiver.waitFor((x) => treeOf(x, CLIENT_TRACE).spans.length > 0);
    await new Promise((r) => setTimeout(r, 200));
    expect(receiver.spans().some((x) => x.name.startsWith('GET /metrics'))).toBe(false);
    // Prometheus text (the default) is unchanged: no exemplars, counters named as before.
    const text = await scrape();
    expect(text.type).toContain('text/plain');
    expect(text.text).not.toContain('trace_id');
    expect(text.text).toMatch(/^# TYPE switchyard_requests_total counter$/m);
    // ...and stays so after an OpenMetrics scrape.
    await scrape('application/openmetrics-text');
    expect((await scrape()).text).toMatch(/^# TYPE switchyard_requests_total counter$/m);
  });
});

describe('tracing knobs', () => {
  const open: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    for (const o of open.splice(0).reverse()) await o.close();
  });
  const setup = async (tracingConfig: Record<string, unknown> | undefined) => {
    const receiver = await startOtlpReceiver();
    const up = await startUpstream(json(200, chatCompletion()));
    open.push(receiver, up);
    const gw = await startTestGateway({
      config: {
        models: { 'chat-large': openaiModel(up.url) },
        ...(tracingConfig === undefined
          ? {}
          : { tracing: { otlp: { endpoint: receiver.endpoint }, ...tracingConfig } }),
      },
    });
    open.push(gw);
    return { receiver, up, gw };
  };

  it("tracing.enabled false (the default): no spans, no trace header, the client's traceparent passed on untouched", async () => {
    const { receiver, up, gw } = await setup(undefined);
    const sent = traceparent();
    const res = await post(gw, '/v1/chat/completions', CHAT, { traceparent: sent });
    expect(res.status).toBe(200);
    expect(res.headers['x-switchyard-trace-id']).toBeUndefined();
    // No span of this node in between: the upstream (or the next gateway, #17) sees the caller's.
    expect(up.calls.at(-1)!.headers['traceparent']).toBe(sent);
    await post(gw, '/v1/chat/completions', CHAT);
    expect(up.calls.at(-1)!.headers['traceparent']).toBeUndefined();
    const scraped = await request(`${gw.url}/metrics`, {
      headers: { accept: 'application/openmetrics-text' },
    });
    expect(String(scraped.headers['content-type'])).toContain('text/plain');
    expect(await scraped.body.text()).not.toContain('trace_id');
    await new Promise((r) => setTimeout(r, 200));
    expect(receiver.spans()).toEqual([]);
  });

  it('a reload turns tracing on, and off again, without a restart', async () => {
    const { receiver, up, gw } = await setup(undefined);
    expect((await post(gw, '/v1/chat/completions', CHAT)).headers['x-switchyard-trace-id']).toBe(
      undefined,
    );
    gw.writeConfig({
      models: { 'chat-large': openaiModel(up.url) },
      tracing: {
        enabled: true,
        otlp: { endpoint: receiver.endpoint },
        export: { interval_ms: 20 },
      },
    });
    expect((await gw.gateway.reload('api')).result).toBe('applied');
    const on = await post(gw, '/v1/chat/completions', CHAT);
    const id = String(on.headers['x-switchyard-trace-id']);
    expect(id).toMatch(/^[0-9a-f]{32}$/);
    await receiver.waitFor((s) => s.some((x) => x.traceId === id));
    gw.writeConfig({ models: { 'chat-large': openaiModel(up.url) } });
    expect((await gw.gateway.reload('api')).result).toBe('applied');
    const off = await post(gw, '/v1/chat/completions', CHAT);
    expect(off.headers['x-switchyard-trace-id']).toBeUndefined();
    expect(up.calls.at(-1)!.headers['traceparent']).toBeUndefined();
  });

  it('tracing.sample_ratio 0 records nothing, yet propagates the trace id unsampled', async () => {
    const { receiver, up, gw } = await setup({
      enabled: true,
      sample_ratio: 0,
      export: { interval_ms: 20 },
    });
    for (let i = 0; i < 5; i++)
      expect((await post(gw, '/v1/chat/completions', CHAT)).headers['x-switchyard-trace-id']).toBe(
        undefined,
      );
    expect(String(up.calls.at(-1)!.headers['traceparent'])).toMatch(
      /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/,
    );
    await new Promise((r) => setTimeout(r, 300));
    expect(receiver.spans()).toEqual([]);
  });

  it('tracing.sample_ratio 0 follows a client that sampled its trace (parent-based)', async () => {
    const { receiver, gw } = await setup({
      enabled: true,
      sample_ratio: 0,
      export: { interval_ms: 20 },
    });
    const res = await post(gw, '/v1/chat/completions', CHAT, { traceparent: traceparent() });
    expect(res.headers['x-switchyard-trace-id']).toBe(CLIENT_TRACE);
    await receiver.waitFor((s) => s.some((x) => x.name === 'POST /v1/chat/completions'));
  });

  it('tracing.otlp.protocol http/json sends OTLP/JSON; headers (literal and from env) ride along', async () => {
    process.env['SY_TEST_OTLP_TOKEN'] = 'tok-123';
    const r = await startOtlpReceiver();
    const upstream = await startUpstream(json(200, chatCompletion()));
    open.push(r, upstream);
    const g = await startTestGateway({
      config: {
        models: { 'chat-large': openaiModel(upstream.url) },
        tracing: {
          enabled: true,
          otlp: {
            endpoint: r.endpoint,
            protocol: 'http/json',
            headers: { 'x-tenant-token': 'static', authorization: { env: 'SY_TEST_OTLP_TOKEN' } },
          },
          export: { interval_ms: 20 },
        },
      },
    });
    open.push(g);
    await post(g, '/v1/chat/completions', CHAT);
    await r.waitFor((s) => s.some((x) => x.name === 'chat chat-large'));
    const exp = r.exports[0]!;
    expect(exp.contentType).toContain('application/json');
    expect(exp.headers['x-tenant-token']).toBe('static');
    expect(exp.headers['authorization']).toBe('tok-123');
    const model = r.spans().find((x) => x.name === 'chat chat-large')!;
    expect(model.attributes['gen_ai.request.model']).toBe('chat-large');
  });

  it('tracing.otlp.protocol http/protobuf (the default) sends protobuf', async () => {
    const { receiver, gw } = await setup({ enabled: true, export: { interval_ms: 20 } });
    await post(gw, '/v1/chat/completions', CHAT);
    await receiver.waitFor((s) => s.length > 0);
    expect(receiver.exports[0]!.contentType).toBe('application/x-protobuf');
  });

  it('tracing.export.batch_size caps the spans of one export', async () => {
    const { receiver, gw } = await setup({
      enabled: true,
      export: { interval_ms: 20, batch_size: 2 },
    });
    await post(gw, '/v1/chat/completions', CHAT);
    await receiver.waitFor((s) => s.some((x) => x.name === 'POST /v1/chat/completions'));
    expect(receiver.spans().length).toBeGreaterThanOrEqual(4);
    for (const e of receiver.exports) expect(e.spans.length).toBeLessThanOrEqual(2);
  });

  it('tracing.export.interval_ms holds spans until the interval passes (or the gateway closes)', async () => {
    const { receiver, gw } = await setup({ enabled: true, export: { interval_ms: 60_000 } });
    await post(gw, '/v1/chat/completions', CHAT);
    await new Promise((r) => setTimeout(r, 300));
    expect(receiver.spans()).toEqual([]);
    await gw.close(); // shutdown flushes the queue
    expect(receiver.spans().map((s) => s.name)).toContain('POST /v1/chat/completions');
  });

  it('tracing.otlp.timeout_ms gives up on an endpoint that never answers', async () => {
    const { createServer } = await import('node:http');
    let closedAfter = -1;
    const t0 = Date.now();
    const stuck = createServer((req) => {
      req.on('close', () => {
        closedAfter = Date.now() - t0;
      });
    });
    await new Promise<void>((r) => stuck.listen(0, '127.0.0.1', () => r()));
    open.push({
      close: () =>
        new Promise<void>((r) => {
          stuck.closeAllConnections();
          stuck.close(() => r());
        }),
    });
    const port = (stuck.address() as { port: number }).port;
    const up = await startUpstream(json(200, chatCompletion()));
    open.push(up);
    const gw = await startTestGateway({
      config: {
        models: { 'chat-large': openaiModel(up.url) },
        tracing: {
          enabled: true,
          otlp: { endpoint: `http://127.0.0.1:${port}/v1/traces`, timeout_ms: 300 },
          export: { interval_ms: 20 },
        },
      },
    });
    open.push(gw);
    await post(gw, '/v1/chat/completions', CHAT);
    const until = Date.now() + 5_000;
    while (closedAfter < 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    expect(closedAfter).toBeGreaterThan(0);
    expect(closedAfter).toBeLessThan(3_000);
  });

  it('tracing.export.max_queue drops spans past the queue while they wait for export', async () => {
    const { receiver, gw } = await setup({
      enabled: true,
      export: { interval_ms: 60_000, batch_size: 2, max_queue: 2 },
    });
    // Stall the receiver's answers: with exports in flight the queue holds at most 2 spans.
    await post(gw, '/v1/chat/completions', CHAT);
    await post(gw, '/v1/chat/completions', CHAT);
    await gw.close();
    const bounded = receiver.spans().length;
    const wide = await setup({
      enabled: true,
      export: { interval_ms: 60_000, batch_size: 2, max_queue: 64 },
    });
    await post(wide.gw, '/v1/chat/completions', CHAT);
    await post(wide.gw, '/v1/chat/completions', CHAT);
    await wide.gw.close();
    expect(wide.receiver.spans().length).toBeGreaterThan(bounded);
  });
});
