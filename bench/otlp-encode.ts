import { ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-base';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { encodeTraceExport } from '../src/observability/otlp-protobuf.js';
import { writeLatest } from './lib/results.js';

/**
 * `npm run bench:otlp-encode`: the gateway's OTLP protobuf encoder (src/observability/otlp-protobuf.ts)
 * against OpenTelemetry's `ProtobufTraceSerializer`, which writes the same bytes, on batches of 128
 * spans shaped as a proxied chat request's four (request, admission, model call, upstream attempt,
 * with the attributes the gateway sets). The two take turns, round by round, in one process; the
 * result is µs per span each and their ratio. Both run once per export batch on the event loop,
 * so this is part of every traced request's CPU (#15).
 * `--quick`: fewer rounds; prints, writes nothing.
 */
const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
const quick = values.quick;
const ROUNDS = quick ? 6 : 30;
const BATCHES_PER_ROUND = 50;
const BATCH = 128;

const spans: ReadableSpan[] = [];
const provider = new BasicTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'switchyard', 'service.version': '0.1.0' }),
  spanProcessors: [
    new SimpleSpanProcessor({
      export(batch, done) {
        spans.push(...batch);
        done({ code: ExportResultCode.SUCCESS });
      },
      shutdown: () => Promise.resolve(),
    }),
  ],
});
const tracer = provider.getTracer('switchyard', '0.1.0');

/**
 * The four spans of one proxied chat completion, named and attributed as the gateway makes them
 * (docs/observability.md lists them).
 */
function request(i: number): void {
  const root = tracer.startSpan('POST /v1/chat/completions', {
    kind: SpanKind.SERVER,
    attributes: {
      'http.request.method': 'POST',
      'http.route': '/v1/chat/completions',
      'switchyard.request_id': `req-${i.toString(36).padStart(12, '0')}`,
      'switchyard.tenant': 'bench',
      'switchyard.class': 'interactive',
      'switchyard.model': 'bench-model',
    },
  });
  const parent = trace.setSpan(ROOT_CONTEXT, root);
  tracer
    .startSpan(
      'admission',
      { attributes: { 'switchyard.class': 'interactive', 'switchyard.tenant': 'bench' } },
      parent,
    )
    .end();
  const call = tracer.startSpan(
    'chat bench-model',
    {
      kind: SpanKind.CLIENT,
      attributes: {
        'gen_ai.system': 'openai',
        'gen_ai.operation.name': 'chat',
        'gen_ai.request.model': 'bench-model',
        'switchyard.tier': 'central',
        'switchyard.version': '1',
      },
    },
    parent,
  );
  tracer
    .startSpan(
      'attempt bench-model',
      {
        kind: SpanKind.CLIENT,
        attributes: {
          'switchyard.backend': 'openai',
          'switchyard.attempt': 1,
          'server.address': 'http://127.0.0.1:4000/v1',
        },
      },
      trace.setSpan(ROOT_CONTEXT, call),
    )
    .end();
  call.setAttributes({
    'gen_ai.response.model': 'bench-upstream',
    'gen_ai.usage.input_tokens': 14,
    'gen_ai.usage.output_tokens': 9,
    'gen_ai.response.finish_reasons': ['stop'],
    'switchyard.route_code': 'M1',
    'switchyard.served_by': 'bench-model',
    'switchyard.cost': 0.000123,
  });
  call.end();
  root.setAttributes({ 'http.response.status_code': 200, 'switchyard.route_code': 'M1' });
  root.end();
}

for (let i = 0; spans.length < BATCH * BATCHES_PER_ROUND; i++) request(i);
const batches: ReadableSpan[][] = [];
for (let b = 0; b < BATCHES_PER_ROUND; b++) batches.push(spans.slice(b * BATCH, (b + 1) * BATCH));

const encoders = {
  opentelemetry: (batch: ReadableSpan[]) => ProtobufTraceSerializer.serializeRequest(batch)!,
  switchyard: (batch: ReadableSpan[]) => encodeTraceExport(batch),
};
// The same bytes, or the comparison means nothing.
for (const batch of batches)
  if (!Buffer.from(encoders.switchyard(batch)).equals(Buffer.from(encoders.opentelemetry(batch))))
    throw new Error('the two encoders disagree');

const totals = { opentelemetry: 0, switchyard: 0 };
let bytes = 0;
for (let round = 0; round < ROUNDS; round++) {
  const order =
    round % 2 === 0
      ? (['opentelemetry', 'switchyard'] as const)
      : (['switchyard', 'opentelemetry'] as const);
  for (const name of order) {
    const t0 = performance.now();
    for (const batch of batches) bytes += encoders[name](batch).length;
    if (round > 1) totals[name] += performance.now() - t0; // two rounds of warm-up
  }
}
const measuredSpans = (ROUNDS - 2) * BATCHES_PER_ROUND * BATCH;
const perSpan = (ms: number): number => Math.round((ms * 1e4) / measuredSpans) / 10;
const result = {
  at: new Date().toISOString(),
  loadavg: loadavg().map((v) => Math.round(v * 100) / 100),
  batch_spans: BATCH,
  spans_encoded_each: measuredSpans,
  bytes_per_span: Math.round(bytes / (2 * ROUNDS * BATCHES_PER_ROUND * BATCH)),
  us_per_span: {
    opentelemetry: perSpan(totals.opentelemetry),
    switchyard: perSpan(totals.switchyard),
  },
  opentelemetry_over_switchyard: Math.round((100 * totals.opentelemetry) / totals.switchyard) / 100,
};
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
writeLatest('otlp-encode', result, quick);
