import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../contracts/logger.js';
import type {
  FreshnessTier,
  RetrievalRequest,
  RetrievalResult,
  VectorFilter,
  VectorIndex,
  UpsertResult,
  VectorMetric,
  VectorRecord,
  VectorShard,
  VectorShardDescriptor,
} from '../contracts/vector-index.js';
import { systemClock, type Clock } from '../core/clock.js';
import { syError } from '../core/errors.js';
import { systemRandom, type Random } from '../core/random.js';
import { ExactIndex } from './exact-index.js';
import type { LocalIndexOptions } from './local-index.js';
import { LocalIndex } from './local-index.js';
import { RemoteShard } from './remote-shard.js';
import { ScanPool } from './scan-pool.js';
import { ShardApi } from './shard-api.js';
import { ShardRouter, type RouterResidency } from './shard-router.js';
import { childDescriptors, splitShard, type SplitOptions } from './shard-split.js';
import type { HnswParams } from './usearch-params.js';
import { sumUpserts } from './shard-totals.js';
import { UsearchShard } from './usearch-shard.js';
import { admitVectors, guardSearch, TenantVectorCount, type VectorRules } from './vector-rules.js';
import { extend } from '../core/objects.js';

/** One shard as declared (the `vectors.collections.<c>.shards[]` config, secrets resolved). */
export interface ShardSettings {
  readonly id: string;
  readonly tier: FreshnessTier;
  readonly index?: 'hnsw' | 'exact' | undefined;
  readonly tenants?: readonly string[] | undefined;
  readonly geos?: readonly string[] | undefined;
  readonly jurisdictions?: readonly (string | null)[] | undefined;
  readonly entityTypes?: readonly string[] | undefined;
  /** The node holding it; default: this node. */
  readonly node?: string | undefined;
  /** That node's gateway URL (remote shards). */
  readonly url?: string | undefined;
  readonly apiKey?: string | undefined;
  readonly maxSize?: number | undefined;
  readonly ttlMs?: number | undefined;
}

export interface CollectionSettings {
  readonly dims: number;
  readonly metric: VectorMetric;
  readonly index: 'hnsw' | 'exact';
  readonly hnsw: HnswParams;
  readonly shards: readonly ShardSettings[];
}

export interface VectorHostSettings {
  readonly node: string;
  /** Where local shards persist (one directory per shard); absent: memory only. */
  readonly dataDir?: string | undefined;
  readonly scanWorkers: number;
  /** Reopen persisted HNSW files memory-mapped. */
  readonly view: boolean;
  readonly remoteTimeoutMs: number;
  readonly collections: Readonly<Record<string, CollectionSettings>>;
}

export interface VectorHostDeps {
  readonly clock?: Clock;
  readonly random?: Random;
  readonly residency?: RouterResidency;
  readonly logger?: Logger;
}

/**
 * The vector side of one gateway node: its local shards (opened from disk), clients for the
 * shards other nodes hold, the router over both, and the shard API other nodes call.
 */
export class VectorHost {
  readonly router: ShardRouter;
  readonly api: ShardApi;
  /** Vectors per tenant in this node's shards: what `vectors.max_per_tenant` caps. */
  readonly count: TenantVectorCount;
  private readonly local = new Map<string, VectorShard>();

  private constructor(
    private readonly settings: VectorHostSettings,
    shards: Map<string, VectorShard[]>,
    private readonly pool: ScanPool | undefined,
    private readonly deps: VectorHostDeps,
  ) {
    this.router = new ShardRouter(
      Object.entries(settings.collections).map(([name, c]) => ({
        name,
        dims: c.dims,
        metric: c.metric,
        shards: shards.get(name) ?? [],
      })),
      {
        node: settings.node,
        ...(deps.residency === undefined ? {} : { residency: deps.residency }),
        ...(deps.clock === undefined ? {} : { clock: deps.clock }),
      },
    );
    for (const list of shards.values())
      for (const s of list)
        if (s.descriptor.location.kind === 'local') this.local.set(s.descriptor.id, s);
    this.count = new TenantVectorCount(() => this.localIndexes());
    this.api = new ShardApi(
      (id) => this.local.get(id)?.index,
      deps.clock ?? systemClock,
      deps.residency,
      this.count,
    );
  }

  /**
   * The collection routes' write: the policy module admits every record, then the router places
   * them, the tenant's cap checked in the tick that writes (#13, findings 2 and 8).
   */
  async upsert(
    collection: string,
    records: readonly VectorRecord[],
    rules: VectorRules,
    signal?: AbortSignal,
  ): Promise<UpsertResult> {
    admitVectors(rules.policy, records);
    return this.router.upsert(collection, records, signal, (writes) =>
      this.count.ensureRoom(writes, rules.maxPerTenant),
    );
  }

  /** The collection routes' search, with the policy module's retrieval guard on every shard. */
  search(
    collection: string,
    request: RetrievalRequest,
    rules: VectorRules,
  ): Promise<RetrievalResult> {
    return this.router.search(collection, {
      ...request,
      ...guardSearch(rules.policy, request.tenant, request.filter),
    });
  }

  /** Every in-process index, shards being split included (their copies count while they last). */
  private *localIndexes(): Generator<VectorIndex> {
    for (const c of this.router.collections())
      for (const s of this.router.shards(c.name))
        if (s.descriptor.location.kind === 'local') yield s.index;
  }

  /**
   * Opens every declared shard. A shard split earlier (`split`) is reopened as its persisted
   * children, recursively, so a rebalance survives restarts. With a data directory, the host
   * holds `<dataDir>/LOCK` (its pid) while open: a second process on the same files is refused.
   */
  static async open(settings: VectorHostSettings, deps: VectorHostDeps = {}): Promise<VectorHost> {
    if (settings.dataDir !== undefined) await lockDataDir(settings.dataDir);
    const pool = settings.scanWorkers > 0 ? new ScanPool(settings.scanWorkers) : undefined;
    const shards = new Map<string, VectorShard[]>();
    try {
      for (const [name, c] of Object.entries(settings.collections)) {
        const list: VectorShard[] = [];
        for (const s of c.shards) {
          const open = async (descriptor: VectorShardDescriptor): Promise<void> => {
            const kids = childDescriptors(descriptor);
            const dir = settings.dataDir;
            if (
              dir !== undefined &&
              descriptor.location.kind === 'local' &&
              kids.every((k) => existsSync(join(dir, name, k.id, 'CURRENT')))
            ) {
              // Split and persisted: the children hold everything; a parent left by a crash
              // between the two steps is stale.
              await rm(join(dir, name, descriptor.id), { recursive: true, force: true });
              for (const k of kids) await open(k);
              return;
            }
            list.push({
              descriptor,
              index: await openIndex(descriptor, c, s, settings, pool, deps),
            });
          };
          await open(describeShard(name, c, s, settings));
        }
        shards.set(name, list);
      }
    } catch (err) {
      await pool?.close();
      if (settings.dataDir !== undefined) await unlockDataDir(settings.dataDir);
      throw err;
    }
    return new VectorHost(settings, shards, pool, deps);
  }

  /** Wall-clock ms of the host's clock (default times of records written through the API). */
  wall(): number {
    return (this.deps.clock ?? systemClock).wall();
  }

  /** Deletes matching vectors of a tenant in every collection (consent purges). */
  async purgeWhere(tenant: string, filter: VectorFilter): Promise<number> {
    let n = 0;
    for (const c of this.router.collections())
      for (const s of this.router.shards(c.name)) {
        const t = s.descriptor.key.tenants;
        if (t === undefined || t.includes(tenant)) n += await s.index.deleteWhere(tenant, filter);
      }
    return n;
  }

  /**
   * Splits a local shard in two, online (see `splitShard`): queries keep being answered
   * throughout. With a data directory the children are persisted and then the parent's files
   * removed, so the new layout is what the next start opens.
   */
  async split(
    collection: string,
    shardId: string,
    options: SplitOptions = {},
  ): Promise<readonly VectorShard[]> {
    const c = this.settings.collections[collection];
    if (c === undefined) throw syError('SY_ERR_VECTOR_COLLECTION_NOT_FOUND', collection);
    const declared = c.shards.find((s) => s.id === shardId.split('.')[0]);
    if (declared === undefined || !this.local.has(shardId))
      throw syError('SY_ERR_VECTOR_SHARD_NOT_FOUND', shardId);
    const children = await splitShard(
      this.router,
      collection,
      shardId,
      (d) => openIndex(d, c, declared, this.settings, this.pool, this.deps),
      options,
    );
    this.local.delete(shardId);
    for (const s of children) this.local.set(s.descriptor.id, s);
    const dir = this.settings.dataDir;
    if (dir !== undefined) {
      for (const s of children) await s.index.persist();
      await rm(join(dir, collection, shardId), { recursive: true, force: true });
    }
    return children;
  }

  /**
   * Loads many records: each goes to the shard the router places it on (key, residency); HNSW
   * shards build their graph in a worker (`UsearchShard.bulkLoad`), others take chunked upserts.
   * Persists the shards it wrote to.
   */
  async bulkLoad(
    collection: string,
    records: readonly VectorRecord[],
    onProgress?: (shard: string, done: number, total: number) => void,
  ): Promise<UpsertResult> {
    const byShard = new Map<VectorShard, VectorRecord[]>();
    for (const r of records) {
      const shard = this.router.placeOf(collection, r);
      let list = byShard.get(shard);
      if (list === undefined) byShard.set(shard, (list = []));
      list.push(r);
    }
    const parts: UpsertResult[] = [];
    for (const [shard, list] of byShard) {
      const id = shard.descriptor.id;
      if (shard.index instanceof UsearchShard && list.length >= BULK_BUILD_FROM) {
        parts.push(
          await shard.index.bulkLoad(list, {
            ...(onProgress === undefined ? {} : { onProgress: (d, t) => onProgress(id, d, t) }),
          }),
        );
      } else {
        for (let i = 0; i < list.length; i += UPSERT_CHUNK) {
          parts.push(await shard.index.upsert(list.slice(i, i + UPSERT_CHUNK)));
          onProgress?.(id, Math.min(i + UPSERT_CHUNK, list.length), list.length);
        }
      }
      if (shard.descriptor.location.kind === 'local') await shard.index.persist();
    }
    return sumUpserts(parts);
  }

  /** Recall probes on every local HNSW shard; the results show in shard stats. */
  async probeRecall(samples = 16): Promise<void> {
    for (const s of this.local.values())
      if (s.index instanceof LocalIndex) await s.index.probeRecall(samples);
  }

  async persistAll(): Promise<void> {
    for (const s of this.local.values()) await s.index.persist();
  }

  async close(): Promise<void> {
    try {
      await this.persistAll();
    } catch (err) {
      this.deps.logger?.error({ err }, 'vector shards could not be persisted on close');
    }
    await this.router.close();
    await this.pool?.close();
    if (this.settings.dataDir !== undefined) await unlockDataDir(this.settings.dataDir);
  }
}

/** Below this many records for one HNSW shard, plain upserts beat a worker build. */
const BULK_BUILD_FROM = 2_000;
const UPSERT_CHUNK = 1_000;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Data directories this process holds (two hosts in one process must not share one either). */
const heldDirs = new Set<string>();

/** Takes `<dir>/LOCK` (exclusive create); a lock whose process is gone is taken over. */
async function lockDataDir(dir: string): Promise<void> {
  if (heldDirs.has(dir))
    throw syError(
      'SY_ERR_VECTOR_SHARD_UNAVAILABLE',
      `vector data directory ${dir} is in use by process ${process.pid}`,
    );
  heldDirs.add(dir);
  try {
    await takeLock(dir);
  } catch (err) {
    heldDirs.delete(dir);
    throw err;
  }
}

async function takeLock(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const lock = join(dir, 'LOCK');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(lock, String(process.pid), { flag: 'wx' });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number((await readFile(lock, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && pidAlive(holder))
        throw syError(
          'SY_ERR_VECTOR_SHARD_UNAVAILABLE',
          `vector data directory ${dir} is in use by process ${holder}`,
        );
      await rm(lock, { force: true });
    }
  }
  throw syError('SY_ERR_VECTOR_SHARD_UNAVAILABLE', `could not lock ${dir}`);
}

async function unlockDataDir(dir: string): Promise<void> {
  heldDirs.delete(dir);
  const lock = join(dir, 'LOCK');
  const holder = (await readFile(lock, 'utf8').catch(() => '')).trim();
  if (holder === String(process.pid)) await rm(lock, { force: true });
}

function describeShard(
  collection: string,
  c: CollectionSettings,
  s: ShardSettings,
  settings: VectorHostSettings,
): VectorShardDescriptor {
  const node = s.node ?? settings.node;
  const remote = node !== settings.node;
  return {
    id: s.id,
    collection,
    dims: c.dims,
    metric: c.metric,
    location: remote ? { kind: 'remote', node, url: s.url ?? '' } : { kind: 'local', node },
    key: {
      tier: s.tier,
      ...(s.tenants === undefined ? {} : { tenants: s.tenants }),
      ...(s.geos === undefined ? {} : { geos: s.geos }),
      ...(s.jurisdictions === undefined ? {} : { jurisdictions: s.jurisdictions }),
      ...(s.entityTypes === undefined ? {} : { entityTypes: s.entityTypes }),
    },
    ...(s.maxSize === undefined ? {} : { maxSize: s.maxSize }),
    ...(s.ttlMs === undefined ? {} : { ttlMs: s.ttlMs }),
  };
}

async function openIndex(
  d: VectorShardDescriptor,
  c: CollectionSettings,
  s: ShardSettings,
  settings: VectorHostSettings,
  pool: ScanPool | undefined,
  deps: VectorHostDeps,
): Promise<VectorIndex> {
  if (d.location.kind === 'remote') {
    return new RemoteShard({
      id: d.id,
      dims: d.dims,
      metric: d.metric,
      url: d.location.url,
      node: settings.node,
      timeoutMs: settings.remoteTimeoutMs,
      ...(s.apiKey === undefined ? {} : { apiKey: s.apiKey }),
    });
  }
  const options: LocalIndexOptions = {
    id: d.id,
    dims: d.dims,
    metric: d.metric,
    clock: deps.clock ?? systemClock,
    random: deps.random ?? systemRandom,
    ...(d.maxSize === undefined ? {} : { maxSize: d.maxSize }),
    ...(d.ttlMs === undefined ? {} : { ttlMs: d.ttlMs }),
    ...(settings.dataDir === undefined ? {} : { dir: join(settings.dataDir, d.collection, d.id) }),
    ...(pool === undefined ? {} : { scanPool: pool }),
  };
  if ((s.index ?? c.index) === 'exact') return ExactIndex.open(options);
  return UsearchShard.open(extend(options, { hnsw: c.hnsw, view: settings.view }));
}
