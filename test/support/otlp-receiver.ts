import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import protobuf from 'protobufjs';

/**
 * A local OTLP/HTTP trace receiver (#15): a real HTTP server at `/v1/traces` that decodes each
 * export with the OpenTelemetry protobuf definitions (`opentelemetry-proto`, v1: common,
 * resource, trace and the trace collector service, transcribed below with their field numbers),
 * or reads OTLP/JSON, and keeps every span it was sent.
 */
const PROTOS = [
  `syntax = "proto3";
  package opentelemetry.proto.common.v1;
  message AnyValue {
    oneof value {
      string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4;
      ArrayValue array_value = 5; KeyValueList kvlist_value = 6; bytes bytes_value = 7;
    }
  }
  message ArrayValue { repeated AnyValue values = 1; }
  message KeyValueList { repeated KeyValue values = 1; }
  message KeyValue { string key = 1; AnyValue value = 2; }
  message InstrumentationScope {
    string name = 1; string version = 2; repeated KeyValue attributes = 3;
    uint32 dropped_attributes_count = 4;
  }`,
  `syntax = "proto3";
  package opentelemetry.proto.resource.v1;
  message Resource {
    repeated opentelemetry.proto.common.v1.KeyValue attributes = 1;
    uint32 dropped_attributes_count = 2;
  }`,
  `syntax = "proto3";
  package opentelemetry.proto.trace.v1;
  message ResourceSpans {
    opentelemetry.proto.resource.v1.Resource resource = 1;
    repeated ScopeSpans scope_spans = 2; string schema_url = 3;
  }
  message ScopeSpans {
    opentelemetry.proto.common.v1.InstrumentationScope scope = 1;
    repeated Span spans = 2; string schema_url = 3;
  }
  message Span {
    bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; bytes parent_span_id = 4;
    fixed32 flags = 16; string name = 5;
    enum SpanKind {
      SPAN_KIND_UNSPECIFIED = 0; SPAN_KIND_INTERNAL = 1; SPAN_KIND_SERVER = 2;
      SPAN_KIND_CLIENT = 3; SPAN_KIND_PRODUCER = 4; SPAN_KIND_CONSUMER = 5;
    }
    SpanKind kind = 6;
    fixed64 start_time_unix_nano = 7; fixed64 end_time_unix_nano = 8;
    repeated opentelemetry.proto.common.v1.KeyValue attributes = 9;
    uint32 dropped_attributes_count = 10;
    message Event {
      fixed64 time_unix_nano = 1; string name = 2;
      repeated opentelemetry.proto.common.v1.KeyValue attributes = 3;
      uint32 dropped_attributes_count = 4;
    }
    repeated Event events = 11; uint32 dropped_events_count = 12;
    message Link {
      bytes trace_id = 1; bytes span_id = 2; string trace_state = 3;
      repeated opentelemetry.proto.common.v1.KeyValue attributes = 4;
      uint32 dropped_attributes_count = 5; fixed32 flags = 6;
    }
    repeated Link links = 13; uint32 dropped_links_count = 14;
    Status status = 15;
  }
  message Status {
    reserved 1;
    string message = 2;
    enum StatusCode { STATUS_CODE_UNSET = 0; STATUS_CODE_OK = 1; STATUS_CODE_ERROR = 2; }
    StatusCode code = 3;
  }`,
  `syntax = "proto3";
  package opentelemetry.proto.collector.trace.v1;
  message ExportTraceServiceRequest {
    repeated opentelemetry.proto.trace.v1.ResourceSpans resource_spans = 1;
  }`,
];

const root = new protobuf.Root();
for (const text of PROTOS) protobuf.parse(text, root, { keepCase: false });
root.resolveAll();
const ExportTraceServiceRequest = root.lookupType(
  'opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest',
);

export type AttrValue = string | number | boolean | readonly AttrValue[];

export interface ReceivedSpan {
  readonly traceId: string;
  readonly spanId: string;
  /** '' for a root span. */
  readonly parentSpanId: string;
  readonly name: string;
  /** 1 internal, 2 server, 3 client. */
  readonly kind: number;
  readonly attributes: Readonly<Record<string, AttrValue>>;
  /** 0 unset, 1 ok, 2 error. */
  readonly status: { readonly code: number; readonly message: string };
  readonly resource: Readonly<Record<string, AttrValue>>;
}

export interface OtlpExport {
  readonly contentType: string;
  readonly headers: IncomingHttpHeaders;
  readonly spans: readonly ReceivedSpan[];
}

export interface OtlpReceiver {
  /** The traces endpoint: `http://127.0.0.1:<port>/v1/traces`. */
  readonly endpoint: string;
  readonly exports: OtlpExport[];
  spans(): ReceivedSpan[];
  /** Waits until `test(spans)` holds, or fails after `ms`. */
  waitFor(test: (spans: ReceivedSpan[]) => boolean, ms?: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const exports: OtlpExport[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const contentType = String(req.headers['content-type'] ?? '');
      try {
        if (req.url !== '/v1/traces') throw new Error(`unexpected path ${req.url}`);
        const spans = contentType.includes('json') ? fromJson(body) : fromProtobuf(body);
        exports.push({ contentType, headers: req.headers, spans });
        if (contentType.includes('json')) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end('{}');
        } else {
          res.writeHead(200, { 'content-type': 'application/x-protobuf' });
          res.end();
        }
      } catch (err) {
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end(String(err));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  const all = (): ReceivedSpan[] => exports.flatMap((e) => e.spans);
  return {
    endpoint: `http://127.0.0.1:${port}/v1/traces`,
    exports,
    spans: all,
    async waitFor(test, ms = 5_000) {
      const until = Date.now() + ms;
      for (;;) {
        const spans = all();
        if (test(spans)) return spans;
        if (Date.now() > until)
          throw new Error(
            `spans never matched; got ${spans.length}: ${spans.map((s) => s.name).join(', ')}`,
          );
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

type Obj = Record<string, unknown>;

function fromProtobuf(body: Buffer): ReceivedSpan[] {
  const msg = ExportTraceServiceRequest.decode(body);
  const obj = ExportTraceServiceRequest.toObject(msg, {
    longs: Number,
    enums: Number,
    bytes: String,
    arrays: true,
  });
  return collect(obj, (b64) => Buffer.from(b64, 'base64').toString('hex'));
}

/** OTLP/JSON: the same shape, ids in hex already (protobuf JSON mapping with hex ids). */
function fromJson(body: Buffer): ReceivedSpan[] {
  return collect(JSON.parse(body.toString('utf8')) as Obj, (hex) => hex);
}

function collect(req: Obj, id: (raw: string) => string): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of (req['resourceSpans'] as Obj[] | undefined) ?? []) {
    const resource = attrs((rs['resource'] as Obj | undefined)?.['attributes']);
    for (const ss of (rs['scopeSpans'] as Obj[] | undefined) ?? [])
      for (const s of (ss['spans'] as Obj[] | undefined) ?? []) {
        const status = (s['status'] as Obj | undefined) ?? {};
        const parent = (s['parentSpanId'] as string | undefined) ?? '';
        out.push({
          traceId: id(s['traceId'] as string),
          spanId: id(s['spanId'] as string),
          parentSpanId: parent === '' ? '' : id(parent),
          name: s['name'] as string,
          kind: Number(s['kind'] ?? 0),
          attributes: attrs(s['attributes']),
          status: {
            code: Number(status['code'] ?? 0),
            message: typeof status['message'] === 'string' ? status['message'] : '',
          },
          resource,
        });
      }
  }
  return out;
}

function attrs(list: unknown): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  for (const kv of (list as Obj[] | undefined) ?? [])
    out[kv['key'] as string] = anyValue(kv['value'] as Obj);
  return out;
}

function anyValue(v: Obj | undefined): AttrValue {
  if (v === undefined || v === null) return '';
  if (v['stringValue'] !== undefined && v['stringValue'] !== null)
    return v['stringValue'] as string;
  if (v['boolValue'] !== undefined && v['boolValue'] !== null) return v['boolValue'] as boolean;
  if (v['intValue'] !== undefined && v['intValue'] !== null) return Number(v['intValue']);
  if (v['doubleValue'] !== undefined && v['doubleValue'] !== null) return Number(v['doubleValue']);
  const arr = v['arrayValue'] as Obj | undefined;
  if (arr !== undefined && arr !== null)
    return ((arr['values'] as Obj[] | undefined) ?? []).map(anyValue);
  return '';
}

/** The spans of one trace, and helpers to walk its tree. */
export function treeOf(spans: readonly ReceivedSpan[], traceId: string) {
  const mine = spans.filter((s) => s.traceId === traceId);
  const byId = new Map(mine.map((s) => [s.spanId, s]));
  return {
    spans: mine,
    named: (name: string | RegExp) =>
      mine.filter((s) => (typeof name === 'string' ? s.name === name : name.test(s.name))),
    one(name: string | RegExp): ReceivedSpan {
      const found = mine.filter((s) =>
        typeof name === 'string' ? s.name === name : name.test(s.name),
      );
      if (found.length !== 1)
        throw new Error(
          `expected one span ${String(name)}, got ${found.length} of ${mine.map((s) => s.name).join(', ')}`,
        );
      return found[0]!;
    },
    parentOf: (s: ReceivedSpan) => byId.get(s.parentSpanId),
    childrenOf: (s: ReceivedSpan) => mine.filter((c) => c.parentSpanId === s.spanId),
  };
}
