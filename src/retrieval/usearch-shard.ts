import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Index } from 'usearch';
import type { UpsertResult, VectorRecord } from '../contracts/vector-index.js';
import { throwIfAborted } from '../core/deadline.js';
import { syError } from '../core/errors.js';
import type { BuildJob, BuildMessage } from './build-worker.js';
import { LocalIndex, type Candidates, type LocalIndexOptions } from './local-index.js';
import { DEFAULT_HNSW, newUsearchIndex, type HnswParams } from './usearch-params.js';
import { sumUpserts } from './shard-totals.js';
import { startWorker } from '../core/worker-script.js';

export interface UsearchShardOptions extends LocalIndexOptions {
  readonly hnsw?: Partial<HnswParams>;
  /**
   * Reopen a persisted index memory-mapped (`view`): searchable at once, without reading it into
   * RAM. The first write turns it into a writable in-memory copy (`load`).
   */
  readonly view?: boolean;
}

export interface BulkLoadOptions {
  /** Threads for the build (the build runs in a worker thread either way). */
  readonly threads?: number;
  readonly onProgress?: (done: number, total: number) => void;
  readonly signal?: AbortSignal;
}

const BULK_CHUNK = 10_000;

/**
 * An HNSW shard on usearch (chosen over hnswlib-node: prebuilt binary, no node-gyp; batch adds
 * from typed arrays; memory-mapped `view()` for instant reopen; f16/i8 quantization). Keys in
 * usearch are the slab slots; ids, metadata and filters live in `LocalIndex`.
 *
 * usearch traps handled here (TOOLCHAIN.md): vectors are passed as fresh copies, never
 * subarrays; `expansion_search` is set at construction; searches use one thread.
 */
export class UsearchShard extends LocalIndex {
  private index: Index;
  private readonly params: HnswParams;
  private viewPath: string | undefined;
  /** While a bulk build runs, writes are recorded here and replayed onto the new index. */
  private buildLog: ['add' | 'remove', number][] | undefined;

  constructor(options: UsearchShardOptions) {
    super(options);
    this.params = { ...DEFAULT_HNSW, ...options.hnsw };
    this.index = newUsearchIndex(this.dims, this.metric, this.params);
  }

  /** Reopens the persisted shard in `options.dir` (or starts an empty one). */
  static async open(options: UsearchShardOptions): Promise<UsearchShard> {
    const shard = new UsearchShard(options);
    const loaded = await shard.restore();
    if (loaded !== undefined && existsSync(loaded.annPath)) {
      if (options.view === true) {
        shard.index.view(loaded.annPath);
        shard.viewPath = loaded.annPath;
      } else shard.index.load(loaded.annPath);
    }
    if (shard.index.size() !== shard.liveCount()) {
      // The ANN file is missing or disagrees with the metadata: rebuild it from the vectors.
      shard.viewPath = undefined;
      shard.index = newUsearchIndex(shard.dims, shard.metric, shard.params);
      const slots = shard.liveSlots();
      if (slots.length > 0) shard.annAdd(slots);
    }
    return shard;
  }

  get hnsw(): HnswParams {
    return this.params;
  }

  protected annReady(): boolean {
    return this.buildLog === undefined;
  }

  protected hasAnn(): boolean {
    return true;
  }

  protected annAdd(slots: readonly number[]): void {
    if (this.buildLog !== undefined) {
      for (const s of slots) this.buildLog.push(['add', s]);
      return;
    }
    if (slots.length === 1) this.index.add(BigInt(slots[0]!), this.slab.copy(slots[0]!), 1);
    else this.index.add(BigUint64Array.from(slots, BigInt), this.slab.gather(slots), 1);
  }

  protected annRemove(slots: readonly number[]): void {
    if (slots.length === 0) return;
    if (this.buildLog !== undefined) {
      for (const s of slots) this.buildLog.push(['remove', s]);
      return;
    }
    this.index.remove(BigUint64Array.from(slots, BigInt));
  }

  protected annSearch(query: Float32Array, count: number): Candidates {
    const m = this.index.search(query, Math.max(1, count), 1);
    const slots: number[] = [];
    const dists: number[] = [];
    for (let i = 0; i < m.keys.length; i++) {
      slots.push(Number(m.keys[i]!));
      dists.push(m.distances[i]!);
    }
    return { slots, dists };
  }

  protected annWritable(): void {
    if (this.viewPath === undefined) return;
    const fresh = newUsearchIndex(this.dims, this.metric, this.params);
    fresh.load(this.viewPath);
    this.index = fresh;
    this.viewPath = undefined;
  }

  protected annSave(path: string): void {
    this.annWritable();
    this.index.save(path);
  }

  /** True while the ANN is a read-only memory-mapped view of the persisted file. */
  isViewOnly(): boolean {
    return this.viewPath !== undefined;
  }

  /**
   * Stores many records and builds the HNSW graph in a worker thread (the event loop stays
   * free), reporting progress. Searches keep working meanwhile, exactly; writes made during the
   * build are replayed onto the new graph before it takes over.
   */
  async bulkLoad(
    records: Iterable<VectorRecord>,
    opts: BulkLoadOptions = {},
  ): Promise<UpsertResult> {
    if (this.buildLog !== undefined)
      throw syError('SY_ERR_VECTOR_INVALID', 'a bulk load is already running');
    this.annWritable();
    this.buildLog = [];
    const parts: UpsertResult[] = [];
    try {
      let chunk: VectorRecord[] = [];
      const flush = async (): Promise<void> => {
        parts.push(await this.upsert(chunk, opts.signal));
        chunk = [];
      };
      for (const r of records) {
        chunk.push(r);
        if (chunk.length >= BULK_CHUNK) await flush();
      }
      if (chunk.length > 0) await flush();
      // Everything up to here is in the slab: the build covers it, the log only what follows.
      this.buildLog = [];
      const slots = Int32Array.from(this.liveSlots());
      const path = join(
        tmpdir(),
        `switchyard-build-${process.pid}-${this.id}-${Date.now()}.usearch`,
      );
      try {
        await this.buildInWorker(slots, path, opts);
        if (opts.signal !== undefined) throwIfAborted(opts.signal);
        const fresh = newUsearchIndex(this.dims, this.metric, this.params);
        fresh.load(path);
        this.index = fresh;
      } finally {
        await rm(path, { force: true });
      }
      const log = this.buildLog;
      this.buildLog = undefined;
      this.replay(log);
      return sumUpserts(parts);
    } catch (err) {
      // The old graph misses what was stored: rebuild inline rather than serve a stale graph.
      this.buildLog = undefined;
      this.index = newUsearchIndex(this.dims, this.metric, this.params);
      const slots = this.liveSlots();
      if (slots.length > 0) this.annAdd(slots);
      throw err;
    }
  }

  private replay(log: readonly ['add' | 'remove', number][]): void {
    for (const [op, slot] of log) {
      const present = this.index.contains(BigInt(slot)) as boolean;
      if (present) this.index.remove(BigInt(slot));
      if (op === 'add' && this.entries[slot] !== undefined) this.annAdd([slot]);
    }
  }

  private buildInWorker(slots: Int32Array, path: string, opts: BulkLoadOptions): Promise<void> {
    const job: BuildJob = {
      data: this.slab.data,
      dims: this.dims,
      metric: this.metric,
      params: this.params,
      slots,
      threads: Math.max(1, opts.threads ?? 1),
      path,
    };
    return new Promise((resolve, reject) => {
      const worker = startWorker(import.meta.url, 'build-worker', { workerData: job });
      const onAbort = (): void => void worker.terminate();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      let settled = false;
      const finish = (err?: Error): void => {
        if (settled) return;
        settled = true;
        opts.signal?.removeEventListener('abort', onAbort);
        void worker.terminate();
        if (err === undefined) resolve();
        else reject(err);
      };
      worker.on('message', (msg: BuildMessage) => {
        if (msg.type === 'progress') opts.onProgress?.(msg.done, msg.total);
        else if (msg.type === 'done') finish();
        else finish(syError('SY_ERR_INTERNAL', `index build failed: ${msg.message}`));
      });
      worker.on('error', (err) => finish(err));
      worker.on('exit', () => finish(syError('SY_ERR_INTERNAL', 'index build worker exited')));
    });
  }
}
