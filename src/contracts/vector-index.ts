import { CONSENT_PURPOSES, type ConsentPurpose, type DataTag } from './policy.js';
import type { TraceSpan } from './trace.js';
/**
 * Vector retrieval contracts (issue #7). A `VectorIndex` is one shard: an in-process HNSW index,
 * an exact (brute-force) index, or a shard on another gateway node reached over HTTP. A
 * `VectorRetriever` is what journeys and the HTTP API use: it routes a request to the shards of a
 * collection, searches them and merges the hits into one correct top-k.
 *
 * Every vector carries its policy label, tenant and (optional) user and jurisdiction, so the
 * privacy module can decide what may be stored and retrieved without this layer knowing consent
 * rules: it hands a `VectorFilter` (and, in process, a predicate) to `search`, and calls
 * `purgeUser` when consent is revoked.
 */

/** Policy labels, least to most protected. The privacy module decides what each allows. */
export type PolicyLabel = 'public' | 'consented' | 'sensitive' | 'restricted';

/** How fresh a shard's data is: `hot` is session memory with a TTL; `cold` is bulk-built. */
export type FreshnessTier = 'hot' | 'warm' | 'cold';

/** Distance: cosine (1 - cos), squared L2, or inner product (1 - dot). Smaller is nearer. */
export type VectorMetric = 'cos' | 'l2sq' | 'ip';

/** Flat attribute values a filter can match by equality. */
export type AttrValue = string | number | boolean;

/** What is stored beside each vector. Times are wall-clock epoch ms. */
export interface VectorMetadata {
  readonly tenant: string;
  readonly label: PolicyLabel;
  /** `user`, `item`, `session`, `document`, or any type the collection declares. */
  readonly entityType: string;
  /** The person this vector is about or came from: what `purgeUser` matches. */
  readonly userId?: string;
  /** Residency tag, such as `eu`: the vector is stored only on the nodes of this jurisdiction. */
  readonly jurisdiction?: string;
  /** Coarse geography used for routing (such as `eu-west`); not a residency rule by itself. */
  readonly geo?: string;
  readonly createdAt: number;
  readonly updatedAt: number;
  /** After this time the vector is never returned and is evicted (session memory TTL). */
  readonly expiresAt?: number;
  readonly attrs?: Readonly<Record<string, AttrValue>>;
}

/**
 * One vector to store. Identity is `(meta.tenant, id)`: two tenants may use the same id and never
 * see or overwrite each other's vectors.
 */
export interface VectorRecord {
  readonly id: string;
  readonly vector: Float32Array | readonly number[];
  readonly meta: VectorMetadata;
}

/**
 * A structured, serializable filter: every present field must match (AND); list fields match
 * any of their values (OR). It travels to remote shards unchanged, so policy decisions made on
 * one node are enforced on the shard's node too.
 */
export interface VectorFilter {
  readonly labels?: readonly PolicyLabel[];
  readonly entityTypes?: readonly string[];
  /** Only these users' vectors. */
  readonly userIds?: readonly string[];
  /** Never these users' vectors (consent revoked, purge in progress). */
  readonly excludeUserIds?: readonly string[];
  /** Vectors tagged with one of these jurisdictions; `null` in the list admits untagged vectors. */
  readonly jurisdictions?: readonly (string | null)[];
  readonly geos?: readonly string[];
  /** `updatedAt >= updatedAfter` */
  readonly updatedAfter?: number;
  /** `updatedAt < updatedBefore` */
  readonly updatedBefore?: number;
  /** Each attribute must equal the value, or one of the values of a list. */
  readonly attrs?: Readonly<Record<string, AttrValue | readonly AttrValue[]>>;
}

/** A hit: the smaller the distance, the nearer. */
export interface VectorHit {
  readonly id: string;
  readonly distance: number;
  readonly meta: VectorMetadata;
}

export interface SearchOptions {
  /** Tenant isolation is not optional: a search only ever sees this tenant's vectors. */
  readonly tenant: string;
  readonly filter?: VectorFilter;
  /**
   * An extra in-process check (from the privacy module) applied to every candidate before it can
   * be returned. It cannot cross the network: remote shards apply it to the hits they return after
   * over-fetching, so prefer expressing policy as `filter`.
   */
  readonly predicate?: (meta: VectorMetadata) => boolean;
  /** HNSW search breadth override (ignored by exact indexes). */
  readonly ef?: number;
  readonly signal?: AbortSignal;
  /** The span the search hangs under (#15): remote shards continue the trace. */
  readonly span?: TraceSpan;
}

export interface UpsertResult {
  /** New `(tenant, id)` pairs. */
  readonly inserted: number;
  /** Existing `(tenant, id)` pairs whose vector or metadata were replaced. */
  readonly updated: number;
  /** Stalest vectors evicted to stay under the shard's size cap. */
  readonly evicted: number;
}

/** Live numbers of one shard (metrics, admin, rebalance decisions). */
export interface VectorShardStats {
  readonly id: string;
  readonly size: number;
  /** Searches per second over the recent window. */
  readonly qps: number;
  readonly p95Ms: number;
  readonly searches: number;
  /** Last recall@k probe against exact search on the shard's own data, if one has run. */
  readonly recall?: number;
  readonly evictedTotal: number;
  readonly expiredTotal: number;
}

/**
 * One shard. Implementations: `UsearchShard` (HNSW, in process), `ExactIndex` (brute force, the
 * recall reference), `RemoteShard` (another node over HTTP). Every one passes
 * `test/contract/vector-index.contract.ts`. Errors are SwitchyardErrors with registry codes:
 * a wrong dimension or a non-finite value is `SY_ERR_VECTOR_INVALID`.
 */
export interface VectorIndex {
  readonly id: string;
  readonly dims: number;
  readonly metric: VectorMetric;
  /** Inserts or replaces by `(tenant, id)`; may evict the stalest to honour a size cap. */
  upsert(records: readonly VectorRecord[], signal?: AbortSignal): Promise<UpsertResult>;
  /** Removes the tenant's vectors with these ids; returns how many existed. */
  delete(tenant: string, ids: readonly string[]): Promise<number>;
  /** Removes every vector of the tenant matching the filter (consent purges); returns the count. */
  deleteWhere(tenant: string, filter: VectorFilter): Promise<number>;
  /** `deleteWhere(tenant, { userIds: [userId] })`: what revoking consent calls. */
  purgeUser(tenant: string, userId: string): Promise<number>;
  /** The k nearest live vectors that match tenant, filter and predicate, nearest first. */
  search(query: Float32Array, k: number, options: SearchOptions): Promise<VectorHit[]>;
  /** The stored record, or undefined; expired vectors are not returned. */
  get(tenant: string, id: string): Promise<VectorRecord | undefined>;
  /** Live vectors (all tenants). */
  size(): Promise<number>;
  stats(): Promise<VectorShardStats>;
  /** Writes the shard to durable storage so `open` can bring it back; no-op when not durable. */
  persist(): Promise<void>;
  close(): Promise<void>;
}

/** Where a shard lives: in this process, or on another gateway node. */
export type ShardLocation =
  | { readonly kind: 'local'; readonly node: string }
  | { readonly kind: 'remote'; readonly node: string; readonly url: string };

/**
 * What a shard holds, for routing. An absent list means "any". A record is placed on a shard only
 * if every present list admits it; a query visits only shards that could hold matching records.
 */
export interface ShardKey {
  readonly tenants?: readonly string[];
  readonly geos?: readonly string[];
  /** Residency: the jurisdictions whose data this shard may hold (`null` admits untagged data). */
  readonly jurisdictions?: readonly (string | null)[];
  readonly entityTypes?: readonly string[];
  readonly tier: FreshnessTier;
  /**
   * A slice of the key space after a split: the shard holds the records whose
   * `hash(tenant, id) % buckets === bucket`. Absent: the whole key space.
   */
  readonly partition?: { readonly buckets: number; readonly bucket: number };
}

/** The router-facing description of a shard; the topology layer places these on nodes. */
export interface VectorShardDescriptor {
  readonly id: string;
  readonly collection: string;
  readonly dims: number;
  readonly metric: VectorMetric;
  readonly location: ShardLocation;
  readonly key: ShardKey;
  /** Most live vectors; past it the stalest are evicted. */
  readonly maxSize?: number;
  /** Default time to live for vectors without `expiresAt` (hot session memory). */
  readonly ttlMs?: number;
}

/** A shard as the router holds it: its descriptor and the index that serves it. */
export interface VectorShard {
  readonly descriptor: VectorShardDescriptor;
  readonly index: VectorIndex;
}

/** Which shards a query may visit, beyond what the tenant and filter already imply. */
export interface RouteHint {
  readonly geo?: string;
  readonly entityTypes?: readonly string[];
  readonly tiers?: readonly FreshnessTier[];
  readonly jurisdictions?: readonly (string | null)[];
}

export interface RetrievalRequest extends SearchOptions {
  readonly vector: Float32Array | readonly number[];
  readonly k: number;
  readonly route?: RouteHint;
}

export interface ShardOutcome {
  readonly shard: string;
  readonly node: string;
  readonly hits: number;
  readonly ms: number;
  /** `ok`, or the error code the shard failed with. */
  readonly outcome: string;
}

export interface RetrievalResult {
  /** The merged top-k, nearest first; ties broken by id. */
  readonly hits: readonly VectorHit[];
  readonly shards: readonly ShardOutcome[];
  /** True when a shard that should have been searched failed: the hits may miss some. */
  readonly partial: boolean;
}

export interface CollectionDescription {
  readonly name: string;
  readonly dims: number;
  readonly metric: VectorMetric;
  readonly shards: readonly VectorShardDescriptor[];
}

/**
 * Collection-level retrieval over sharded indexes: what the `retrieve` stage and
 * `/v1/vectors/...` use. Placement (upsert) enforces residency: a vector tagged with a
 * jurisdiction goes only to shards whose key admits it on nodes of that jurisdiction.
 */
export interface VectorRetriever {
  collections(): readonly CollectionDescription[];
  describe(collection: string): CollectionDescription | undefined;
  search(collection: string, request: RetrievalRequest): Promise<RetrievalResult>;
  upsert(
    collection: string,
    records: readonly VectorRecord[],
    signal?: AbortSignal,
  ): Promise<UpsertResult>;
  delete(collection: string, tenant: string, ids: readonly string[]): Promise<number>;
  /** Every collection: the vectors of this user are gone when the promise resolves. */
  purgeUser(tenant: string, userId: string): Promise<number>;
  stats(collection?: string): Promise<readonly VectorShardStats[]>;
}

/** The policy tag of a stored vector; its purpose, if any, is the `purpose` attribute. */
export function vectorTag(meta: VectorMetadata): DataTag {
  const purpose = meta.attrs?.['purpose'];
  return {
    tenant: meta.tenant,
    label: meta.label,
    ...(typeof purpose === 'string' && (CONSENT_PURPOSES as readonly string[]).includes(purpose)
      ? { purpose: purpose as ConsentPurpose }
      : {}),
    ...(meta.userId === undefined ? {} : { userId: meta.userId }),
    ...(meta.jurisdiction === undefined ? {} : { jurisdiction: meta.jurisdiction }),
  };
}
