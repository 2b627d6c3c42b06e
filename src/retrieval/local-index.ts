import type {
  SearchOptions,
  UpsertResult,
  VectorFilter,
  VectorHit,
  VectorIndex,
  VectorMetadata,
  VectorMetric,
  VectorRecord,
  VectorShardStats,
} from '../contracts/vector-index.js';
import { systemClock, type Clock } from '../core/clock.js';
import { throwIfAborted } from '../core/deadline.js';
import { syError } from '../core/errors.js';
import { systemRandom, type Random } from '../core/random.js';
import { compileFilter, isEmptyFilter, searchPredicate, type MetaPredicate } from './filter.js';
import type { ScanPool } from './scan-pool.js';
import { SearchStats } from './search-stats.js';
import { readShardFiles, shardHeader, writeShardFiles, type LoadedShard } from './shard-files.js';
import { StaleHeap } from './stale-heap.js';
import { TopK } from './top-k.js';
import { validateRecord } from './validate.js';
import { distanceAt, normOf, toVector } from './vector-math.js';
import { VectorSlab } from './vector-slab.js';

export interface LocalIndexOptions {
  readonly id: string;
  readonly dims: number;
  readonly metric?: VectorMetric;
  readonly clock?: Clock;
  readonly random?: Random;
  /** Most live vectors; upserts past it evict the least recently updated. */
  readonly maxSize?: number;
  /** Default time to live of vectors without `expiresAt`. */
  readonly ttlMs?: number;
  /** How often expired vectors are swept out (they are never returned either way); 0: never. */
  readonly sweepMs?: number;
  /** Where `persist` writes and `open` reads. */
  readonly dir?: string;
  /** Worker threads for exact scans over many candidates; without it they run inline. */
  readonly scanPool?: ScanPool;
  /** Exact scans over more candidates than this go to `scanPool`. */
  readonly offloadAbove?: number;
  /** Filters leaving at most this many candidates are answered by an exact scan of them. */
  readonly exactBelow?: number;
}

export const MAX_K = 1000;
const DEFAULT_OFFLOAD_ABOVE = 20_000;
const DEFAULT_EXACT_BELOW = 2_048;
const SELECTIVITY_SAMPLES = 64;
const MAX_OVERFETCH = 8_192;

interface Entry {
  readonly id: string;
  readonly key: string;
  readonly meta: VectorMetadata;
}

/** Candidate slots with their distances, nearest first. */
export interface Candidates {
  readonly slots: readonly number[];
  readonly dists: readonly number[];
}

const keyOf = (tenant: string, id: string): string => `${tenant}\u0000${id}`;

/**
 * What every in-process shard shares: vectors in a shared slab, metadata per slot, postings by
 * tenant and user, TTL and size-cap eviction, filtering, exact scans, stats and persistence.
 * Subclasses add an ANN structure through the `ann*` hooks; without one every search is exact.
 *
 * Filtered search strategy (stated, see README "Vector retrieval"):
 * 1. Narrow to the smallest posting list the request names (the tenant, or the listed users).
 * 2. If at most `exactBelow` candidates remain, or there is no ANN, scan them exactly
 *    (a true pre-filter: only matching vectors are ever compared).
 * 3. Otherwise estimate the filter's selectivity `s` on a random sample of the shard and ask
 *    the ANN for `k / s × 1.5 + k` candidates, filter them, and grow ×4 until k pass; past
 *    `MAX_OVERFETCH`, or when the estimate says fewer than `exactBelow` match, fall back to step 2.
 */
export abstract class LocalIndex implements VectorIndex {
  readonly id: string;
  readonly dims: number;
  readonly metric: VectorMetric;
  protected readonly clock: Clock;
  protected readonly random: Random;
  protected readonly slab: VectorSlab;
  protected readonly entries: (Entry | undefined)[] = [];
  private readonly gens: number[] = [];
  private readonly byKey = new Map<string, number>();
  private readonly byTenant = new Map<string, Set<number>>();
  private readonly byUser = new Map<string, Set<number>>();
  private readonly expiring = new Set<number>();
  private readonly free: number[] = [];
  private stale = new StaleHeap();
  private live = 0;
  private evictedTotal = 0;
  private expiredTotal = 0;
  private readonly searchStats: SearchStats;
  private readonly sweeper: NodeJS.Timeout | undefined;
  protected closed = false;

  constructor(protected readonly options: LocalIndexOptions) {
    this.id = options.id;
    this.dims = options.dims;
    this.metric = options.metric ?? 'cos';
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? systemRandom;
    this.slab = new VectorSlab(options.dims);
    this.searchStats = new SearchStats(this.clock);
    const sweepMs = options.sweepMs ?? (options.ttlMs === undefined ? 0 : 1_000);
    if (sweepMs > 0) {
      this.sweeper = setInterval(() => this.sweep(), sweepMs);
      this.sweeper.unref();
    }
  }

  // --- ANN hooks -------------------------------------------------------------------------
  /** Whether searches may use the ANN structure now. */
  protected abstract annReady(): boolean;
  /** Indexes these slots' rows (already in the slab). */
  protected abstract annAdd(slots: readonly number[]): void;
  protected abstract annRemove(slots: readonly number[]): void;
  /** The `count` nearest slots by ANN, nearest first (all tenants, no filter). */
  protected abstract annSearch(query: Float32Array, count: number): Candidates;
  /** Called before any mutation (a memory-mapped view becomes a writable copy). */
  protected abstract annWritable(): void;
  protected abstract annSave(path: string): void;

  // --- writes ----------------------------------------------------------------------------
  upsert(records: readonly VectorRecord[], signal?: AbortSignal): Promise<UpsertResult> {
    return settle(() => this.upsertNow(records, signal));
  }

  private upsertNow(records: readonly VectorRecord[], signal?: AbortSignal): UpsertResult {
    if (signal !== undefined) throwIfAborted(signal);
    this.assertOpen();
    const now = this.clock.wall();
    // Validate the whole batch first: it is stored entirely or not at all.
    const batch = new Map<string, { id: string; vector: Float32Array; meta: VectorMetadata }>();
    records.forEach((r, i) => {
      const meta = validateRecord(r, i);
      const vector = toVector(r.vector, this.dims, `records[${i}].vector`);
      const withTtl =
        meta.expiresAt === undefined && this.options.ttlMs !== undefined
          ? { ...meta, expiresAt: now + this.options.ttlMs }
          : meta;
      batch.set(keyOf(meta.tenant, r.id), { id: r.id, vector, meta: withTtl });
    });
    if (batch.size === 0) return { inserted: 0, updated: 0, evicted: 0 };
    this.annWritable();
    let inserted = 0;
    let updated = 0;
    const replaced: number[] = [];
    const added: number[] = [];
    for (const [key, r] of batch) {
      let slot = this.byKey.get(key);
      if (slot !== undefined) {
        this.unindexSlot(slot);
        replaced.push(slot);
        updated++;
      } else {
        slot = this.free.pop() ?? this.entries.length;
        this.live++;
        inserted++;
      }
      this.slab.set(slot, r.vector);
      this.entries[slot] = { id: r.id, key, meta: r.meta };
      this.gens[slot] = (this.gens[slot] ?? 0) + 1;
      this.indexSlot(slot);
      added.push(slot);
    }
    if (replaced.length > 0) this.annRemove(replaced);
    this.annAdd(added);
    const evicted = this.enforceCap();
    return { inserted, updated, evicted };
  }

  delete(tenant: string, ids: readonly string[]): Promise<number> {
    return settle(() => {
      this.assertOpen();
      const slots = ids
        .map((id) => this.byKey.get(keyOf(tenant, id)))
        .filter((s): s is number => s !== undefined);
      return this.removeSlots(slots);
    });
  }

  deleteWhere(tenant: string, filter: VectorFilter): Promise<number> {
    return settle(() => {
      this.assertOpen();
      // Expired vectors match too: a purge must not leave anything behind.
      const accept = compileFilter(tenant, filter, -Infinity);
      const slots = [...this.postings(tenant, filter)].filter((s) => accept(this.entries[s]!.meta));
      return this.removeSlots(slots);
    });
  }

  purgeUser(tenant: string, userId: string): Promise<number> {
    return this.deleteWhere(tenant, { userIds: [userId] });
  }

  /** Removes expired vectors now; returns how many. */
  sweep(): number {
    if (this.closed || this.expiring.size === 0) return 0;
    const now = this.clock.wall();
    const gone: number[] = [];
    for (const slot of this.expiring) {
      const e = this.entries[slot];
      if (e?.meta.expiresAt !== undefined && e.meta.expiresAt <= now) gone.push(slot);
    }
    if (gone.length === 0) return 0;
    this.annWritable();
    this.expiredTotal += gone.length;
    return this.removeSlots(gone);
  }

  // --- reads -----------------------------------------------------------------------------
  async search(query: Float32Array, k: number, options: SearchOptions): Promise<VectorHit[]> {
    this.assertOpen();
    if (!Number.isInteger(k) || k < 1 || k > MAX_K) {
      throw syError('SY_ERR_VECTOR_INVALID', `k must be a whole number from 1 to ${MAX_K}`);
    }
    if (options.signal !== undefined) throwIfAborted(options.signal);
    const q = toVector(query, this.dims, 'query');
    const startedAt = this.clock.now();
    const accept = searchPredicate(options, this.clock.wall());
    let found: Candidates;
    const viaAnn = this.annReady() ? this.searchAnn(q, k, options, accept) : undefined;
    if (viaAnn !== undefined) found = viaAnn;
    else {
      const slots = [...this.postings(options.tenant, options.filter)].filter((s) =>
        accept(this.entries[s]!.meta),
      );
      found = await this.exact(q, k, slots);
      if (options.signal !== undefined) throwIfAborted(options.signal);
      // A worker scan may have raced a write: keep only slots that still match, re-scored.
      if (slots.length > this.offloadAbove) found = this.rescore(q, found, accept);
    }
    this.searchStats.record(startedAt);
    return found.slots.map((slot, i) => {
      const e = this.entries[slot]!;
      return { id: e.id, distance: found.dists[i]!, meta: e.meta };
    });
  }

  get(tenant: string, id: string): Promise<VectorRecord | undefined> {
    return settle(() => {
      this.assertOpen();
      const slot = this.byKey.get(keyOf(tenant, id));
      const e = slot === undefined ? undefined : this.entries[slot];
      if (slot === undefined || e === undefined) return undefined;
      if (e.meta.expiresAt !== undefined && e.meta.expiresAt <= this.clock.wall()) return undefined;
      return { id: e.id, vector: this.slab.copy(slot), meta: e.meta };
    });
  }

  /** Every live record (rebalancing and rebuilds read this), in slot order. */
  *records(): Generator<VectorRecord> {
    for (let slot = 0; slot < this.entries.length; slot++) {
      const e = this.entries[slot];
      if (e !== undefined) yield { id: e.id, vector: this.slab.copy(slot), meta: e.meta };
    }
  }

  size(): Promise<number> {
    return Promise.resolve(this.live);
  }

  liveCount(): number {
    return this.live;
  }

  /** Vectors the tenant holds here (expired ones not yet swept included): what tenant caps count. */
  tenantSize(tenant: string): number {
    return this.byTenant.get(tenant)?.size ?? 0;
  }

  /** Vectors held per tenant. */
  tenantSizes(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [tenant, slots] of this.byTenant) out.set(tenant, slots.size);
    return out;
  }

  /** Whether `(tenant, id)` is stored here (an upsert of it replaces, taking no room). */
  holds(tenant: string, id: string): boolean {
    return this.byKey.has(keyOf(tenant, id));
  }

  stats(): Promise<VectorShardStats> {
    return Promise.resolve({
      id: this.id,
      size: this.live,
      qps: this.searchStats.qps(),
      p95Ms: this.searchStats.p95(),
      searches: this.searchStats.searches,
      ...(this.searchStats.recall === undefined ? {} : { recall: this.searchStats.recall }),
      evictedTotal: this.evictedTotal,
      expiredTotal: this.expiredTotal,
    });
  }

  /**
   * Recall@k of the ANN against an exact scan, on `samples` stored vectors used as queries
   * (all tenants, no filter). Exact indexes report 1. The result shows in `stats().recall`.
   */
  async probeRecall(samples = 32, k = 10): Promise<number> {
    const liveSlots = this.liveSlots();
    if (!this.annReady() || liveSlots.length === 0) {
      this.searchStats.recall = 1;
      return 1;
    }
    let found = 0;
    let wanted = 0;
    for (let i = 0; i < samples; i++) {
      const slot = liveSlots[Math.floor(this.random() * liveSlots.length)]!;
      const q = this.slab.copy(slot);
      const truth = await this.exact(q, k, liveSlots);
      const got = new Set(this.annSearch(q, k).slots);
      // Ties at the k-th distance count as found when the ANN returned an equally near slot.
      wanted += truth.slots.length;
      for (const s of truth.slots) if (got.has(s)) found++;
    }
    const recall = wanted === 0 ? 1 : found / wanted;
    this.searchStats.recall = recall;
    return recall;
  }

  // --- persistence -----------------------------------------------------------------------
  async persist(): Promise<void> {
    const dir = this.options.dir;
    if (dir === undefined) return;
    this.assertOpen();
    const entries: [number, string, VectorMetadata][] = [];
    this.entries.forEach((e, slot) => {
      if (e !== undefined) entries.push([slot, e.id, e.meta]);
    });
    const rows = this.entries.length;
    const header = shardHeader(this.id, this.dims, this.metric, rows, entries);
    // A consistent copy taken now; writes may continue while the files are written.
    const vectors = this.slab.data.slice(0, rows * this.dims);
    await writeShardFiles(dir, header, vectors, this.hasAnn() ? (p) => this.annSave(p) : undefined);
  }

  /** Loads the persisted generation into this (empty) index; returns it for the ANN to attach. */
  protected async restore(): Promise<LoadedShard | undefined> {
    const dir = this.options.dir;
    if (dir === undefined) return undefined;
    const loaded = await readShardFiles(dir);
    if (loaded === undefined) return undefined;
    const { header, vectors } = loaded;
    if (header.dims !== this.dims || header.metric !== this.metric) {
      throw syError(
        'SY_ERR_VECTOR_INVALID',
        `shard ${this.id} on disk is ${header.dims}-d ${header.metric}, configured ${this.dims}-d ${this.metric}`,
      );
    }
    this.slab.ensure(header.rows);
    this.slab.data.set(vectors.subarray(0, header.rows * this.dims));
    for (let slot = 0; slot < header.rows; slot++)
      this.slab.norms[slot] = normOf(this.slab.data, slot * this.dims, this.dims);
    for (const [slot, id, meta] of header.entries) {
      this.entries[slot] = { id, key: keyOf(meta.tenant, id), meta };
      this.gens[slot] = 1;
      this.indexSlot(slot);
      this.live++;
    }
    this.entries.length = header.rows;
    for (let slot = header.rows - 1; slot >= 0; slot--)
      if (this.entries[slot] === undefined) this.free.push(slot);
    return loaded;
  }

  async close(): Promise<void> {
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.closed = true;
    return Promise.resolve();
  }

  // --- internals -------------------------------------------------------------------------
  protected abstract hasAnn(): boolean;

  private get offloadAbove(): number {
    return this.options.offloadAbove ?? DEFAULT_OFFLOAD_ABOVE;
  }

  private assertOpen(): void {
    if (this.closed) throw syError('SY_ERR_VECTOR_SHARD_UNAVAILABLE', `${this.id} is closed`);
  }

  protected liveSlots(): number[] {
    const out: number[] = [];
    this.entries.forEach((e, slot) => {
      if (e !== undefined) out.push(slot);
    });
    return out;
  }

  /** The smallest posting list that holds every possible match. */
  private postings(tenant: string, filter: VectorFilter | undefined): Iterable<number> {
    const all = this.byTenant.get(tenant);
    if (all === undefined) return [];
    if (filter?.userIds === undefined) return all;
    const users = new Set<number>();
    for (const u of filter.userIds)
      for (const s of this.byUser.get(keyOf(tenant, u)) ?? []) users.add(s);
    return users.size < all.size ? users : all;
  }

  private searchAnn(
    q: Float32Array,
    k: number,
    options: SearchOptions,
    accept: MetaPredicate,
  ): Candidates | undefined {
    const exactBelow = this.options.exactBelow ?? DEFAULT_EXACT_BELOW;
    const narrowed = this.postings(options.tenant, options.filter);
    const narrowedSize = narrowed instanceof Set ? narrowed.size : 0;
    if (narrowedSize <= exactBelow) return undefined;
    let selectivity = narrowedSize / Math.max(1, this.live);
    if (!isEmptyFilter(options))
      selectivity = Math.min(selectivity, this.sampleSelectivity(accept));
    if (selectivity * this.live <= exactBelow) return undefined;
    const floor = Math.max(k, options.ef ?? 0);
    // Everything passes (one tenant, no filter): the graph's own top k are the answer.
    const overfetch = selectivity >= 0.999 ? 0 : Math.ceil((k / selectivity) * 1.5) + k;
    let count = Math.min(this.live, Math.max(floor, overfetch));
    for (;;) {
      const raw = this.annSearch(q, count);
      const slots: number[] = [];
      const dists: number[] = [];
      for (let i = 0; i < raw.slots.length && slots.length < k; i++) {
        const e = this.entries[raw.slots[i]!];
        if (e !== undefined && accept(e.meta)) {
          slots.push(raw.slots[i]!);
          dists.push(raw.dists[i]!);
        }
      }
      if (slots.length >= k || count >= this.live) return { slots, dists };
      count = Math.min(this.live, count * 4);
      if (count > MAX_OVERFETCH) return undefined;
    }
  }

  /** Share of a random sample of live vectors that pass, with a floor of one sample's worth. */
  private sampleSelectivity(accept: MetaPredicate): number {
    const n = this.entries.length;
    let seen = 0;
    let passed = 0;
    for (let tries = 0; seen < SELECTIVITY_SAMPLES && tries < SELECTIVITY_SAMPLES * 4; tries++) {
      const e = this.entries[Math.floor(this.random() * n)];
      if (e === undefined) continue;
      seen++;
      if (accept(e.meta)) passed++;
    }
    return seen === 0 ? 0 : Math.max(passed, 0.5) / seen;
  }

  private async exact(q: Float32Array, k: number, slots: readonly number[]): Promise<Candidates> {
    if (slots.length > this.offloadAbove && this.options.scanPool !== undefined) {
      const [r] = await this.options.scanPool.scan({
        data: this.slab.data,
        norms: this.slab.norms,
        dims: this.dims,
        metric: this.metric,
        slots: Int32Array.from(slots),
        all: 0,
        queries: q,
        k,
      });
      return r ?? { slots: [], dists: [] };
    }
    const top = new TopK(k);
    const qNorm = normOf(q);
    const { data, norms } = this.slab;
    for (const slot of slots) {
      const d = distanceAt(this.metric, q, qNorm, data, slot * this.dims, this.dims, norms[slot]!);
      if (d < top.worst()) top.push(slot, d);
    }
    const sorted = top.sorted();
    return { slots: sorted.map((s) => s.slot), dists: sorted.map((s) => s.dist) };
  }

  private rescore(q: Float32Array, found: Candidates, accept: MetaPredicate): Candidates {
    const qNorm = normOf(q);
    const kept = found.slots
      .filter((s) => this.entries[s] !== undefined && accept(this.entries[s].meta))
      .map((slot) => ({
        slot,
        dist: distanceAt(
          this.metric,
          q,
          qNorm,
          this.slab.data,
          slot * this.dims,
          this.dims,
          this.slab.norms[slot]!,
        ),
      }))
      .sort((a, b) => a.dist - b.dist);
    return { slots: kept.map((x) => x.slot), dists: kept.map((x) => x.dist) };
  }

  private indexSlot(slot: number): void {
    const e = this.entries[slot]!;
    this.byKey.set(e.key, slot);
    addTo(this.byTenant, e.meta.tenant, slot);
    if (e.meta.userId !== undefined) addTo(this.byUser, keyOf(e.meta.tenant, e.meta.userId), slot);
    if (e.meta.expiresAt !== undefined) this.expiring.add(slot);
    if (this.options.maxSize !== undefined)
      this.stale.push(e.meta.updatedAt, slot, this.gens[slot] ?? 0);
  }

  private unindexSlot(slot: number): void {
    const e = this.entries[slot]!;
    this.byKey.delete(e.key);
    removeFrom(this.byTenant, e.meta.tenant, slot);
    if (e.meta.userId !== undefined)
      removeFrom(this.byUser, keyOf(e.meta.tenant, e.meta.userId), slot);
    this.expiring.delete(slot);
  }

  private removeSlots(slots: readonly number[]): number {
    if (slots.length === 0) return 0;
    this.annWritable();
    const unique = [...new Set(slots)].filter((s) => this.entries[s] !== undefined);
    for (const slot of unique) {
      this.unindexSlot(slot);
      this.entries[slot] = undefined;
      this.gens[slot] = (this.gens[slot] ?? 0) + 1;
      this.free.push(slot);
      this.live--;
    }
    this.annRemove(unique);
    return unique.length;
  }

  /** Evicts the least recently updated vectors until the shard is within its cap. */
  private enforceCap(): number {
    const cap = this.options.maxSize;
    if (cap === undefined || this.live <= cap) {
      if (this.stale.length > 2 * this.live + 1024) this.rebuildStale();
      return 0;
    }
    const victims: number[] = [];
    while (this.live - victims.length > cap) {
      const top = this.stale.pop();
      if (top === undefined) break;
      if (this.entries[top.slot] !== undefined && this.gens[top.slot] === top.gen)
        victims.push(top.slot);
    }
    const n = this.removeSlots(victims);
    this.evictedTotal += n;
    return n;
  }

  private rebuildStale(): void {
    this.stale = new StaleHeap();
    this.entries.forEach((e, slot) => {
      if (e !== undefined) this.stale.push(e.meta.updatedAt, slot, this.gens[slot] ?? 0);
    });
  }
}

/** Runs synchronous work so that its throw becomes a rejection, as the contract promises. */
function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error('non-error thrown'));
  }
}

function addTo(map: Map<string, Set<number>>, key: string, slot: number): void {
  let s = map.get(key);
  if (s === undefined) map.set(key, (s = new Set()));
  s.add(slot);
}

function removeFrom(map: Map<string, Set<number>>, key: string, slot: number): void {
  const s = map.get(key);
  if (s === undefined) return;
  s.delete(slot);
  if (s.size === 0) map.delete(key);
}
