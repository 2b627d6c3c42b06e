import { parentPort, workerData } from 'node:worker_threads';
import type { VectorMetric } from '../contracts/vector-index.js';
import { newUsearchIndex, type HnswParams } from './usearch-params.js';

export interface BuildJob {
  readonly data: Float32Array;
  readonly dims: number;
  readonly metric: VectorMetric;
  readonly params: HnswParams;
  readonly slots: Int32Array;
  readonly threads: number;
  readonly path: string;
}

export type BuildMessage =
  | { readonly type: 'progress'; readonly done: number; readonly total: number }
  | { readonly type: 'done'; readonly size: number }
  | { readonly type: 'error'; readonly message: string };

const CHUNK = 4_096;

/** Builds a usearch index from slab rows in a worker thread and saves it to `path`. */
function build(job: BuildJob): void {
  const { data, dims, slots } = job;
  const index = newUsearchIndex(dims, job.metric, job.params);
  for (let start = 0; start < slots.length; start += CHUNK) {
    const end = Math.min(slots.length, start + CHUNK);
    const keys = new BigUint64Array(end - start);
    const rows = new Float32Array((end - start) * dims);
    for (let i = start; i < end; i++) {
      const slot = slots[i]!;
      keys[i - start] = BigInt(slot);
      rows.set(data.subarray(slot * dims, (slot + 1) * dims), (i - start) * dims);
    }
    index.add(keys, rows, job.threads);
    parentPort!.postMessage({
      type: 'progress',
      done: end,
      total: slots.length,
    } satisfies BuildMessage);
  }
  index.save(job.path);
  parentPort!.postMessage({ type: 'done', size: index.size() } satisfies BuildMessage);
}

try {
  build(workerData as BuildJob);
} catch (err) {
  parentPort!.postMessage({
    type: 'error',
    message: err instanceof Error ? err.message : String(err),
  } satisfies BuildMessage);
}
