import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  defaultTextMapGetter,
  trace,
} from '@opentelemetry/api';
import type { Attributes } from '@opentelemetry/api';
import { ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  BasicTracerProvider,
  SimpleSpanProcessor,
  type ReadableSpan,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeTraceExport } from './otlp-protobuf.js';

/** A provider whose ended spans land in `spans`, as the batch processor would hand them over. */
function capture(attributes: Attributes = { 'service.name': 'test' }) {
  const spans: ReadableSpan[] = [];
  const exporter: SpanExporter = {
    export(batch, done) {
      spans.push(...batch);
      done({ code: ExportResultCode.SUCCESS });
    },
    shutdown: () => Promise.resolve(),
  };
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes(attributes),
    spanProcessors: [new SimpleSpanProcessor(exporter)],
  });
  return { spans, provider };
}

const reference = (spans: ReadableSpan[]): Buffer =>
  Buffer.from(ProtobufTraceSerializer.serializeRequest(spans)!);

describe('encodeTraceExport', () => {
  it("writes the same bytes as OpenTelemetry's protobuf serializer, every field exercised", () => {
    const a = capture({ 'service.name': 'gateway', 'service.version': '1.2.3', 'host.cores': 2 });
    const b = capture({ 'service.name': 'other' });
    const tracer = a.provider.getTracer('switchyard', '0.1.0');
    const another = a.provider.getTracer('second-scope');
    const remote = new W3CTraceContextPropagator().extract(
      ROOT_CONTEXT,
      {
        traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
        tracestate: 'vendor=a1,other=b2',
      },
      defaultTextMapGetter,
    );
    const root = tracer.startSpan(
      'POST /v1/chat/completions',
      {
        kind: SpanKind.SERVER,
        attributes: {
          'http.request.method': 'POST',
          'switchyard.retry': false,
          'gen_ai.usage.input_tokens': 14,
          'negative.int': -42,
          'big.int': 2 ** 40 + 7,
          'min.int': -(2 ** 62),
          'a.double': 0.125,
          'not.finite': Number.NaN,
          'gen_ai.response.finish_reasons': ['stop', 'length'],
          numbers: [1, 2.5, -3],
          flags: [true, false],
          unicode: 'naïve — 日本語 ✓',
          empty: '',
          'long.value': 'x'.repeat(300),
          'very.long.value': 'y'.repeat(20_000),
        },
        links: [
          {
            context: trace.getSpanContext(remote)!,
            attributes: { 'link.reason': 'retry of' },
          },
          { context: trace.getSpanContext(remote)! },
        ],
      },
      remote,
    );
    root.addEvent('first chunk', { 'chunk.index': 0 });
    root.addEvent('no attributes');
    const child = tracer.startSpan('admission', {}, trace.setSpan(ROOT_CONTEXT, root));
    child.setStatus({ code: SpanStatusCode.ERROR, message: 'SY_ERR_SHED: über quota' });
    child.end();
    const client = another.startSpan(
      'chat m',
      { kind: SpanKind.CLIENT },
      trace.setSpan(ROOT_CONTEXT, root),
    );
    client.setStatus({ code: SpanStatusCode.OK });
    client.end();
    for (const kind of [SpanKind.INTERNAL, SpanKind.PRODUCER, SpanKind.CONSUMER])
      tracer.startSpan(`kind ${kind}`, { kind }).end();
    tracer.startSpan('n'.repeat(200)).end();
    root.end();
    b.provider.getTracer('b').startSpan('elsewhere').end();
    // Two resources, three scopes, spans of each interleaved.
    const spans = [...a.spans, ...b.spans, a.spans[0]!];
    const ours = Buffer.from(encodeTraceExport(spans));
    expect(ours.length).toBeGreaterThan(20_000);
    expect(ours.equals(reference(spans))).toBe(true);
  });

  it('writes what the SDK would for an empty batch (nothing)', () => {
    expect(Buffer.from(encodeTraceExport([])).equals(reference([]))).toBe(true);
  });

  it('writes the same bytes for arbitrary names, attributes, events and statuses', () => {
    const { spans, provider } = capture();
    const tracer = provider.getTracer('prop');
    const value = fc.oneof(
      fc.string({ unit: 'grapheme', maxLength: 200 }),
      fc.boolean(),
      fc.integer(),
      fc.double({ noNaN: false }),
      fc.maxSafeInteger(),
      fc.array(fc.string(), { maxLength: 4 }),
      fc.array(fc.integer(), { maxLength: 4 }),
    );
    fc.assert(
      fc.property(
        fc.string({ maxLength: 300 }),
        fc.dictionary(fc.string({ minLength: 1, maxLength: 40 }), value, { maxKeys: 12 }),
        fc.array(fc.tuple(fc.string(), fc.dictionary(fc.string({ minLength: 1 }), value)), {
          maxLength: 3,
        }),
        fc.option(fc.string({ maxLength: 50 }), { nil: undefined }),
        (name, attributes, events, error) => {
          spans.length = 0;
          const span = tracer.startSpan(name, { attributes });
          for (const [eventName, eventAttributes] of events)
            span.addEvent(eventName, eventAttributes);
          if (error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: error });
          span.end();
          return Buffer.from(encodeTraceExport(spans)).equals(reference(spans));
        },
      ),
      { numRuns: 300 },
    );
  });
});
