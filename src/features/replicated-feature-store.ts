import { randomUUID } from 'node:crypto';
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

interface CopyAsk {
  readonly transfer: string;
  readonly max: number;
}

interface CopyChunk {
  readonly values: readonly (readonly [string, FeatureEntry])[];
  readonly done: boolean;
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
  private readonly copies = new Map<
    string,
    {
      readonly values: Iterator<{ tenant: string; entry: FeatureEntry }>;
      timer: NodeJS.Timeout | undefined;
    }
  >();
  private readonly chunk: number;
  private readonly copyIdleMs: number;

  constructor(
    private readonly inner: MemoryFeatureStore,
    private readonly cluster: ClusterPeer,
    private readonly options: ReplicationOptions = {},
  ) {
    this.chunk = options.chunk ?? 2_000;
    this.copyIdleMs = options.copyIdleMs ?? 60_000;
    cluster.on(FEATURES_WRITE_TOPIC, (body) => {
      const m = body as WriteMessage;
      inner.applyReplica(m.tenant, m.entries, this.options.admit);
    });
    cluster.on(FEATURES_COPY_TOPIC, (body) => this.handOut(body as CopyAsk));
  }

  /**
   * Copies the values another worker holds, chunk by chunk; resolves with how many were stored
   * (0 when no other worker is up: the journal, if any, is all there is). Writes and purges made
   * meanwhile reach this worker as broadcasts, applied after the copy (before it serves); a value
   * seen twice keeps the newer.
   */
  async join(): Promise<number> {
    let transfer = randomUUID();
    let stored = 0;
    for (let failures = 0; ;) {
      let chunk: CopyChunk | undefined;
      try {
        chunk = (await this.cluster.askPeer(FEATURES_COPY_TOPIC, {
          transfer,
          max: this.chunk,
        } satisfies CopyAsk)) as CopyChunk | undefined;
      } catch (err) {
        // The worker handing it out died or stalled (it may have moved on past the chunk that was
        // lost): the copy starts over, from whichever worker is up; values seen twice keep one.
        if (++failures >= 3) throw err;
        transfer = randomUUID();
        continue;
      }
      if (chunk === undefined) return stored;
      // Written behind here too, though the worker they come from holds them: it may die before
      // its next write-behind, and a value this worker serves must survive a restart of all.
      for (const [tenant, entry] of chunk.values)
        stored += this.inner.applyReplica(tenant, [entry]);
      if (chunk.done) return stored;
    }
  }

  private handOut(ask: CopyAsk): CopyChunk {
    let copy = this.copies.get(ask.transfer);
    if (copy === undefined) {
      copy = { values: this.inner.entries(), timer: undefined };
      this.copies.set(ask.transfer, copy);
    } else clearTimeout(copy.timer);
    // A live iterator: values written or dropped meanwhile may be seen or not; the starting
    // worker hears of those changes anyway.
    const values: [string, FeatureEntry][] = [];
    const max = Math.max(1, Math.min(ask.max, 10_000));
    while (values.length < max) {
      const next = copy.values.next();
      if (next.done === true) {
        this.copies.delete(ask.transfer);
        return { values, done: true };
      }
      values.push([next.value.tenant, next.value.entry]);
    }
    copy.timer = setTimeout(() => this.copies.delete(ask.transfer), this.copyIdleMs);
    copy.timer.unref();
    return { values, done: false };
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
    for (const c of this.copies.values()) clearTimeout(c.timer);
    this.copies.clear();
    return this.inner.close();
  }
}
