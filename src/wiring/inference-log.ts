import { isAbsolute, join } from 'node:path';
import type { ConfigSnapshot } from '../config/load.js';
import type { InferenceLogReader, InferenceLogStore } from '../contracts/inference-log.js';
import type { ConsentRegistry } from '../contracts/policy.js';
import { InferenceRecorder } from '../observability/inference-recorder.js';
import { JsonlExport } from '../observability/jsonl-export.js';
import type { WiringDeps } from './shared.js';

/**
 * The inference log's store of a config (the gateway's, or the CLI's reading it); the driver is
 * loaded only when used.
 */
export async function openInferenceStore(snap: ConfigSnapshot): Promise<InferenceLogStore> {
  const il = snap.config.inference_log;
  if (il.store === 'postgres') {
    const state = snap.config.state;
    const url = il.postgres ?? (state !== undefined && 'postgres' in state ? state.postgres : '');
    const { PostgresInferenceLog } = await import('../state/postgres-inference-log.js');
    return PostgresInferenceLog.open({ url, schema: il.postgres_schema });
  }
  // Writes on a thread of their own: a commit's fsync and WAL checkpoint never stall the loop.
  const { ThreadedSqliteInferenceLog } = await import('../state/threaded-inference-log.js');
  return ThreadedSqliteInferenceLog.open(isAbsolute(il.path) ? il.path : join(snap.dir, il.path));
}

const FLUSH_TOPIC = 'inference_log.flush';

export interface InferenceLogWiring {
  readonly recorder: InferenceRecorder;
  /**
   * What the admin API reads: the recorder's query and get, which write what it holds first; with
   * `serve --workers N` every worker's (#17), so a record is there whichever worker answered it.
   */
  readonly reader: InferenceLogReader;
  /** Stops recording, writes everything held (and exported), closes the store. */
  close(): Promise<void>;
}

/**
 * The inference log (#15), when `inference_log.enabled`: its store (a SQLite file of its own, or
 * PostgreSQL), the recorder that fills it behind requests, the JSONL export, and the consent hook
 * that purges a user's records when they revoke. Opened once; the store, buffer, flush interval,
 * retention and export take effect at start, the payload rules on every request (reloadable).
 */
export async function openInferenceLog(
  snap: ConfigSnapshot,
  deps: WiringDeps,
  consent: Pick<ConsentRegistry, 'onPurge'>,
): Promise<InferenceLogWiring | undefined> {
  const il = snap.config.inference_log;
  if (!il.enabled) return undefined;
  const at = (p: string): string => (isAbsolute(p) ? p : join(snap.dir, p));
  const store = await openInferenceStore(snap);
  const { metrics, logger, clock } = deps;
  const exporter =
    il.export.jsonl === undefined
      ? undefined
      : new JsonlExport({
          path: at(il.export.jsonl),
          maxBytes: il.export.max_bytes,
          keep: il.export.keep,
          logger,
        });
  const r = il.retention;
  const recorder = new InferenceRecorder({
    store,
    clock,
    logger,
    bufferSize: il.buffer_size,
    flushMs: il.flush_ms,
    retention: {
      intervalMs: r.interval_ms,
      ...(r.max_age_s > 0 ? { maxAgeMs: r.max_age_s * 1000 } : {}),
      ...(r.max_rows > 0 ? { maxRows: r.max_rows } : {}),
      ...(r.max_bytes > 0 ? { maxBytes: r.max_bytes } : {}),
    },
    ...(exporter === undefined ? {} : { exported: (q, c) => exporter.write(q, c) }),
    onDropped: (reason, n) => metrics.inferenceLogDropped.labels(reason).inc(n),
    onWritten: (kind, n) => metrics.inferenceLogWritten.labels(kind).inc(n),
  }).start();
  const detach = consent.onPurge({
    name: 'inference_log',
    purge: (req) => recorder.purgeUser(req.tenant, req.userId),
  });
  const cluster = deps.cluster;
  cluster?.on(FLUSH_TOPIC, () => recorder.flush());
  const others = (): Promise<void> => cluster?.broadcast(FLUSH_TOPIC, null) ?? Promise.resolve();
  return {
    recorder,
    reader:
      cluster === undefined
        ? recorder
        : {
            query: async (q) => {
              await others();
              return recorder.query(q);
            },
            get: async (id) => {
              await others();
              return recorder.get(id);
            },
          },
    close: async () => {
      detach();
      await recorder.close();
      await exporter?.flushed();
    },
  };
}
