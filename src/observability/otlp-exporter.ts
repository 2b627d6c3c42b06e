import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';
import { Pool, request } from '../core/undici.js';
import { encodeTraceExport } from './otlp-protobuf.js';

export interface OtlpExporterOptions {
  /** The full traces URL, such as `http://collector:4318/v1/traces`. */
  readonly endpoint: string;
  readonly protocol: 'http/protobuf' | 'http/json';
  readonly headers: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
}

/**
 * The OTLP/HTTP span exporter. `http/json` is OpenTelemetry's own `OTLPTraceExporter` (it
 * serializes JSON only); `http/protobuf`, the OTLP default and what collectors expect first, is
 * our encoder (`otlp-protobuf.ts`, the same bytes as OpenTelemetry's protobuf serializer in about
 * half the time) posted on an undici pool. Either runs behind the batch
 * processor, off the request path.
 */
export function otlpExporter(o: OtlpExporterOptions): SpanExporter {
  if (o.protocol === 'http/json')
    return new OTLPTraceExporter({
      url: o.endpoint,
      headers: { ...o.headers },
      timeoutMillis: o.timeoutMs,
    });
  return new ProtobufExporter(o);
}

class ProtobufExporter implements SpanExporter {
  private readonly pool: Pool;
  private readonly path: string;
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly o: OtlpExporterOptions) {
    const url = new URL(o.endpoint);
    this.path = `${url.pathname}${url.search}`;
    this.pool = new Pool(url.origin, { connections: 2, keepAliveTimeout: 30_000 });
  }

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    let body: Uint8Array;
    try {
      body = encodeTraceExport(spans);
    } catch (err) {
      done({
        code: ExportResultCode.FAILED,
        error: err instanceof Error ? err : new Error(String(err)),
      });
      return;
    }
    const sent = this.post(body).then(done, (err: unknown) =>
      done({
        code: ExportResultCode.FAILED,
        error: err instanceof Error ? err : new Error(String(err)),
      }),
    );
    this.pending.add(sent);
    void sent.finally(() => this.pending.delete(sent));
  }

  private async post(body: Uint8Array): Promise<ExportResult> {
    const res = await request(this.pool, {
      path: this.path,
      method: 'POST',
      headers: { ...this.o.headers, 'content-type': 'application/x-protobuf' },
      body: Buffer.from(body.buffer, body.byteOffset, body.byteLength),
      headersTimeout: this.o.timeoutMs,
      bodyTimeout: this.o.timeoutMs,
    });
    await res.body.dump();
    if (res.statusCode >= 200 && res.statusCode < 300) return { code: ExportResultCode.SUCCESS };
    return {
      code: ExportResultCode.FAILED,
      error: new Error(`the OTLP endpoint answered ${res.statusCode}`),
    };
  }

  async forceFlush(): Promise<void> {
    await Promise.all(this.pending);
  }

  async shutdown(): Promise<void> {
    await this.forceFlush();
    await this.pool.close();
  }
}
