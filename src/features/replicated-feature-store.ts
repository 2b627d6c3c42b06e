import type { ClusterPeer } from '../contracts/cluster.js';
import type {
  FeatureDefinition,
  FeatureEntry,
  FeatureIssue,
  FeatureKey,
  FeatureWrite,
  FeatureWriteResult,
} from '../contracts/feature-source.js';
import type { ConsentPurpose } from '../contracts/policy.js';
import { PeerCopy } from '../core/peer-copy.js';
import type { MemoryFeatureStore } from './memory-feature-store.js';
import type { OpenedFeatureStore } from './open-feature-store.js';

/** A worker's new values, for every other worker. */
export const FEATURES_WRITE_TOPIC = 'features.write';
/** A starting worker asks one that is up for the next chunk of the values it holds. */
export const FEATURES_COPY_TOPIC = 'features.copy';

interface WriteMessage {
  readonly tenant: string;
  readonly entries: readonly FeatureEntry[];
}

export interface ReplicationOptions {
  /**
   * Whether a value another worker wrote may still be stored here when it arrives: false when the
   * user withdrew the consent it needs meanwhile (the writer purges its own copy when it learns).
   */
  readonly admit?: (tenant: string, entry: FeatureEntry) => boolean;
  /** Values per chunk of a starting worker's copy (default 2,000). */
  readonly chunk?: number;
  /** How long a copy may pause before the worker handing it out forgets it (default 60 s). */
  readonly copyIdleMs?: number;
}

/**
 * The embedded feature store of one worker of `serve --workers N` (#17): every worker holds every
 * value, so a read stays a lookup in this process's memory. A write is stored here, then handed to
 * every other worker through the primary, and resolves once each has stored it, so the next read
 * finds it whatever worker serves it. Values keep the stamp of the worker that wrote them (the
 * TTL runs from it everywhere) and a key's newest value wins wherever two writes cross. A worker
 * that starts copies what another one holds (`join`) before it serves; consent purges reach every
 * worker with the consent change itself (`wiring/personalization.ts`), so `purgeUser` is local.
 */
export class ReplicatedFeatureStore implements OpenedFeatureStore {
  private readonly copy: PeerCopy<{ tenant: string; entry: FeatureEntry }>;

  constructor(
    private readonly inner: MemoryFeatureStore,
    private readonly cluster: ClusterPeer,
    private readonly options: ReplicationOptions = {},
  ) {
    cluster.on(FEATURES_WRITE_TOPIC, (body) => {
      const m = body as WriteMessage;
      inner.applyReplica(m.tenant, m.entries, this.options.admit);
    });
    this.copy = new PeerCopy(cluster, FEATURES_COPY_TOPIC, {
      source: () => inner.entries(),
      ...(options.chunk === undefined ? {} : { chunk: options.chunk }),
      ...(options.copyIdleMs === undefined ? {} : { idleMs: options.copyIdleMs }),
    });
  }

  /**
   * Copies the values another worker holds, chunk by chunk; resolves with how many were stored
   * (0 when no other worker is up: the journal, if any, is all there is). Writes and purges made
   * meanwhile reach this worker as broadcasts, applied after the copy (before it serves); a value
   * seen twice keeps the newer.
   */
  join(): Promise<number> {
    // Written behind here too, though the worker they come from holds them: it may die before
    // its next write-behind, and a value this worker serves must survive a restart of all.
    return this.copy.copy((values) =>
      values.reduce((stored, v) => stored + this.inner.applyReplica(v.tenant, [v.entry]), 0),
    );
  }

  async write(tenant: string, writes: readonly FeatureWrite[]): Promise<FeatureWriteResult> {
    const entries = this.inner.commit(tenant, writes);
    // Required: a worker that cannot store it is restarted (and copies the values again) rather
    // than serving on without it.
    await this.cluster.broadcast(FEATURES_WRITE_TOPIC, { tenant, entries } satisfies WriteMessage, {
      required: true,
    });
    return { written: entries.length };
  }

  read(tenant: string, keys: readonly FeatureKey[]): Promise<(FeatureEntry | undefined)[]> {
    return this.inner.read(tenant, keys);
  }

  readEntity(tenant: string, entityId: string): Promise<FeatureEntry[]> {
    return this.inner.readEntity(tenant, entityId);
  }

  purgeUser(tenant: string, userId: string, purposes?: readonly ConsentPurpose[]): Promise<number> {
    return this.inner.purgeUser(tenant, userId, purposes);
  }

  definitions(): readonly FeatureDefinition[] {
    return this.inner.definitions();
  }

  definition(name: string): FeatureDefinition | undefined {
    return this.inner.definition(name);
  }

  validate(writes: readonly FeatureWrite[]): FeatureIssue[] {
    return this.inner.validate(writes);
  }

  setDefinitions(definitions: readonly FeatureDefinition[]): void {
    this.inner.setDefinitions(definitions);
  }

  setMaxValuesPerTenant(max: number | undefined): void {
    this.inner.setMaxValuesPerTenant(max);
  }

  stored(tenant: string): Promise<number> {
    return this.inner.stored(tenant);
  }

  storedByTenant(): Promise<ReadonlyMap<string, number>> {
    return this.inner.storedByTenant();
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  close(): Promise<void> {
    this.copy.close();
    return this.inner.close();
  }
}
