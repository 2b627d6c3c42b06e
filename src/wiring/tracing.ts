import { readFileSync } from 'node:fs';
import type { ConfigSnapshot } from '../config/load.js';
import { resolveSecret } from '../config/load.js';
import type { TracingConfig } from '../config/schema.js';
import type { DeepReadonly } from '../config/deep-freeze.js';
import type { OtelTracing, RequestTracer } from '../observability/tracing.js';
import type { WiringDeps } from './shared.js';

export interface TracingWiring {
  /** The tracer of the current snapshot; undefined while `tracing.enabled` is false. */
  current(): RequestTracer | undefined;
  /** Applies a reloaded `tracing:` section: a changed one replaces the provider (the old one flushes). */
  reconfigure(snap: ConfigSnapshot): Promise<RequestTracer | undefined>;
  /** Exports every span ended so far (tests, benchmarks). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

const VERSION = readVersion();

/**
 * Traces (#15): one OpenTelemetry provider per `tracing:` section. Spans leave in batches from
 * the provider's processor; nothing on the request path waits for an export. The SDK, the OTLP
 * exporter and its protobuf code load only once tracing is on: a gateway without tracing does not
 * carry them (about 3 MB of heap; `npm run bench:overhead` measures RSS).
 */
export async function openTracing(snap: ConfigSnapshot, deps: WiringDeps): Promise<TracingWiring> {
  let shown = '';
  let tracing: OtelTracing | undefined;
  const closing = new Set<Promise<void>>();
  const apply = async (s: ConfigSnapshot): Promise<RequestTracer | undefined> => {
    const cfg = s.config.tracing;
    const key = JSON.stringify(cfg);
    if (key === shown) return tracing;
    const old = tracing;
    tracing = cfg.enabled ? await build(cfg, s.dir) : undefined;
    shown = key;
    // Trace-id exemplars on the request-duration histogram while tracing is on.
    deps.metrics.useExemplars(cfg.enabled);
    if (old !== undefined) {
      const p = old.close().catch((err: unknown) => {
        deps.logger.warn({ err }, 'the previous tracer did not flush');
      });
      closing.add(p);
      void p.finally(() => closing.delete(p));
    }
    if (cfg.enabled)
      deps.logger.info(
        {
          endpoint: cfg.otlp.endpoint,
          protocol: cfg.otlp.protocol,
          sample_ratio: cfg.sample_ratio,
        },
        'tracing on',
      );
    return tracing;
  };
  await apply(snap);
  return {
    current: () => tracing,
    reconfigure: apply,
    flush: async () => {
      await Promise.all(closing);
      await tracing?.flush();
    },
    close: async () => {
      await Promise.all(closing);
      await tracing?.close();
      tracing = undefined;
    },
  };
}

async function build(cfg: DeepReadonly<TracingConfig>, dir: string): Promise<OtelTracing> {
  const [{ OtelTracing }, { otlpExporter }] = await Promise.all([
    import('../observability/tracing.js'),
    import('../observability/otlp-exporter.js'),
  ]);
  return new OtelTracing({
    serviceName: cfg.service_name,
    serviceVersion: VERSION,
    sampleRatio: cfg.sample_ratio,
    batchSize: cfg.export.batch_size,
    intervalMs: cfg.export.interval_ms,
    maxQueue: cfg.export.max_queue,
    exportTimeoutMs: cfg.otlp.timeout_ms,
    exporter: otlpExporter({
      endpoint: cfg.otlp.endpoint,
      protocol: cfg.otlp.protocol,
      headers: tracingHeaders(cfg, dir),
      timeoutMs: cfg.otlp.timeout_ms,
    }),
  });
}

/** The export headers, secrets read from their env variable or file (throws when one cannot be). */
export function tracingHeaders(
  cfg: DeepReadonly<TracingConfig>,
  dir: string,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(cfg.otlp.headers))
    out[name.toLowerCase()] = typeof value === 'string' ? value : resolveSecret(value, dir);
  return out;
}

function readVersion(): string {
  try {
    const pkg = JSON.parse(
      readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
    ) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}
