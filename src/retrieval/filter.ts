import type {
  AttrValue,
  SearchOptions,
  VectorFilter,
  VectorMetadata,
} from '../contracts/vector-index.js';

export type MetaPredicate = (meta: VectorMetadata) => boolean;

function set<T>(list: readonly T[] | undefined): ReadonlySet<T> | undefined {
  return list === undefined ? undefined : new Set(list);
}

/**
 * Compiles a structured filter into one predicate. Tenant, expiry and the filter are checked
 * here, once, for every implementation; the caller's in-process predicate runs last.
 */
export function compileFilter(
  tenant: string,
  filter: VectorFilter | undefined,
  now: number,
  extra?: MetaPredicate,
): MetaPredicate {
  const f = filter ?? {};
  const labels = set(f.labels);
  const types = set(f.entityTypes);
  const users = set(f.userIds);
  const excluded = set(f.excludeUserIds);
  const jurisdictions = set(f.jurisdictions);
  const geos = set(f.geos);
  const attrs = Object.entries(f.attrs ?? {}).map(
    ([k, v]) =>
      [k, new Set<AttrValue>(Array.isArray(v) ? (v as AttrValue[]) : [v as AttrValue])] as const,
  );
  const { updatedAfter, updatedBefore } = f;
  return (m) => {
    if (m.tenant !== tenant) return false;
    if (m.expiresAt !== undefined && m.expiresAt <= now) return false;
    if (labels !== undefined && !labels.has(m.label)) return false;
    if (types !== undefined && !types.has(m.entityType)) return false;
    if (users !== undefined && (m.userId === undefined || !users.has(m.userId))) return false;
    if (excluded !== undefined && m.userId !== undefined && excluded.has(m.userId)) return false;
    if (jurisdictions !== undefined && !jurisdictions.has(m.jurisdiction ?? null)) return false;
    if (geos !== undefined && (m.geo === undefined || !geos.has(m.geo))) return false;
    if (updatedAfter !== undefined && m.updatedAt < updatedAfter) return false;
    if (updatedBefore !== undefined && m.updatedAt >= updatedBefore) return false;
    for (const [key, allowed] of attrs) {
      const v = m.attrs?.[key];
      if (v === undefined || !allowed.has(v)) return false;
    }
    return extra === undefined || extra(m);
  };
}

/** The predicate a search applies: tenant, expiry, filter and the caller's predicate. */
export function searchPredicate(options: SearchOptions, now: number): MetaPredicate {
  return compileFilter(options.tenant, options.filter, now, options.predicate);
}

/** True when the filter says nothing beyond the tenant (no narrowing needed). */
export function isEmptyFilter(options: SearchOptions): boolean {
  const f = options.filter;
  const empty =
    f === undefined ||
    Object.values(f).every((v) => v === undefined) ||
    (f.attrs !== undefined && Object.keys(f).length === 1 && Object.keys(f.attrs).length === 0);
  return empty && options.predicate === undefined;
}

function both<T>(
  a: readonly T[] | undefined,
  b: readonly T[] | undefined,
): readonly T[] | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return a.filter((x) => b.includes(x));
}

/**
 * A filter matching exactly what both filters match (the caller's request AND the policy
 * module's guard), so the combination still travels to remote shards as one filter.
 */
export function intersectFilters(
  a: VectorFilter | undefined,
  b: VectorFilter | undefined,
): VectorFilter | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  const out: Record<string, unknown> = {
    labels: both(a.labels, b.labels),
    entityTypes: both(a.entityTypes, b.entityTypes),
    userIds: both(a.userIds, b.userIds),
    excludeUserIds:
      a.excludeUserIds === undefined && b.excludeUserIds === undefined
        ? undefined
        : [...(a.excludeUserIds ?? []), ...(b.excludeUserIds ?? [])],
    jurisdictions: both(a.jurisdictions, b.jurisdictions),
    geos: both(a.geos, b.geos),
    updatedAfter:
      a.updatedAfter === undefined || b.updatedAfter === undefined
        ? (a.updatedAfter ?? b.updatedAfter)
        : Math.max(a.updatedAfter, b.updatedAfter),
    updatedBefore:
      a.updatedBefore === undefined || b.updatedBefore === undefined
        ? (a.updatedBefore ?? b.updatedBefore)
        : Math.min(a.updatedBefore, b.updatedBefore),
  };
  const attrs: Record<string, AttrValue | readonly AttrValue[]> = { ...a.attrs };
  for (const [k, v] of Object.entries(b.attrs ?? {})) {
    const prev = attrs[k];
    if (prev === undefined) attrs[k] = v;
    else {
      const l = (x: AttrValue | readonly AttrValue[]): readonly AttrValue[] =>
        Array.isArray(x) ? (x as readonly AttrValue[]) : [x as AttrValue];
      attrs[k] = both(l(prev), l(v))!;
    }
  }
  if (Object.keys(attrs).length > 0) out['attrs'] = attrs;
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out;
}
