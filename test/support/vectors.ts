import type { VectorMetadata } from '../../src/contracts/vector-index.js';
import { seededRandom, type Random } from '../../src/core/random.js';

/** Standard normal from a uniform source (Box-Muller). */
export function gaussian(rnd: Random): number {
  const u = Math.max(rnd(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rnd());
}

/** `n` vectors around `clusters` random centres: the shape real embeddings have. */
export function clustered(
  n: number,
  dims: number,
  clusters: number,
  seed: number,
  spread = 0.35,
): Float32Array[] {
  const rnd = seededRandom(seed);
  const centres = Array.from({ length: clusters }, () =>
    Float32Array.from({ length: dims }, () => gaussian(rnd)),
  );
  return Array.from({ length: n }, () => {
    const c = centres[Math.floor(rnd() * clusters)]!;
    return Float32Array.from(c, (x) => x + spread * gaussian(rnd));
  });
}

/** A copy of `v` moved by a little noise: a query whose nearest neighbour is `v`. */
export function near(v: Float32Array, rnd: Random, eps = 0.01): Float32Array {
  return Float32Array.from(v, (x) => x + eps * gaussian(rnd));
}

export function meta(tenant: string, over: Partial<VectorMetadata> = {}): VectorMetadata {
  return {
    tenant,
    label: 'public',
    entityType: 'item',
    createdAt: 1_700_000_000_000,
    updatedAt: 1_700_000_000_000,
    ...over,
  };
}
