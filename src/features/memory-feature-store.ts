import type {
  FeatureDefinition,
  FeatureEntry,
  FeatureIssue,
  FeatureKey,
  FeatureSource,
  FeatureWrite,
  FeatureWriteResult,
} from '../contracts/feature-source.js';
import type { ConsentPurpose } from '../contracts/policy.js';
import type { Logger } from '../contracts/logger.js';
import type { Clock } from '../core/clock.js';
import { ensureRoom } from '../core/tenant-storage.js';
import { FeatureCatalog } from './feature-catalog.js';
import { featureOp, featureWriteFailed } from './feature-events.js';
import type { JournalOp, SqliteFeatureJournal } from './sqlite-feature-journal.js';

export interface MemoryFeatureStoreOptions {
  readonly definitions: readonly FeatureDefinition[];
  readonly clock: Clock;
  /** Write-behind persistence; absent: memory only. */
  readonly journal?: SqliteFeatureJournal;
  /** Longest wait before queued writes reach the journal. */
  readonly flushMs?: number;
  /** Most rows per journal transaction, so one flush never holds the event loop for long. */
  readonly flushBatch?: number;
  /** How often expired values are swept from memory, a bounded slice at a time (0: never). */
  readonly sweepMs?: number;
  readonly logger?: Logger;
  /** Most values one tenant may hold (`features.max_values_per_tenant`); absent: no cap. */
  readonly maxValuesPerTenant?: number;
}

const SEP = '\u0000';
/** Entities one sweep visits: a tick of the sweeper, or a write about to be refused for the cap. */
const SWEEP_SLICE = 2_500;

/**
 * Whether `a` replaces `b`, one value of one key (#17): the later write wins; of two written in the
 * same millisecond by different workers, the one whose JSON sorts last, so every worker and the
 * journal (`SqliteFeatureJournal.apply`) keep the same one whatever order they arrive in.
 */
export function newer(a: FeatureEntry, b: FeatureEntry): boolean {
  if (a.writtenAt !== b.writtenAt) return a.writtenAt > b.writtenAt;
  return JSON.stringify(a) >= JSON.stringify(b);
}

/**
 * The embedded online feature store: values live in process memory, so a read is a couple of map
 * lookups and never touches SQLite. Writes are applied in memory at once and journalled to SQLite
 * behind the hot path; start-up reloads what is still live. Expired values are never returned and
 * are dropped lazily on read and by a periodic sweep.
 */
export class MemoryFeatureStore implements FeatureSource {
  private catalog: FeatureCatalog;
  private readonly clock: Clock;
  private readonly journal: SqliteFeatureJournal | undefined;
  /** `tenant \0 entityId` → feature → entry. */
  private readonly entities = new Map<string, Map<string, FeatureEntry>>();
  /** `tenant \0 userId` → entity keys holding values about the user. */
  private readonly byUser = new Map<string, Set<string>>();
  /** Values held per tenant (expired ones not yet dropped included): what the cap counts. */
  private readonly held = new Map<string, number>();
  private maxValues: number | undefined;
  private pending = new Map<string, JournalOp>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private readonly flushMs: number;
  private readonly flushBatch: number;
  private readonly logger: Logger | undefined;
  private writesSinceSweep = 0;
  private closed = false;
  private sweeper: NodeJS.Timeout | undefined;
  private sweepCursor: Iterator<[string, Map<string, FeatureEntry>]> | undefined;

  constructor(options: MemoryFeatureStoreOptions) {
    this.catalog = new FeatureCatalog(options.definitions);
    this.clock = options.clock;
    this.journal = options.journal;
    this.flushMs = options.flushMs ?? 50;
    this.flushBatch = options.flushBatch ?? 1_000;
    this.logger = options.logger;
    this.maxValues = options.maxValuesPerTenant;
    const sweepMs = options.sweepMs ?? 250;
    if (sweepMs > 0) {
      this.sweeper = setInterval(() => this.sweepExpired(SWEEP_SLICE), sweepMs);
      this.sweeper.unref();
    }
    if (this.journal !== undefined) {
      const now = this.clock.wall();
      this.journal.sweepExpired(now);
      for (const { tenant, entry } of this.journal.load(now)) this.put(tenant, entry);
    }
  }

  /** Swaps the definitions (config reload); stored values keep the label they were written with. */
  setDefinitions(definitions: readonly FeatureDefinition[]): void {
    this.catalog = new FeatureCatalog(definitions);
  }

  /** A new cap (config reload); values held are kept, only new ones are refused. */
  setMaxValuesPerTenant(max: number | undefined): void {
    this.maxValues = max;
  }

  stored(tenant: string): Promise<number> {
    return Promise.resolve(this.held.get(tenant) ?? 0);
  }

  storedByTenant(): Promise<ReadonlyMap<string, number>> {
    return Promise.resolve(this.held);
  }

  definitions(): readonly FeatureDefinition[] {
    return this.catalog.list();
  }

  definition(name: string): FeatureDefinition | undefined {
    return this.catalog.get(name);
  }

  validate(writes: readonly FeatureWrite[]): FeatureIssue[] {
    return this.catalog.validate(writes);
  }

  write(tenant: string, writes: readonly FeatureWrite[]): Promise<FeatureWriteResult> {
    return new Promise((resolve) => resolve({ written: this.commit(tenant, writes).length }));
  }

  /**
   * `write` without the promise: validates, checks the cap, stores, and returns the entries as
   * stored, for a replicated store to hand to the other workers (#17). Each entry is stamped later
   * than the value it replaces (a millisecond on, when the clock has not moved or went back), so
   * the newest write of a key is the newest everywhere (`newer`).
   */
  commit(tenant: string, writes: readonly FeatureWrite[]): FeatureEntry[] {
    let entries: FeatureEntry[];
    try {
      entries = this.catalog.entries(writes, this.clock.wall());
      // Expired values count until dropped; another worker's read may have dropped some that are
      // still held here (#17): a slice of the sweep first, so a full tenant is not refused for them.
      const held = this.held.get(tenant) ?? 0;
      if (this.maxValues !== undefined && held + this.newValues(tenant, entries) > this.maxValues)
        this.sweepExpired(SWEEP_SLICE);
      ensureRoom(
        'feature_values',
        tenant,
        this.held.get(tenant) ?? 0,
        this.newValues(tenant, entries),
        this.maxValues,
      );
    } catch (err) {
      featureWriteFailed(err, writes.length);
      throw err;
    }
    for (let i = 0; i < entries.length; i++) {
      let e = entries[i]!;
      const previous = this.entities.get(tenant + SEP + e.entityId)?.get(e.feature);
      if (previous !== undefined && previous.writtenAt >= e.writtenAt) {
        const shift = previous.writtenAt + 1 - e.writtenAt;
        e = {
          ...e,
          writtenAt: e.writtenAt + shift,
          ...(e.expiresAt === undefined ? {} : { expiresAt: e.expiresAt + shift }),
        };
        entries[i] = e;
      }
      this.put(tenant, e);
      this.enqueue(tenant, e.entityId, e.feature, e);
    }
    featureOp('write', 'ok', entries.length);
    return entries;
  }

  /**
   * Stores entries another worker wrote (#17), as they were stamped there: an entry older than
   * the one held is skipped (`newer`), as is one expired already or one `admit` refuses. No cap is
   * checked (the writer checked it against the same values). Returns how many were stored.
   */
  applyReplica(
    tenant: string,
    entries: readonly FeatureEntry[],
    admit?: (tenant: string, entry: FeatureEntry) => boolean,
  ): number {
    const now = this.clock.wall();
    let stored = 0;
    for (const e of entries) {
      if (e.expiresAt !== undefined && e.expiresAt <= now) continue;
      const held = this.entities.get(tenant + SEP + e.entityId)?.get(e.feature);
      if (held !== undefined && !newer(e, held)) continue;
      if (admit !== undefined && !admit(tenant, e)) continue;
      this.put(tenant, e);
      this.enqueue(tenant, e.entityId, e.feature, e);
      stored++;
    }
    return stored;
  }

  /** Every value held (expired ones not yet dropped included), for a worker that starts (#17). */
  *entries(): IterableIterator<{ readonly tenant: string; readonly entry: FeatureEntry }> {
    for (const [ek, features] of this.entities) {
      const tenant = ek.slice(0, ek.indexOf(SEP));
      for (const entry of features.values()) yield { tenant, entry };
    }
  }

  read(tenant: string, keys: readonly FeatureKey[]): Promise<(FeatureEntry | undefined)[]> {
    return Promise.resolve(this.readSync(tenant, keys));
  }

  /** The synchronous read behind `read` (what the embedded `features` stage costs). */
  readSync(tenant: string, keys: readonly FeatureKey[]): (FeatureEntry | undefined)[] {
    const now = this.clock.wall();
    const out = new Array<FeatureEntry | undefined>(keys.length);
    let hits = 0;
    let lastEntity = '';
    let features: Map<string, FeatureEntry> | undefined;
    for (let i = 0; i < keys.length; i++) {
      const k = keys[i]!;
      if (i === 0 || k.entityId !== lastEntity) {
        lastEntity = k.entityId;
        features = this.entities.get(tenant + SEP + k.entityId);
      }
      const e = features?.get(k.feature);
      if (e !== undefined && e.expiresAt !== undefined && e.expiresAt <= now) {
        this.drop(tenant, e);
        out[i] = undefined;
      } else {
        out[i] = e;
        if (e !== undefined) hits++;
      }
    }
    featureOp('read', 'hit', hits);
    featureOp('read', 'miss', keys.length - hits);
    return out;
  }

  readEntity(tenant: string, entityId: string): Promise<FeatureEntry[]> {
    const now = this.clock.wall();
    const features = this.entities.get(tenant + SEP + entityId);
    const out: FeatureEntry[] = [];
    if (features !== undefined) {
      for (const e of [...features.values()]) {
        if (e.expiresAt !== undefined && e.expiresAt <= now) this.drop(tenant, e);
        else out.push(e);
      }
    }
    return Promise.resolve(out);
  }

  async purgeUser(
    tenant: string,
    userId: string,
    purposes?: readonly ConsentPurpose[],
  ): Promise<number> {
    const userKey = tenant + SEP + userId;
    const entityKeys = this.byUser.get(userKey);
    let removed = 0;
    if (entityKeys !== undefined) {
      for (const ek of [...entityKeys]) {
        const features = this.entities.get(ek);
        if (features === undefined) continue;
        for (const e of [...features.values()]) {
          if (e.userId !== userId) continue;
          if (purposes !== undefined && (e.purpose === undefined || !purposes.includes(e.purpose)))
            continue;
          this.drop(tenant, e);
          removed++;
        }
      }
    }
    if (this.journal !== undefined) {
      // Control plane: written through at once so a restart cannot resurrect purged values. Only
      // what was written until now: another worker's newer value (written once consent was given
      // again) stays, whenever this purge reaches the file.
      const upTo = this.clock.wall();
      await this.flush();
      this.journal.purgeUser(tenant, userId, purposes, upTo);
    }
    return removed;
  }

  flush(): Promise<void> {
    this.flushing ??= this.drain().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
    this.journal?.close();
  }

  /**
   * Drops expired values of up to `maxEntities` entities, resuming where the last call stopped,
   * so values nobody reads again do not stay in memory and no sweep holds the event loop long.
   * Returns how many values were dropped.
   */
  sweepExpired(maxEntities: number): number {
    const now = this.clock.wall();
    let dropped = 0;
    for (let visited = 0; visited < maxEntities; visited++) {
      this.sweepCursor ??= this.entities.entries();
      const next = this.sweepCursor.next();
      if (next.done === true) {
        this.sweepCursor = undefined;
        break;
      }
      const [ek, features] = next.value;
      const tenant = ek.slice(0, ek.indexOf(SEP));
      for (const e of [...features.values()]) {
        if (e.expiresAt !== undefined && e.expiresAt <= now) {
          this.drop(tenant, e);
          dropped++;
        }
      }
    }
    return dropped;
  }

  /** Live values held (expired ones not yet swept included). */
  size(): number {
    let n = 0;
    for (const m of this.entities.values()) n += m.size;
    return n;
  }

  /** How many of these entries are not held yet (a value written again replaces, taking no room). */
  private newValues(tenant: string, entries: readonly FeatureEntry[]): number {
    const seen = new Set<string>();
    for (const e of entries)
      if (this.entities.get(tenant + SEP + e.entityId)?.has(e.feature) !== true)
        seen.add(e.entityId + SEP + e.feature);
    return seen.size;
  }

  private put(tenant: string, e: FeatureEntry): void {
    const ek = tenant + SEP + e.entityId;
    let features = this.entities.get(ek);
    if (features === undefined) {
      features = new Map();
      this.entities.set(ek, features);
    }
    const previous = features.get(e.feature);
    if (previous === undefined) this.held.set(tenant, (this.held.get(tenant) ?? 0) + 1);
    if (previous?.userId !== undefined && previous.userId !== e.userId)
      this.unindex(tenant, previous.userId, ek, features, e.feature);
    features.set(e.feature, e);
    if (e.userId !== undefined) {
      const uk = tenant + SEP + e.userId;
      let set = this.byUser.get(uk);
      if (set === undefined) {
        set = new Set();
        this.byUser.set(uk, set);
      }
      set.add(ek);
    }
  }

  private drop(tenant: string, e: FeatureEntry): void {
    const ek = tenant + SEP + e.entityId;
    const features = this.entities.get(ek);
    if (features?.get(e.feature) !== e) return;
    features.delete(e.feature);
    const n = (this.held.get(tenant) ?? 1) - 1;
    if (n > 0) this.held.set(tenant, n);
    else this.held.delete(tenant);
    if (e.userId !== undefined) this.unindex(tenant, e.userId, ek, features, e.feature);
    if (features.size === 0) this.entities.delete(ek);
    this.enqueue(tenant, e.entityId, e.feature, null, e.writtenAt);
  }

  /** Removes the entity from the user's index when no other value of the entity is the user's. */
  private unindex(
    tenant: string,
    userId: string,
    ek: string,
    features: Map<string, FeatureEntry>,
    except: string,
  ): void {
    for (const [name, other] of features) if (name !== except && other.userId === userId) return;
    const uk = tenant + SEP + userId;
    const set = this.byUser.get(uk);
    set?.delete(ek);
    if (set?.size === 0) this.byUser.delete(uk);
  }

  private enqueue(
    tenant: string,
    entityId: string,
    feature: string,
    entry: FeatureEntry | null,
    upTo = 0,
  ): void {
    if (this.journal === undefined || this.closed) return;
    this.pending.set(
      tenant + SEP + entityId + SEP + feature,
      entry === null
        ? { tenant, entityId, feature, entry, upTo }
        : { tenant, entityId, feature, entry },
    );
    this.writesSinceSweep++;
    if (this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.flush();
      }, this.flushMs);
      this.timer.unref();
    }
  }

  private async drain(): Promise<void> {
    const journal = this.journal;
    if (journal === undefined) return;
    while (this.pending.size > 0) {
      const batch: JournalOp[] = [];
      for (const [key, op] of this.pending) {
        batch.push(op);
        this.pending.delete(key);
        if (batch.length >= this.flushBatch) break;
      }
      try {
        journal.apply(batch);
      } catch (err) {
        // The values stay served from memory; only their durability is lost. Never a crash.
        this.logger?.error({ err, rows: batch.length }, 'feature journal write failed');
      }
      if (this.pending.size > 0) await new Promise<void>((r) => setImmediate(r));
    }
    if (this.writesSinceSweep > 10_000) {
      this.writesSinceSweep = 0;
      journal.sweepExpired(this.clock.wall());
    }
  }
}
