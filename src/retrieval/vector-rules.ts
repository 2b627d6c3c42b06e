import type { PolicyModule } from '../contracts/policy.js';
import {
  vectorTag,
  type VectorFilter,
  type VectorIndex,
  type VectorMetadata,
  type VectorRecord,
} from '../contracts/vector-index.js';
import { syError } from '../core/errors.js';
import { ensureRoom } from '../core/tenant-storage.js';
import { compileFilter, intersectFilters } from './filter.js';
import { LocalIndex } from './local-index.js';

/**
 * What every read and write of stored vectors obeys, whoever asks: an app through the collection
 * routes, or another gateway node through the shard API (#13, finding 2). Built per request from
 * the runtime's snapshot, since the policy module and the caps change on reload.
 */
export interface VectorRules {
  /** The one policy module (consent, labels, residency); absent only in bare test runtimes. */
  readonly policy: PolicyModule | undefined;
  /** Most vectors one tenant may hold in this node's shards (`vectors.max_per_tenant`). */
  readonly maxPerTenant: number | undefined;
}

/** Ingestion: the policy module must admit every record (consent, label, residency), or none is stored. */
export function admitVectors(
  policy: PolicyModule | undefined,
  records: readonly VectorRecord[],
): void {
  if (policy === undefined) return;
  records.forEach((r, i) => {
    // The policy module's own reading of a vector's tag (its purpose rides in `attrs.purpose`).
    const d = policy.decide('ingestion', vectorTag(r.meta));
    if (!d.allow) throw syError(d.code, `records[${i}]: ${d.reason}`, { param: `records[${i}]` });
  });
}

/** Retrieval for a search: the policy's guard (a filter that travels, a predicate in process). */
export function guardSearch(
  policy: PolicyModule | undefined,
  tenant: string,
  filter: VectorFilter | undefined,
): { filter?: VectorFilter; predicate?: (m: VectorMetadata) => boolean } {
  if (policy === undefined) return filter === undefined ? {} : { filter };
  const guard = policy.vectorGuard(tenant);
  const merged = intersectFilters(filter, guard.filter);
  return { ...(merged === undefined ? {} : { filter: merged }), predicate: guard.predicate };
}

/** Retrieval of one record by id: the same guard a search applies. */
export function mayRetrieve(
  policy: PolicyModule | undefined,
  tenant: string,
  meta: VectorMetadata,
): boolean {
  if (policy === undefined) return meta.tenant === tenant;
  const guard = policy.vectorGuard(tenant);
  // Expiry is the index's business (`get` never returns an expired record).
  return compileFilter(tenant, guard.filter, -Infinity, guard.predicate)(meta);
}

/**
 * Counts the vectors each tenant holds in this node's in-process shards (the shards count
 * exactly: inserts, replacements, deletes, purges, TTL sweeps and evictions), and refuses writes
 * that would take a tenant past its cap. Remote shards are counted by the node holding them.
 */
export class TenantVectorCount {
  constructor(private readonly shards: () => Iterable<VectorIndex>) {}

  held(tenant: string): number {
    let n = 0;
    for (const s of this.shards()) if (s instanceof LocalIndex) n += s.tenantSize(tenant);
    return n;
  }

  byTenant(): Map<string, number> {
    const out = new Map<string, number>();
    for (const s of this.shards())
      if (s instanceof LocalIndex)
        for (const [tenant, n] of s.tenantSizes()) out.set(tenant, (out.get(tenant) ?? 0) + n);
    return out;
  }

  /**
   * Throws SY_ERR_TENANT_STORAGE_FULL unless the new `(tenant, id)` pairs these writes would add
   * to in-process shards fit under `cap`. Synchronous, so the caller writes in the same tick and
   * no other write can slip in between the check and the write.
   */
  ensureRoom(
    writes: Iterable<readonly [VectorIndex, readonly VectorRecord[]]>,
    cap: number | undefined,
  ): void {
    if (cap === undefined) return;
    const adding = new Map<string, number>();
    for (const [index, records] of writes) {
      if (!(index instanceof LocalIndex)) continue;
      const seen = new Set<string>();
      for (const r of records) {
        const tenant = r.meta.tenant;
        const key = `${tenant}\u0000${r.id}`;
        if (seen.has(key) || index.holds(tenant, r.id)) continue;
        seen.add(key);
        adding.set(tenant, (adding.get(tenant) ?? 0) + 1);
      }
    }
    for (const [tenant, n] of adding) ensureRoom('vectors', tenant, this.held(tenant), n, cap);
  }
}
