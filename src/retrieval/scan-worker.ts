import { parentPort } from 'node:worker_threads';
import type { VectorMetric } from '../contracts/vector-index.js';
import { TopK } from './top-k.js';
import { distanceAt, normOf } from './vector-math.js';

/** One exact scan: rows `slots` of the shared slab against each query. */
export interface ScanRequest {
  readonly id: number;
  readonly data: Float32Array;
  readonly norms: Float32Array;
  readonly dims: number;
  readonly metric: VectorMetric;
  /** Rows to scan; empty with `all` > 0 means rows [0, all). */
  readonly slots: Int32Array;
  readonly all: number;
  /** `nq` queries, one after another. */
  readonly queries: Float32Array;
  readonly k: number;
}

export interface ScanResponse {
  readonly id: number;
  readonly results: { slots: number[]; dists: number[] }[];
  readonly error?: string;
}

export function scan(req: Omit<ScanRequest, 'id'>): ScanResponse['results'] {
  const { data, norms, dims, metric, slots, all, queries, k } = req;
  const nq = queries.length / dims;
  const out: ScanResponse['results'] = [];
  for (let q = 0; q < nq; q++) {
    const query = queries.subarray(q * dims, (q + 1) * dims);
    const qNorm = normOf(query);
    const top = new TopK(k);
    const n = slots.length > 0 ? slots.length : all;
    for (let i = 0; i < n; i++) {
      const slot = slots.length > 0 ? slots[i]! : i;
      top.push(slot, distanceAt(metric, query, qNorm, data, slot * dims, dims, norms[slot]!));
    }
    const sorted = top.sorted();
    out.push({ slots: sorted.map((s) => s.slot), dists: sorted.map((s) => s.dist) });
  }
  return out;
}

parentPort?.on('message', (req: ScanRequest) => {
  try {
    parentPort!.postMessage({ id: req.id, results: scan(req) } satisfies ScanResponse);
  } catch (err) {
    parentPort!.postMessage({
      id: req.id,
      results: [],
      error: err instanceof Error ? err.message : String(err),
    } satisfies ScanResponse);
  }
});
