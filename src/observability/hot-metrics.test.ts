import {
  AggregatorRegistry,
  Counter,
  Histogram,
  openMetricsContentType,
  Registry,
  type OpenMetricsContentType,
} from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { events, type ModelCallEvent, type RequestDoneEvent } from '../core/events.js';
import { HotCounter, HotHistogram } from './hot-metrics.js';
import { Metrics } from './metrics.js';

/**
 * The hot-path metrics must render exactly what prom-client's own Counter and Histogram render
 * for the same records: prom-client is the reference.
 */

const BUCKETS = [0.001, 0.005, 0.01, 0.5, 1, 2.5];
const LABELS = ['route', 'model', 'status'] as const;
type Row = readonly [route: string, model: string, status: string];
// Bounds exactly, between them, zero, past the top bucket; label values prom-client escapes.
const OBSERVED: readonly (readonly [Row, number])[] = [
  [['/v1/chat', 'small', '200'], 0.005],
  [['/v1/chat', 'small', '200'], 0.0049],
  [['/v1/chat', 'large', '200'], 0],
  [['/v1/chat', 'small', '502'], 2.5],
  [['/v1/chat', 'small', '200'], 7],
  [['/v1/embeddings', '', '200'], 0.2],
  [['a,b', 'q"uote\\back\nline', '200'], 1],
  [['/v1/chat', 'large', '200'], 0.75],
];

function pair() {
  const registry = new Registry();
  const ref = new Registry();
  const config = { name: 'x_seconds', help: 'Some "help" \\ here.', labelNames: LABELS };
  return {
    hot: new HotHistogram({ ...config, buckets: BUCKETS, registers: [registry] }),
    hotCount: new HotCounter({ ...config, name: 'x_total', registers: [registry] }),
    ref: new Histogram({ ...config, buckets: BUCKETS, registers: [ref] }),
    refCount: new Counter({ ...config, name: 'x_total', registers: [ref] }),
    registry,
    refRegistry: ref,
  };
}

function record(p: ReturnType<typeof pair>, rows = OBSERVED): void {
  for (const [row, v] of rows) {
    p.hot.observe(row, v);
    p.ref.labels(...row).observe(v);
    p.hotCount.inc(row, v * 3);
    p.refCount.labels(...row).inc(v * 3);
  }
}

function openMetricsRegistry(): Registry<OpenMetricsContentType> {
  const r = new Registry<OpenMetricsContentType>();
  r.setContentType(openMetricsContentType);
  return r;
}

describe('HotHistogram and HotCounter', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('render the same Prometheus text and JSON as prom-client for the same records', async () => {
    const p = pair();
    record(p);
    const text = await p.registry.metrics();
    expect(text).toBe(await p.refRegistry.metrics());
    expect(text).toContain(
      'x_seconds_bucket{le="+Inf",route="/v1/chat",model="small",status="200"} 3',
    );
    expect(await p.registry.getMetricsAsJSON()).toEqual(await p.refRegistry.getMetricsAsJSON());
  });

  it('sum across workers as prom-client does (serve --workers N)', async () => {
    const [a, b] = [pair(), pair()];
    record(a);
    record(b, OBSERVED.slice(2));
    const refs = [a, b].map((p) => p.refRegistry.getMetricsAsJSON());
    const hots = [a, b].map((p) => p.registry.getMetricsAsJSON());
    // As src/cluster/primary.ts gets them: JSON through the worker IPC channel.
    const ipc = async (x: Promise<unknown>[]) =>
      (await Promise.all(x)).map((m) => JSON.parse(JSON.stringify(m)) as object);
    // What src/cluster/metrics-aggregate.ts does with them.
    const aggregate = async (x: Promise<unknown>[]) =>
      AggregatorRegistry.aggregate(await ipc(x)).metrics();
    const summed = await aggregate(hots);
    expect(summed).toBe(await aggregate(refs));
    expect(summed).toContain('x_seconds_count{route="/v1/chat",model="small",status="200"} 4');
  });

  it('put the latest exemplar on its bucket in OpenMetrics text as prom-client does', async () => {
    vi.useFakeTimers({ now: new Date('2026-12-07T05:00:00.123Z'), toFake: ['Date'] });
    const om = openMetricsRegistry();
    const hot = new HotHistogram({
      name: 'y',
      help: 'h',
      labelNames: ['r'],
      buckets: BUCKETS,
      registers: [om],
    });
    const refOm = openMetricsRegistry();
    const ref = new Histogram({
      name: 'y',
      help: 'h',
      labelNames: ['r'],
      buckets: BUCKETS,
      enableExemplars: true,
      registers: [refOm],
    });
    const observe = (r: string, value: number, trace?: string) => {
      const ex = trace === undefined ? undefined : { trace_id: trace };
      hot.observe([r], value, ex);
      if (ex === undefined) ref.observe({ labels: { r }, value });
      else (ref as Histogram<string>).observe({ labels: { r }, value, exemplarLabels: ex });
    };
    observe('a', 0.003, 'aaaa');
    observe('a', 0.004, 'bbbb');
    observe('a', 0.3);
    observe('a', 9, 'cccc');
    observe('b', 0.0001, 'dddd');
    const text = await om.metrics();
    expect(text).toBe(await refOm.metrics());
    expect(text).toContain('y_bucket{le="0.005",r="a"} 2 # {trace_id="bbbb"} 0.004 1796619600.123');
    expect(text).toContain('y_bucket{le="+Inf",r="a"} 4 # {trace_id="cccc"} 9');
  });

  it('forget every series on reset, as the registry’s resetMetrics asks', async () => {
    const p = pair();
    record(p);
    p.registry.resetMetrics();
    p.refRegistry.resetMetrics();
    expect(await p.registry.metrics()).toBe(await p.refRegistry.metrics());
    expect(await p.registry.metrics()).not.toContain('x_seconds_bucket');
  });

  it('ignore a value that is not a number or a counter decrease, where prom-client would throw', async () => {
    const p = pair();
    p.hot.observe(['r', 'm', '200'], Number.NaN);
    p.hot.observe(['r', 'm', '200'], Infinity);
    p.hotCount.inc(['r', 'm', '200'], -1);
    p.hotCount.inc(['r', 'm', '200'], Number.NaN);
    expect(await p.registry.metrics()).not.toContain('route="r"');
  });
});

describe('the request metrics of Metrics', () => {
  const done: RequestDoneEvent = {
    requestId: 'r1',
    method: 'POST',
    route: '/v1/chat/completions',
    model: 'chat',
    tenant: 't',
    keyFingerprint: 'k',
    trafficClass: 'interactive',
    status: 200,
    code: undefined,
    durationMs: 42,
    stream: false,
    path: 'chat#1:ok',
    traceId: '0af7651916cd43dd8448eb211c80319c',
  };
  const call: ModelCallEvent = {
    requestId: 'r1',
    origin: 'direct',
    tenant: 't',
    trafficClass: 'interactive',
    op: 'chat',
    requested: 'chat',
    model: 'chat',
    servedBy: 'chat-backup',
    version: 'gpt-x',
    tier: 'standard',
    system: 'openai',
    reason: 'default',
    stream: false,
    ms: 38,
    inputTokens: 70,
    outputTokens: 0,
    estimated: false,
    cost: 0.25,
    outcome: 'ok',
    attempts: 'chat#1:UPSTREAM_ERROR>chat-backup#1:ok',
    withheld: 0,
  };

  it('render what prom-client renders for the same published requests', async () => {
    const m = new Metrics({ defaultMetrics: false });
    try {
      events.requestDone.publish(done);
      events.requestDone.publish({ ...done, status: 502, durationMs: 1_300 });
      events.upstreamAttempt.publish({
        backend: 'chat',
        outcome: 'error',
        durationMs: 20,
        attempt: 1,
      });
      events.upstreamAttempt.publish({
        backend: 'chat-backup',
        outcome: 'ok',
        durationMs: 15,
        attempt: 2,
      });
      events.modelCall.publish(call);
      events.modelCall.publish({
        ...call,
        outcome: 'SY_ERR_UPSTREAM',
        version: '',
        inputTokens: 0,
        cost: 0,
      });
      events.modelCall.publish({ ...call, origin: 'replay' });
      events.firstToken.publish({ model: 'chat', ms: 12 });

      // The reference: prom-client's own metrics, recorded as the listeners did before.
      const ref = new Registry();
      const like = <M extends { name: string; help: string; labelNames: readonly string[] }>(
        hot: M,
        more: object = {},
      ) => ({
        name: hot.name,
        help: hot.help,
        labelNames: hot.labelNames,
        registers: [ref],
        ...more,
      });
      const h = (hot: HotHistogram<readonly string[]>) =>
        new Histogram(like(hot, { buckets: hot.buckets }));
      const c = (hot: HotCounter<readonly string[]>) => new Counter(like(hot));
      const requests = c(m.requests);
      const requestDuration = h(m.requestDuration);
      const upstream = h(m.upstreamDuration);
      const tokenUsage = h(m.tokenUsage);
      const operation = h(m.operationDuration);
      const tokens = c(m.tokensTotal);
      const calls = c(m.modelCalls);
      const cost = c(m.modelCost);
      const ttft = h(m.timeToFirstToken);
      requests.labels('/v1/chat/completions', 'chat', '200', 'interactive').inc();
      requestDuration.labels('/v1/chat/completions', 'chat', '200', 'interactive').observe(0.042);
      requests.labels('/v1/chat/completions', 'chat', '502', 'interactive').inc();
      requestDuration.labels('/v1/chat/completions', 'chat', '502', 'interactive').observe(1.3);
      upstream.labels('chat', 'error').observe(0.02);
      upstream.labels('chat-backup', 'ok').observe(0.015);
      calls.labels('chat', 'direct', 'ok').inc();
      cost.labels('chat-backup', 't').inc(0.25);
      operation.labels('chat', 'openai', 'chat', 'gpt-x', '').observe(0.038);
      tokenUsage.labels('chat', 'openai', 'chat', 'gpt-x', 'input').observe(70);
      tokens.labels('chat', 'input').inc(70);
      tokenUsage.labels('chat', 'openai', 'chat', 'gpt-x', 'output').observe(0);
      tokens.labels('chat', 'output').inc(0);
      calls.labels('chat', 'direct', 'SY_ERR_UPSTREAM').inc();
      operation.labels('chat', 'openai', 'chat', 'chat-backup', 'SY_ERR_UPSTREAM').observe(0.038);
      calls.labels('chat', 'replay', 'ok').inc();
      ttft.labels('chat').observe(0.012);

      for (const metric of ref.getMetricsAsArray()) {
        const name = (metric as unknown as { name: string }).name;
        expect(await m.registry.getSingleMetricAsString(name), name).toBe(
          await ref.getSingleMetricAsString(name),
        );
      }
      expect(await m.render()).toContain(
        'gen_ai_client_token_usage_bucket{le="64",gen_ai_operation_name="chat",gen_ai_system="openai",gen_ai_request_model="chat",gen_ai_response_model="gpt-x",gen_ai_token_type="input"} 0',
      );
    } finally {
      m.close();
    }
  });

  it('carry the trace id as an exemplar only while exemplars are on', async () => {
    const m = new Metrics({ defaultMetrics: false });
    try {
      events.requestDone.publish(done);
      m.useExemplars(true);
      events.requestDone.publish({ ...done, traceId: 'ffff', durationMs: 7_000 });
      const om = (await m.openMetrics()) ?? '';
      const exemplars = om.split('\n').filter((l) => l.includes('# {trace_id='));
      expect(exemplars).toEqual([
        expect.stringMatching(
          /^switchyard_request_duration_seconds_bucket\{le="10",route="\/v1\/chat\/completions",model="chat",status="200",class="interactive"\} 2 # \{trace_id="ffff"\} 7 \d+(\.\d+)?$/,
        ),
      ]);
      expect(await m.render()).not.toContain('trace_id');
    } finally {
      m.close();
    }
  });
});
