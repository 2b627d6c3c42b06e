import type { Attributes, AttributeValue, HrTime } from '@opentelemetry/api';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base';

/**
 * An OTLP `ExportTraceServiceRequest` in protobuf, written straight from the SDK's spans: the
 * same bytes as OpenTelemetry's `ProtobufTraceSerializer` (otlp-protobuf.test.ts beside it holds
 * them equal), in one pass instead of a size-estimating pass and a writing pass, with trace and
 * span ids written from their hex without an array each, and attribute keys (a handful, the same
 * in every span) encoded once. It runs on the event loop once per export batch, so its cost is
 * part of every traced request's.
 *
 * Message and field numbers: opentelemetry-proto, trace/v1/trace.proto and common/v1/common.proto.
 */
export function encodeTraceExport(spans: readonly ReadableSpan[]): Uint8Array {
  const w = new Writer(sizeHint);
  for (const [resource, scopes] of groupSpans(spans)) {
    w.tag(1, LEN); // ExportTraceServiceRequest.resource_spans
    const rs = w.start();
    w.tag(1, LEN); // ResourceSpans.resource
    const r = w.start();
    if (resource.attributes) w.attributes(resource.attributes, 1);
    w.tag(2, VARINT); // Resource.dropped_attributes_count
    w.varint(0);
    w.finish(r);
    for (const group of scopes.values()) {
      w.tag(2, LEN); // ResourceSpans.scope_spans
      scopeSpans(w, group);
    }
    if (resource.schemaUrl) {
      w.tag(3, LEN);
      w.string(resource.schemaUrl);
    }
    w.finish(rs);
  }
  sizeHint = Math.min(MAX_SIZE_HINT, Math.max(sizeHint, w.pos + (w.pos >> 3)));
  return w.done();
}

/**
 * The buffer size to start with: the largest request so far, plus an eighth, up to 1 MB (one
 * outsized batch must not make every later export allocate its size; a larger one grows).
 */
let sizeHint = 16 * 1024;
const MAX_SIZE_HINT = 1 << 20;

const VARINT = 0;
const I64 = 1;
const LEN = 2;
const I32 = 5;

type SpanResource = ReadableSpan['resource'];
type Scope = ReadableSpan['instrumentationScope'] & {
  readonly attributes?: Attributes;
  readonly droppedAttributesCount?: number;
};

/** Spans by resource, then by instrumentation scope, each by identity, in first-seen order. */
function groupSpans(spans: readonly ReadableSpan[]): Map<SpanResource, Map<Scope, ReadableSpan[]>> {
  const out = new Map<SpanResource, Map<Scope, ReadableSpan[]>>();
  for (const span of spans) {
    let scopes = out.get(span.resource);
    if (scopes === undefined) out.set(span.resource, (scopes = new Map<Scope, ReadableSpan[]>()));
    const list = scopes.get(span.instrumentationScope);
    if (list === undefined) scopes.set(span.instrumentationScope, [span]);
    else list.push(span);
  }
  return out;
}

function scopeSpans(w: Writer, spans: readonly ReadableSpan[]): void {
  const ss = w.start();
  const scope = spans[0]!.instrumentationScope as Scope;
  w.tag(1, LEN); // ScopeSpans.scope
  const sc = w.start();
  w.tag(1, LEN);
  w.string(scope.name);
  if (scope.version) {
    w.tag(2, LEN);
    w.string(scope.version);
  }
  if (scope.attributes) w.attributes(scope.attributes, 3);
  if (scope.droppedAttributesCount) {
    w.tag(4, VARINT);
    w.varint(scope.droppedAttributesCount);
  }
  w.finish(sc);
  for (const span of spans) {
    w.tag(2, LEN); // ScopeSpans.spans
    writeSpan(w, span);
  }
  if (scope.schemaUrl) {
    w.tag(3, LEN);
    w.string(scope.schemaUrl);
  }
  w.finish(ss);
}

/** Span.flags: the W3C trace flags, and whether the parent was remote (known: always set). */
function spanFlags(traceFlags: number, isRemote: boolean | undefined): number {
  return (traceFlags & 0xff) | 0x100 | (isRemote === true ? 0x200 : 0);
}

function writeSpan(w: Writer, span: ReadableSpan): void {
  const s = w.start();
  const ctx = span.spanContext();
  w.tag(1, LEN);
  w.hex(ctx.traceId);
  w.tag(2, LEN);
  w.hex(ctx.spanId);
  const state = ctx.traceState?.serialize();
  if (state) {
    w.tag(3, LEN);
    w.string(state);
  }
  const parent = span.parentSpanContext;
  if (parent?.spanId) {
    w.tag(4, LEN);
    w.hex(parent.spanId);
  }
  w.tag(5, LEN);
  w.string(span.name);
  // The API's SpanKind starts at INTERNAL = 0; OTLP's at SPAN_KIND_UNSPECIFIED = 0.
  const kind = (span.kind as number | undefined) == null ? 0 : span.kind + 1;
  if (kind !== 0) {
    w.tag(6, VARINT);
    w.varint(kind);
  }
  w.tag(7, I64);
  w.hrTime(span.startTime);
  w.tag(8, I64);
  w.hrTime(span.endTime);
  if (span.attributes) w.attributes(span.attributes, 9);
  w.tag(10, VARINT);
  w.varint(span.droppedAttributesCount);
  for (const event of span.events) {
    w.tag(11, LEN);
    writeEvent(w, event);
  }
  w.tag(12, VARINT);
  w.varint(span.droppedEventsCount);
  for (const link of span.links) {
    w.tag(13, LEN);
    const l = w.start();
    w.tag(1, LEN);
    w.hex(link.context.traceId);
    w.tag(2, LEN);
    w.hex(link.context.spanId);
    const linkState = link.context.traceState?.serialize();
    if (linkState) {
      w.tag(3, LEN);
      w.string(linkState);
    }
    if (link.attributes) w.attributes(link.attributes, 4);
    w.tag(5, VARINT);
    w.varint(link.droppedAttributesCount ?? 0);
    w.tag(6, I32);
    w.fixed32(spanFlags(link.context.traceFlags, link.context.isRemote));
    w.finish(l);
  }
  w.tag(14, VARINT);
  w.varint(span.droppedLinksCount);
  w.tag(15, LEN); // Span.status
  const st = w.start();
  if (span.status.message) {
    w.tag(2, LEN);
    w.string(span.status.message);
  }
  w.tag(3, VARINT);
  w.varint(span.status.code);
  w.finish(st);
  w.tag(16, I32);
  w.fixed32(spanFlags(ctx.traceFlags, parent?.isRemote));
  w.finish(s);
}

function writeEvent(w: Writer, event: TimedEvent): void {
  const e = w.start();
  w.tag(1, I64);
  w.hrTime(event.time);
  w.tag(2, LEN);
  w.string(event.name);
  if (event.attributes) w.attributes(event.attributes, 3);
  w.tag(4, VARINT);
  w.varint(event.droppedAttributesCount ?? 0);
  w.finish(e);
}

/** KeyValue.key, tag and length included, by key: spans share a handful of attribute names. */
const keyBytes = new Map<string, Buffer>();
const KEY_CACHE_LIMIT = 4096;

function encodedKey(key: string): Buffer {
  let bytes = keyBytes.get(key);
  if (bytes !== undefined) return bytes;
  const w = new Writer(key.length * 3 + 8);
  w.tag(1, LEN);
  w.string(key);
  bytes = Buffer.from(w.done());
  if (keyBytes.size < KEY_CACHE_LIMIT) keyBytes.set(key, bytes);
  return bytes;
}

/** A hex digit's value (0-9, a-f, A-F), as OpenTelemetry's hexToBinary reads it. */
function nibble(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  return c - 55;
}

const TWO_32 = 0x1_0000_0000;
const MIN_INT64 = -(2 ** 63);
const MAX_INT64 = 2 ** 63;

/** A protobuf writer over one growing buffer; length-prefixed messages are back-patched. */
class Writer {
  pos = 0;
  private buf: Buffer;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  /** The bytes written, in a buffer of their own. */
  done(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  /** An unsigned varint; a negative or larger-than-32-bit integer as int64 (two's complement). */
  varint(value: number): void {
    this.ensure(10);
    const b = this.buf;
    if (value >= 0 && value < TWO_32) {
      let v = value >>> 0;
      while (v > 0x7f) {
        b[this.pos++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      b[this.pos++] = v;
      return;
    }
    const abs = Math.abs(value);
    let low = abs >>> 0;
    let high = Math.floor(abs / TWO_32) >>> 0;
    if (value < 0) {
      low = ~low >>> 0;
      high = ~high >>> 0;
      low = (low + 1) >>> 0;
      if (low === 0) high = (high + 1) >>> 0;
    }
    while (high > 0 || low > 0x7f) {
      b[this.pos++] = (low & 0x7f) | 0x80;
      low = ((low >>> 7) | (high << 25)) >>> 0;
      high >>>= 7;
    }
    b[this.pos++] = low;
  }

  fixed32(value: number): void {
    this.ensure(4);
    this.le32(value >>> 0);
  }

  /** Four bytes, little-endian; the caller ensured the room. */
  private le32(v: number): void {
    const b = this.buf;
    b[this.pos++] = v & 0xff;
    b[this.pos++] = (v >>> 8) & 0xff;
    b[this.pos++] = (v >>> 16) & 0xff;
    b[this.pos++] = v >>> 24;
  }

  /** HrTime [seconds, nanoseconds] as fixed64 nanoseconds, exact beyond 2^53. */
  hrTime(t: HrTime): void {
    this.ensure(8);
    const [seconds, nanos] = t;
    // seconds × 1e9 split so each product stays below 2^53: low 16 bits of seconds, then the rest.
    const fromLow = (seconds & 0xffff) * 1e9;
    const fromHigh = Math.floor(seconds / 0x10000) * 1e9; // × 2^16 below
    const low = (fromLow % TWO_32) + (fromHigh % 0x10000) * 0x10000 + nanos;
    const high =
      Math.floor(fromLow / TWO_32) + Math.floor(fromHigh / 0x10000) + Math.floor(low / TWO_32);
    this.le32(low >>> 0);
    this.le32(high >>> 0);
  }

  double(value: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(value, this.pos);
    this.pos += 8;
  }

  /** A UTF-8 string with its length: ASCII copied byte by byte, anything else encoded natively. */
  string(s: string): void {
    const n = s.length;
    this.ensure(n * 3 + 10);
    const b = this.buf;
    if (n < 128) {
      const at = this.pos;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) break;
        b[at + 1 + i] = c;
      }
      if (i === n) {
        b[at] = n;
        this.pos = at + 1 + n;
        return;
      }
    }
    const len = Buffer.byteLength(s, 'utf8');
    this.varint(len);
    this.pos += b.write(s, this.pos, 'utf8');
  }

  /** Bytes given as hex (trace and span ids), decoded straight into the buffer. */
  hex(h: string): void {
    const n = h.length >>> 1;
    this.varint(n);
    this.ensure(n);
    const b = this.buf;
    let at = this.pos;
    for (let i = 0; i < 2 * n; i += 2)
      b[at++] = (nibble(h.charCodeAt(i)) << 4) | nibble(h.charCodeAt(i + 1));
    this.pos = at;
  }

  bytes(v: Uint8Array): void {
    this.varint(v.length);
    this.ensure(v.length);
    this.buf.set(v, this.pos);
    this.pos += v.length;
  }

  /** Reserves one byte for a message's length; `finish` writes it (moving the body if longer). */
  start(): number {
    this.ensure(1);
    return this.pos++;
  }

  finish(at: number): void {
    const len = this.pos - at - 1;
    if (len < 0x80) {
      this.buf[at] = len;
      return;
    }
    let extra = 1;
    for (let v = len >>> 14; v > 0; v >>>= 7) extra++;
    this.ensure(extra);
    this.buf.copyWithin(at + 1 + extra, at + 1, this.pos);
    const end = this.pos + extra;
    this.pos = at;
    this.varint(len);
    this.pos = end;
  }

  attributes(attrs: Attributes, field: number): void {
    for (const key in attrs) {
      if (!Object.prototype.hasOwnProperty.call(attrs, key)) continue;
      this.tag(field, LEN);
      const kv = this.start();
      const k = encodedKey(key);
      this.ensure(k.length);
      const b = this.buf;
      let at = this.pos;
      for (let i = 0; i < k.length; i++) b[at++] = k[i]!; // short: a loop beats a native copy
      this.pos = at;
      this.tag(2, LEN); // KeyValue.value
      const v = this.start();
      this.anyValue(attrs[key]);
      this.finish(v);
      this.finish(kv);
    }
  }

  /** AnyValue, as OpenTelemetry's serializer writes it (undefined and null: an empty message). */
  anyValue(value: AttributeValue | Attributes | null | undefined): void {
    if (typeof value === 'string') {
      this.tag(1, LEN);
      this.string(value);
    } else if (typeof value === 'boolean') {
      this.tag(2, VARINT);
      this.varint(value ? 1 : 0);
    } else if (typeof value === 'number') {
      if (Number.isInteger(value) && value >= MIN_INT64 && value < MAX_INT64) {
        this.tag(3, VARINT);
        this.varint(value);
      } else {
        this.tag(4, I64);
        this.double(value);
      }
    } else if (value instanceof Uint8Array) {
      this.tag(7, LEN);
      this.bytes(value);
    } else if (Array.isArray(value)) {
      this.tag(5, LEN);
      const arr = this.start();
      for (const item of value as readonly unknown[]) {
        this.tag(1, LEN);
        const it = this.start();
        this.anyValue(item as AttributeValue);
        this.finish(it);
      }
      this.finish(arr);
    } else if (typeof value === 'object' && value !== null) {
      this.tag(6, LEN);
      const list = this.start();
      for (const k in value) {
        if (!Object.prototype.hasOwnProperty.call(value, k)) continue;
        this.tag(1, LEN);
        const kv = this.start();
        this.tag(1, LEN);
        this.string(k);
        this.tag(2, LEN);
        const v = this.start();
        this.anyValue(value[k]);
        this.finish(v);
        this.finish(kv);
      }
      this.finish(list);
    }
  }
}
