import type {
  FreshnessTier,
  RetrievalRequest,
  ShardKey,
  VectorFilter,
  VectorMetadata,
} from '../contracts/vector-index.js';

/** FNV-1a over `tenant \0 id`: stable across processes, so every node places a record alike. */
export function recordHash(tenant: string, id: string): number {
  let h = 0x811c9dc5;
  const s = `${tenant}\u0000${id}`;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

const admits = <T>(list: readonly T[] | undefined, value: T): boolean =>
  list === undefined || list.includes(value);

/** Whether a record belongs on a shard with this key (residency by node is checked apart). */
export function keyAdmits(key: ShardKey, id: string, meta: VectorMetadata): boolean {
  if (!admits(key.tenants, meta.tenant)) return false;
  if (!admits(key.entityTypes, meta.entityType)) return false;
  if (key.geos !== undefined && (meta.geo === undefined || !key.geos.includes(meta.geo)))
    return false;
  if (!admits(key.jurisdictions, meta.jurisdiction ?? null)) return false;
  const p = key.partition;
  return p === undefined || recordHash(meta.tenant, id) % p.buckets === p.bucket;
}

/** How many dimensions a key pins down: a record goes to the most specific shard that admits it. */
export function specificity(key: ShardKey): number {
  return [key.tenants, key.entityTypes, key.geos, key.jurisdictions].filter((l) => l !== undefined)
    .length;
}

/** Lists overlap, where an absent list means "anything". */
function overlaps<T>(a: readonly T[] | undefined, b: readonly T[] | undefined): boolean {
  return a === undefined || b === undefined || a.some((x) => b.includes(x));
}

/** Whether a shard could hold anything a request may return (the router skips it otherwise). */
export function keyMayMatch(key: ShardKey, request: RetrievalRequest): boolean {
  const route = request.route ?? {};
  const filter = request.filter ?? {};
  if (!admits(key.tenants, request.tenant)) return false;
  if (
    !overlaps(key.entityTypes, route.entityTypes) ||
    !overlaps(key.entityTypes, filter.entityTypes)
  )
    return false;
  const tiers: readonly FreshnessTier[] | undefined = route.tiers;
  if (tiers !== undefined && !tiers.includes(key.tier)) return false;
  if (route.geo !== undefined && !admits(key.geos, route.geo)) return false;
  if (!overlaps(key.geos, filter.geos)) return false;
  if (!overlaps(key.jurisdictions, route.jurisdictions)) return false;
  if (!overlaps(key.jurisdictions, filter.jurisdictions)) return false;
  return true;
}

const within = <T>(key: readonly T[] | undefined, wanted: readonly T[] | undefined): boolean =>
  key !== undefined && wanted !== undefined && key.every((x) => wanted.includes(x));

/**
 * The filter a shard needs for a request: clauses its key already guarantees are dropped (every
 * record was placed there by `keyAdmits`), so the shard skips the filtered over-fetch. Only
 * `geos` and `entityTypes`; privacy clauses (jurisdictions, labels, users) always travel.
 */
export function filterForKey(
  key: ShardKey,
  filter: VectorFilter | undefined,
): VectorFilter | undefined {
  if (filter === undefined) return undefined;
  const dropGeos = within(key.geos, filter.geos);
  const dropTypes = within(key.entityTypes, filter.entityTypes);
  if (!dropGeos && !dropTypes) return filter;
  const { geos, entityTypes, ...rest } = filter;
  const out: VectorFilter = {
    ...rest,
    ...(dropGeos || geos === undefined ? {} : { geos }),
    ...(dropTypes || entityTypes === undefined ? {} : { entityTypes }),
  };
  return Object.keys(out).length === 0 ? undefined : out;
}
