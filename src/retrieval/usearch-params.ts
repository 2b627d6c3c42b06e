import { createRequire } from 'node:module';
import type * as Usearch from 'usearch';

/**
 * usearch's CommonJS build: its ESM build never finishes loading inside a worker thread (seen
 * with Node 20.20 and usearch 2.25.3), and the build worker needs it there too.
 */
const usearch = createRequire(import.meta.url)('usearch') as typeof Usearch;
const { Index, MetricKind, ScalarKind } = usearch;
type Index = Usearch.Index;
import type { VectorMetric } from '../contracts/vector-index.js';

/** HNSW parameters of a usearch shard. `expansionSearch` is fixed at construction (usearch). */
export interface HnswParams {
  readonly connectivity: number;
  readonly expansionAdd: number;
  readonly expansionSearch: number;
  readonly quantization: 'f32' | 'f16' | 'i8';
}

export const DEFAULT_HNSW: HnswParams = {
  connectivity: 16,
  expansionAdd: 128,
  expansionSearch: 64,
  quantization: 'f32',
};

const METRIC: Record<VectorMetric, Usearch.MetricKind> = {
  cos: MetricKind.Cos,
  ip: MetricKind.IP,
  l2sq: MetricKind.L2sq,
};

const SCALAR: Record<HnswParams['quantization'], Usearch.ScalarKind> = {
  f32: ScalarKind.F32,
  f16: ScalarKind.F16,
  i8: ScalarKind.I8,
};

export function newUsearchIndex(dims: number, metric: VectorMetric, params: HnswParams): Index {
  return new Index({
    dimensions: dims,
    metric: METRIC[metric],
    quantization: SCALAR[params.quantization],
    connectivity: params.connectivity,
    expansion_add: params.expansionAdd,
    expansion_search: params.expansionSearch,
    multi: false,
  });
}
