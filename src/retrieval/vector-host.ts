import { join } from 'node:path';
import type { Logger } from '../contracts/logger.js';
import type {
  FreshnessTier,
  VectorFilter,
  VectorIndex,
  VectorMetric,
  VectorShard,
  VectorShardDescriptor,
} from '../contracts/vector-index.js';
import { systemClock, type Clock } from '../core/clock.js';
import { systemRandom, type Random } from '../core/random.js';
import { ExactIndex } from './exact-index.js';
import type { LocalIndexOptions } from './local-index.js';
import { LocalIndex } from './local-index.js';
import { RemoteShard } from './remote-shard.js';
import { ScanPool } from './scan-pool.js';
import { ShardApi } from './shard-api.js';
import { ShardRouter, type RouterResidency } from './shard-router.js';
import { splitShard } from './shard-split.js';
import type { HnswParams } from './usearch-params.js';
import { UsearchShard } from './usearch-shard.js';

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
    this.api = new ShardApi(
      (id) => this.local.get(id)?.index,
      deps.clock ?? systemClock,
      deps.residency,
    );
  }

  static async open(settings: VectorHostSettings, deps: VectorHostDeps = {}): Promise<VectorHost> {
    const pool = settings.scanWorkers > 0 ? new ScanPool(settings.scanWorkers) : undefined;
    const shards = new Map<string, VectorShard[]>();
    for (const [name, c] of Object.entries(settings.collections)) {
      const list: VectorShard[] = [];
      for (const s of c.shards) {
        const descriptor = describeShard(name, c, s, settings);
        list.push({ descriptor, index: await openIndex(descriptor, c, s, settings, pool, deps) });
      }
      shards.set(name, list);
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

  /** Splits a local shard in two, online (see `splitShard`). */
  async split(collection: string, shardId: string): Promise<readonly VectorShard[]> {
    const c = this.settings.collections[collection];
    const declared = c?.shards.find((s) => s.id === shardId.split('.')[0]);
    const children = await splitShard(this.router, collection, shardId, (d) =>
      c === undefined || declared === undefined
        ? Promise.reject(new Error('unknown shard'))
        : openIndex(d, c, declared, this.settings, this.pool, this.deps),
    );
    this.local.delete(shardId);
    for (const s of children) this.local.set(s.descriptor.id, s);
    return children;
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
  }
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
  return UsearchShard.open({ ...options, hnsw: c.hnsw, view: settings.view });
}
