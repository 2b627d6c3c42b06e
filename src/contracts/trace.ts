/**
 * The tracing port (#15). Hot code holds a `TraceSpan` only when the request is traced: with
 * tracing off every `span` field is `undefined`, and `span?.child(...)` makes no object at all
 * (optional chaining skips its arguments too). The parent is passed explicitly, through the
 * request scope and the call context, never looked up in async-local storage.
 */
export type SpanValue = string | number | boolean | readonly string[];

export type SpanAttributes = Readonly<Record<string, SpanValue | undefined>>;

/** `client`: a call over the network (upstream attempts, remote shards); `server`: a request. */
export type SpanKind = 'internal' | 'client' | 'server';

export interface TraceSpan {
  /** 32 lower-case hex digits. */
  readonly traceId: string;
  /** 16 lower-case hex digits. */
  readonly spanId: string;
  /** False for a trace the sampler dropped: ids propagate, nothing is recorded or exported. */
  readonly recording: boolean;
  /** A child span (ended by its caller). */
  child(name: string, kind?: SpanKind, attributes?: SpanAttributes): TraceSpan;
  set(key: string, value: SpanValue | undefined): void;
  setAll(attributes: SpanAttributes): void;
  /** Marks the span failed: status ERROR with the error code, and `error.type`. */
  fail(code: string, message?: string): void;
  /** Idempotent. */
  end(): void;
  /** W3C trace context headers naming this span as the parent of the next hop's work. */
  headers(): { readonly traceparent: string; readonly tracestate?: string };
}

/** Header names of W3C Trace Context (https://www.w3.org/TR/trace-context/). */
export const TRACEPARENT = 'traceparent';
export const TRACESTATE = 'tracestate';
