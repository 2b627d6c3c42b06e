import type { Worker } from 'node:worker_threads';
import type {
  InferenceLogStore,
  InferenceQuery,
  ModelCallRecord,
  RequestDetail,
  RequestPage,
  RequestRecord,
  RetentionRule,
} from '../contracts/inference-log.js';
import { startWorker } from '../core/worker-script.js';
import { toLines } from './inference-log-rows.js';
import { SqliteInferenceLog } from './sqlite-inference-log.js';

export type WriterRequest =
  | {
      readonly id: number;
      readonly op: 'append';
      /** The batch as JSON lines (`toLines`). */
      readonly requests: string;
      readonly calls: string;
    }
  | { readonly id: number; readonly op: 'purge'; readonly tenant: string; readonly user: string }
  | { readonly id: number; readonly op: 'retain'; readonly rule: RetentionRule }
  | { readonly id: number; readonly op: 'close' };

export type WriterReply =
  | { readonly id: number; readonly ok: true; readonly value: number }
  | { readonly id: number; readonly ok: false; readonly error: string };

type Pending = { resolve: (n: number) => void; reject: (e: Error) => void };
/** A request before it gets its id. */
type Unsent = WriterRequest extends infer R ? (R extends unknown ? Omit<R, 'id'> : never) : never;

/**
 * The embedded inference log with its writes on a thread of their own (#15, bench:record): the
 * recorder's batches, purges and retention run in `inference-log-writer` on its own connection,
 * so a transaction, its fsync and the WAL checkpoints SQLite runs inside a commit (the 15-18 ms
 * stalls bench:record measured) happen off the event loop. Reads (`query`, `get`) stay here on a
 * second connection: WAL lets them run beside the writer. A write resolves once the writer has
 * committed it, so `close()` after the last flush loses nothing.
 */
export class ThreadedSqliteInferenceLog implements InferenceLogStore {
  private next = 1;
  private readonly pending = new Map<number, Pending>();
  private failure: Error | undefined;
  private closed = false;

  /** The read connection, opened once the writer made the schema. */
  private reader: SqliteInferenceLog | undefined;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (r: WriterReply) => {
      const p = this.pending.get(r.id);
      if (p === undefined) return;
      this.pending.delete(r.id);
      if (r.ok) p.resolve(r.value);
      else p.reject(new Error(`inference log writer: ${r.error}`));
    });
    const fail = (err: Error): void => {
      this.failure = err;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => {
      if (!this.closed) fail(new Error(`inference log writer exited (code ${code})`));
    });
  }

  /** Opens the file (schema made by the writer first), then the read connection. */
  static async open(path: string): Promise<ThreadedSqliteInferenceLog> {
    const worker = startWorker(import.meta.url, 'inference-log-writer', { workerData: { path } });
    await new Promise<void>((resolve, reject) => {
      worker.once('online', () => resolve());
      worker.once('error', reject);
    });
    const log = new ThreadedSqliteInferenceLog(worker);
    // A first no-op write: the writer has created the schema once it answers.
    await log.send({ op: 'append', requests: '', calls: '' });
    log.reader = SqliteInferenceLog.open(path);
    return log;
  }

  private send(m: Unsent): Promise<number> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const id = this.next++;
    return new Promise<number>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...m, id });
    });
  }

  async append(
    requests: readonly RequestRecord[],
    calls: readonly ModelCallRecord[],
  ): Promise<void> {
    await this.send({ op: 'append', requests: toLines(requests), calls: toLines(calls) });
  }

  query(q?: InferenceQuery): Promise<RequestPage> {
    return this.reader!.query(q);
  }

  get(id: string): Promise<RequestDetail | undefined> {
    return this.reader!.get(id);
  }

  purgeUser(tenant: string, user: string): Promise<number> {
    return this.send({ op: 'purge', tenant, user });
  }

  retain(rule: RetentionRule): Promise<number> {
    return this.send({ op: 'retain', rule });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      if (this.failure === undefined) await this.send({ op: 'close' });
    } finally {
      this.closed = true;
      await this.worker.terminate();
      await this.reader?.close();
    }
  }
}
