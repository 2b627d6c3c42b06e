import type { VectorMetric } from '../contracts/vector-index.js';
import { syError } from '../core/errors.js';

/**
 * Distances as usearch defines them, so exact and HNSW results are comparable:
 * `cos` = 1 − cos(a, b), `ip` = 1 − a·b, `l2sq` = Σ(a − b)². Smaller is nearer.
 */
export function distanceAt(
  metric: VectorMetric,
  q: Float32Array,
  qNorm: number,
  data: Float32Array,
  offset: number,
  dims: number,
  norm: number,
): number {
  if (metric === 'l2sq') {
    let s = 0;
    for (let i = 0; i < dims; i++) {
      const d = q[i]! - data[offset + i]!;
      s += d * d;
    }
    return s;
  }
  let dot = 0;
  for (let i = 0; i < dims; i++) dot += q[i]! * data[offset + i]!;
  if (metric === 'ip') return 1 - dot;
  const denom = qNorm * norm;
  return denom === 0 ? 1 : 1 - dot / denom;
}

export function normOf(v: Float32Array, offset = 0, dims = v.length): number {
  let s = 0;
  for (let i = 0; i < dims; i++) s += v[offset + i]! * v[offset + i]!;
  return Math.sqrt(s);
}

/**
 * A vector from untrusted input as a fresh Float32Array (never a view: usearch ignores
 * subarray offsets, TOOLCHAIN.md). Wrong length or a non-finite value is `SY_ERR_VECTOR_INVALID`.
 */
export function toVector(
  input: Float32Array | readonly number[],
  dims: number,
  what = 'vector',
): Float32Array {
  if (input.length !== dims) {
    throw syError(
      'SY_ERR_VECTOR_INVALID',
      `${what} has ${input.length} dimensions, expected ${dims}`,
    );
  }
  const out = new Float32Array(dims);
  for (let i = 0; i < dims; i++) {
    const x = input[i]!;
    if (typeof x !== 'number' || !Number.isFinite(x)) {
      throw syError('SY_ERR_VECTOR_INVALID', `${what}[${i}] is not a finite number`);
    }
    out[i] = x;
  }
  // A finite float64 may still overflow float32.
  for (let i = 0; i < dims; i++)
    if (!Number.isFinite(out[i]!))
      throw syError('SY_ERR_VECTOR_INVALID', `${what}[${i}] overflows float32`);
  return out;
}
