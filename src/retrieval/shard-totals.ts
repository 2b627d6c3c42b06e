import type { UpsertResult, VectorShard } from '../contracts/vector-index.js';

/**
 * Small result helpers with no native dependencies: the front door and the CLI import them
 * without loading usearch.
 */

/** Totals of several upserts (chunks of a bulk load, shards of a routed write). */
export function sumUpserts(results: Iterable<UpsertResult>): UpsertResult {
  let inserted = 0;
  let updated = 0;
  let evicted = 0;
  for (const r of results) {
    inserted += r.inserted;
    updated += r.updated;
    evicted += r.evicted;
  }
  return { inserted, updated, evicted };
}

/** Shards (such as the children of a split) with their sizes. */
export async function childSizes(
  shards: readonly VectorShard[],
): Promise<{ id: string; size: number }[]> {
  return Promise.all(
    shards.map(async (s) => ({ id: s.descriptor.id, size: await s.index.size() })),
  );
}
