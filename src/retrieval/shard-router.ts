import type { Residency } from '../contracts/policy.js';
import type {
  CollectionDescription,
  RetrievalRequest,
  RetrievalResult,
  ShardOutcome,
  UpsertResult,
  VectorHit,
  VectorIndex,
  VectorMetric,
  VectorRecord,
  VectorRetriever,
  VectorShard,
  VectorShardStats,
} from '../contracts/vector-index.js';
import { systemClock, type Clock } from '../core/clock.js';
import { throwIfAborted } from '../core/deadline.js';
import { syError, toSwitchyardError } from '../core/errors.js';
import { mergeTopK } from './top-k.js';
import { filterForKey, keyAdmits, keyMayMatch, specificity } from './shard-key.js';
import { sumUpserts } from './shard-totals.js';
import { toVector } from './vector-math.js';
import { extend } from '../core/objects.js';

/** The residency view the router needs (the privacy module's `Residency` fits). */
export type RouterResidency = Pick<Residency, 'node' | 'mayHold' | 'localJurisdictions'>;

export interface RouterCollection {
  readonly name: string;
  readonly dims: number;
  readonly metric: VectorMetric;
  readonly shards: readonly VectorShard[];
}

export interface ShardRouterOptions {
  /** This gateway node's id: local shards live here. */
  readonly node: string;
  readonly residency?: RouterResidency;
  readonly clock?: Clock;
}

/** A shard as the router tracks it: searches in flight, and where its data is moving. */
interface Slot {
  readonly shard: VectorShard;
  inFlight: number;
  /** Set while the shard is being split: new writes go to these, reads visit both. */
  splitInto: readonly Slot[] | undefined;
  idle: (() => void) | undefined;
}

interface Collection {
  readonly name: string;
  readonly dims: number;
  readonly metric: VectorMetric;
  slots: readonly Slot[];
}

/**
 * Routes requests over a collection's shards. Writes go to the one shard whose key admits the
 * record most specifically (residency: tagged data only to shards on its jurisdiction's nodes).
 * Searches visit only the shards that could hold a match (tenant, geo, entity type, tier,
 * jurisdiction), ask each for its own top k under the same filter, and merge: the global top k
 * is always within the union of the per-shard top k.
 */
export class ShardRouter implements VectorRetriever {
  private readonly byName = new Map<string, Collection>();
  private readonly clock: Clock;

  constructor(
    collections: readonly RouterCollection[],
    private readonly options: ShardRouterOptions,
  ) {
    this.clock = options.clock ?? systemClock;
    for (const c of collections) {
      this.byName.set(c.name, {
        name: c.name,
        dims: c.dims,
        metric: c.metric,
        slots: c.shards.map((shard) => newSlot(shard)),
      });
    }
  }

  collections(): readonly CollectionDescription[] {
    return [...this.byName.keys()].map((n) => this.describe(n)!);
  }

  describe(collection: string): CollectionDescription | undefined {
    const c = this.byName.get(collection);
    if (c === undefined) return undefined;
    return {
      name: c.name,
      dims: c.dims,
      metric: c.metric,
      shards: c.slots.map((s) => s.shard.descriptor),
    };
  }

  /** The shards of a collection (including any being split), for admin and rebalance. */
  shards(collection: string): readonly VectorShard[] {
    return this.get(collection).slots.map((s) => s.shard);
  }

  async search(collection: string, request: RetrievalRequest): Promise<RetrievalResult> {
    const c = this.get(collection);
    const query = toVector(request.vector, c.dims, 'vector');
    if (request.signal !== undefined) throwIfAborted(request.signal);
    const targets = c.slots.filter((s) => keyMayMatch(s.shard.descriptor.key, request));
    const residency = this.options.residency;
    const results = await Promise.all(
      targets.map(async (slot): Promise<{ hits: VectorHit[]; outcome: ShardOutcome }> => {
        const d = slot.shard.descriptor;
        const started = this.clock.now();
        slot.inFlight++;
        try {
          let options: RetrievalRequest = request;
          const filter = filterForKey(d.key, request.filter);
          if (filter !== request.filter) {
            const { filter: _all, ...rest } = request;
            options = filter === undefined ? rest : extend(rest, { filter });
          }
          if (residency !== undefined && d.location.kind === 'remote') {
            // Ask a remote shard only for data this node may hold (the shard enforces it too).
            const local = residency.localJurisdictions();
            const wanted = request.filter?.jurisdictions;
            const jurisdictions =
              wanted === undefined ? local : wanted.filter((j) => local.includes(j));
            options = extend(options, { filter: extend(options.filter ?? {}, { jurisdictions }) });
          }
          // Each shard's search is a span of its own (#15); a remote shard continues the trace.
          const span = request.span?.child(
            `shard.search ${d.id}`,
            d.location.kind === 'remote' ? 'client' : 'internal',
            {
              'switchyard.shard': d.id,
              'switchyard.node': d.location.node,
              'switchyard.shard.location': d.location.kind,
            },
          );
          if (span !== undefined) options = extend(options, { span });
          let hits: VectorHit[];
          try {
            hits = await slot.shard.index.search(query, request.k, options);
          } catch (err) {
            if (span !== undefined) {
              const e = toSwitchyardError(err);
              span.fail(e.code, e.message);
              span.end();
            }
            throw err;
          }
          span?.set('switchyard.hits', hits.length);
          span?.end();
          const kept =
            residency === undefined
              ? hits
              : hits.filter((h) => residency.mayHold(h.meta.jurisdiction, residency.node));
          return {
            hits: kept,
            outcome: outcome(d.id, d.location.node, kept.length, this.clock.now() - started, 'ok'),
          };
        } catch (err) {
          if (request.signal?.aborted === true) throw err;
          const code = toSwitchyardError(err).code;
          return {
            hits: [],
            outcome: outcome(d.id, d.location.node, 0, this.clock.now() - started, code),
          };
        } finally {
          slot.inFlight--;
          if (slot.inFlight === 0) slot.idle?.();
        }
      }),
    );
    return {
      hits: mergeTopK(
        results.map((r) => r.hits),
        request.k,
      ),
      shards: results.map((r) => r.outcome),
      partial: results.some((r) => r.outcome.outcome !== 'ok'),
    };
  }

  /**
   * Writes each record to the shard it is placed on. `beforeWrite` sees every shard's share of
   * the batch in the tick that writes it (a tenant cap's check cannot be raced); when it throws,
   * nothing is written.
   */
  async upsert(
    collection: string,
    records: readonly VectorRecord[],
    signal?: AbortSignal,
    beforeWrite?: (writes: ReadonlyMap<VectorIndex, readonly VectorRecord[]>) => void,
  ): Promise<UpsertResult> {
    const c = this.get(collection);
    const groups = new Map<Slot, VectorRecord[]>();
    const moved = new Map<Slot, Map<string, string[]>>();
    records.forEach((r, i) => {
      const slot = this.place(c, r, i);
      push(groups, slot, r);
      // Written while its shard splits: the new version lives in the child only.
      for (const s of c.slots) {
        if (s.splitInto?.includes(slot) !== true) continue;
        let byTenant = moved.get(s);
        if (byTenant === undefined) moved.set(s, (byTenant = new Map<string, string[]>()));
        push(byTenant, r.meta.tenant, r.id);
      }
    });
    beforeWrite?.(new Map([...groups].map(([slot, group]) => [slot.shard.index, group])));
    // Every call starts in this tick: an in-process split's copy step cannot interleave and
    // bring back an older version from the parent.
    const deletes = [...moved].flatMap(([slot, byTenant]) =>
      [...byTenant].map(([tenant, ids]) => slot.shard.index.delete(tenant, ids)),
    );
    const upserts = [...groups].map(([slot, group]) => slot.shard.index.upsert(group, signal));
    await Promise.all(deletes);
    return sumUpserts(await Promise.all(upserts));
  }

  /** The shard a record is written to (its key, residency and any split in progress). */
  placeOf(collection: string, record: VectorRecord): VectorShard {
    return this.place(this.get(collection), record, 0).shard;
  }

  async delete(collection: string, tenant: string, ids: readonly string[]): Promise<number> {
    const c = this.get(collection);
    let n = 0;
    for (const slot of this.tenantSlots(c, tenant)) n += await slot.shard.index.delete(tenant, ids);
    return n;
  }

  async purgeUser(tenant: string, userId: string): Promise<number> {
    let n = 0;
    for (const c of this.byName.values())
      for (const slot of this.tenantSlots(c, tenant))
        n += await slot.shard.index.purgeUser(tenant, userId);
    return n;
  }

  async stats(collection?: string): Promise<readonly VectorShardStats[]> {
    const cs = collection === undefined ? [...this.byName.values()] : [this.get(collection)];
    return Promise.all(cs.flatMap((c) => c.slots.map((s) => s.shard.index.stats())));
  }

  /**
   * Starts moving a shard's data into `children` (whose keys split its key space): from now on
   * writes go to the children and reads visit the shard and its children. Call `finishSplit`
   * once the data is copied.
   */
  beginSplit(collection: string, shardId: string, children: readonly VectorShard[]): void {
    const c = this.get(collection);
    const parent = c.slots.find((s) => s.shard.descriptor.id === shardId);
    if (parent === undefined) throw syError('SY_ERR_VECTOR_SHARD_NOT_FOUND', shardId);
    const kids = children.map((shard) => newSlot(shard));
    parent.splitInto = kids;
    c.slots = [...c.slots, ...kids];
  }

  /** Drops the split shard from routing, waits for its in-flight searches, and returns it. */
  async finishSplit(collection: string, shardId: string): Promise<VectorShard> {
    const c = this.get(collection);
    const parent = c.slots.find((s) => s.shard.descriptor.id === shardId);
    if (parent === undefined) throw syError('SY_ERR_VECTOR_SHARD_NOT_FOUND', shardId);
    c.slots = c.slots.filter((s) => s !== parent);
    if (parent.inFlight > 0) await new Promise<void>((resolve) => (parent.idle = resolve));
    return parent.shard;
  }

  async close(): Promise<void> {
    for (const c of this.byName.values())
      await Promise.all(c.slots.map((s) => s.shard.index.close()));
  }

  private get(collection: string): Collection {
    const c = this.byName.get(collection);
    if (c === undefined)
      throw syError('SY_ERR_VECTOR_COLLECTION_NOT_FOUND', JSON.stringify(collection.slice(0, 128)));
    return c;
  }

  private tenantSlots(c: Collection, tenant: string): Slot[] {
    return c.slots.filter((s) => {
      const t = s.shard.descriptor.key.tenants;
      return t === undefined || t.includes(tenant);
    });
  }

  /** The shard a record goes to: admitted by key and residency, most specific, not splitting. */
  private place(c: Collection, r: VectorRecord, i: number): Slot {
    const byKey = c.slots.filter(
      (s) => s.splitInto === undefined && keyAdmits(s.shard.descriptor.key, r.id, r.meta),
    );
    const residency = this.options.residency;
    const j = r.meta.jurisdiction;
    const allowed =
      residency === undefined || j === undefined
        ? byKey
        : byKey.filter((s) => residency.mayHold(j, s.shard.descriptor.location.node));
    if (allowed.length === 0) {
      if (byKey.length > 0)
        throw syError(
          'SY_ERR_RESIDENCY',
          `records[${i}] is tagged ${j ?? ''} and no shard of ${c.name} for it is on that jurisdiction's nodes`,
        );
      throw syError(
        'SY_ERR_VECTOR_NO_SHARD',
        `records[${i}] (tenant ${r.meta.tenant}, entity type ${r.meta.entityType}) in ${c.name}`,
      );
    }
    let best = allowed[0]!;
    for (const s of allowed)
      if (specificity(s.shard.descriptor.key) > specificity(best.shard.descriptor.key)) best = s;
    return best;
  }
}

function newSlot(shard: VectorShard): Slot {
  return { shard, inFlight: 0, splitInto: undefined, idle: undefined };
}

function push<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

function outcome(
  shard: string,
  node: string,
  hits: number,
  ms: number,
  result: string,
): ShardOutcome {
  return { shard, node, hits, ms, outcome: result };
}
