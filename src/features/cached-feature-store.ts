import { channel } from 'node:diagnostics_channel';
import type {
  FeatureDefinition,
  FeatureEntry,
  FeatureIssue,
  FeatureKey,
  FeatureWrite,
  FeatureWriteResult,
  MarkedFeatureRead,
} from '../contracts/feature-source.js';
import {
  PERSONALIZATION_CHANNELS,
  type ConsentPurpose,
  type FeatureCacheEvent,
  type PolicyLabel,
} from '../contracts/policy.js';
import type { Clock } from '../core/clock.js';
import { isSwitchyardError } from '../core/errors.js';
import type { OpenedFeatureStore } from './open-feature-store.js';

/** The `features.store.cache` section (snake_case, as written in YAML). */
export interface FeatureCacheSettings {
  /** A value read within this long is answered from memory, without a remote read. */
  readonly ttl_ms: number;
  /** Past `ttl_ms`, how much longer a value may be served when the store cannot be read. */
  readonly stale_ms: number;
  /** Most values held (least recently used go first). */
  readonly max_entries: number;
  /** Labels whose values may be held; values of other labels are always read remotely. */
  readonly labels: readonly PolicyLabel[];
}

interface Held {
  /** `undefined`: the store said the value does not exist (a miss is cached too). */
  readonly entry: FeatureEntry | undefined;
  /** `clock.now()` when the store was asked. */
  readonly at: number;
}

const SEP = '\u0000';
const cacheChannel = channel(PERSONALIZATION_CHANNELS.featureCache);

function counted(result: FeatureCacheEvent['result'], count: number): void {
  if (count > 0 && cacheChannel.hasSubscribers)
    cacheChannel.publish({ result, count } satisfies FeatureCacheEvent);
}

/**
 * A read-through cache in front of a remote feature store (#17, edge nodes): a value read within
 * `ttl_ms` is answered from memory; when the store cannot be read (Redis away or slow), a value
 * read within `ttl_ms + stale_ms` is served and the read is marked stale, so an edge keeps
 * answering, degraded, while its region's Redis is gone. A value past its own feature TTL is never
 * served, fresh or stale.
 *
 * Privacy: a purge (consent revocation, user deletion) drops every cached value of the user before
 * and after the remote purge runs, and a read in flight meanwhile does not put them back; writes
 * through this node drop the values they replace. Labels not listed in `labels` are never held.
 * Writes made through other nodes are seen after at most `ttl_ms`.
 */
export class CachedFeatureStore implements OpenedFeatureStore {
  /** `tenant \0 entity \0 feature` → value, least recently used first. */
  private readonly held = new Map<string, Held>();
  /** `tenant \0 user` → keys of `held` holding the user's values. */
  private readonly byUser = new Map<string, Set<string>>();
  /** Bumped by every purge and write: a read that began before one does not fill the cache. */
  private epoch = 0;
  private readonly cacheable: ReadonlySet<PolicyLabel>;

  constructor(
    private readonly inner: OpenedFeatureStore,
    private readonly settings: FeatureCacheSettings,
    private readonly clock: Clock,
  ) {
    this.cacheable = new Set(settings.labels);
  }

  /** Values held now (tests, debugging). */
  size(): number {
    return this.held.size;
  }

  read(tenant: string, keys: readonly FeatureKey[]): Promise<(FeatureEntry | undefined)[]> {
    return this.readMarked(tenant, keys).then((r) => r.entries);
  }

  async readMarked(tenant: string, keys: readonly FeatureKey[]): Promise<MarkedFeatureRead> {
    const now = this.clock.now();
    const wall = this.clock.wall();
    const out = new Array<FeatureEntry | undefined>(keys.length);
    const missing: number[] = [];
    keys.forEach((k, i) => {
      const h = this.lookup(tenant, k, now, this.settings.ttl_ms);
      if (h === undefined) missing.push(i);
      else out[i] = live(h.entry, wall);
    });
    counted('hit', keys.length - missing.length);
    if (missing.length === 0) return { entries: out, stale: false };

    const epoch = this.epoch;
    let fetched: (FeatureEntry | undefined)[];
    try {
      fetched = await this.inner.read(
        tenant,
        missing.map((i) => keys[i]!),
      );
    } catch (err) {
      if (!isSwitchyardError(err) || err.code !== 'SY_ERR_FEATURE_STORE_UNAVAILABLE') throw err;
      // Stale only when every value asked for is known: an unknown one is never guessed absent.
      const later = this.clock.now();
      const window = this.settings.ttl_ms + this.settings.stale_ms;
      const stale = missing.map((i) => this.lookup(tenant, keys[i]!, later, window));
      if (stale.some((h) => h === undefined)) {
        counted('error', missing.length);
        throw err;
      }
      const wallNow = this.clock.wall();
      missing.forEach((i, j) => (out[i] = live(stale[j]!.entry, wallNow)));
      counted('stale', missing.length);
      return { entries: out, stale: true };
    }
    counted('miss', missing.length);
    // Aged from when the read was asked, not answered: a slow answer is never fresher than it is.
    missing.forEach((i, j) => {
      const e = fetched[j];
      out[i] = e;
      if (this.epoch === epoch) this.put(tenant, keys[i]!, e, now);
    });
    return { entries: out, stale: false };
  }

  async write(tenant: string, writes: readonly FeatureWrite[]): Promise<FeatureWriteResult> {
    // Dropped before and after: a read racing the write cannot keep the value it replaces.
    this.dropWritten(tenant, writes);
    try {
      return await this.inner.write(tenant, writes);
    } finally {
      this.dropWritten(tenant, writes);
    }
  }

  /** Every value of an entity: always remote (the admin and API path, never a journey's). */
  readEntity(tenant: string, entityId: string): Promise<FeatureEntry[]> {
    return this.inner.readEntity(tenant, entityId);
  }

  async purgeUser(
    tenant: string,
    userId: string,
    purposes?: readonly ConsentPurpose[],
  ): Promise<number> {
    // Every cached value of the user goes, whatever its purpose: a cache holds no data of its own.
    // Dropped again once the store is purged: a read made meanwhile may have fetched a value.
    this.dropCachedUser(tenant, userId);
    try {
      return await this.inner.purgeUser(tenant, userId, purposes);
    } finally {
      this.dropCachedUser(tenant, userId);
    }
  }

  /**
   * Drops the user's cached values only (a revocation made on another worker or node, which
   * purged the shared store itself). Returns how many were dropped.
   */
  dropCachedUser(tenant: string, userId: string): number {
    this.epoch++;
    const uk = tenant + SEP + userId;
    const keys = this.byUser.get(uk);
    if (keys === undefined) return 0;
    this.byUser.delete(uk);
    for (const k of keys) this.held.delete(k);
    return keys.size;
  }

  setDefinitions(definitions: readonly FeatureDefinition[]): void {
    this.inner.setDefinitions(definitions);
    // A definition's label may have changed to one that must not be cached.
    this.clear();
  }

  setMaxValuesPerTenant(max: number | undefined): void {
    this.inner.setMaxValuesPerTenant(max);
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

  stored(tenant: string): Promise<number> {
    return this.inner.stored(tenant);
  }

  storedByTenant(): Promise<ReadonlyMap<string, number>> {
    return this.inner.storedByTenant();
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  async close(): Promise<void> {
    this.clear();
    await this.inner.close();
  }

  private clear(): void {
    this.epoch++;
    this.held.clear();
    this.byUser.clear();
  }

  /** The held value of `k` if it was read within `maxAge`; touched as most recently used. */
  private lookup(tenant: string, k: FeatureKey, now: number, maxAge: number): Held | undefined {
    const key = tenant + SEP + k.entityId + SEP + k.feature;
    const h = this.held.get(key);
    if (h === undefined || now - h.at >= maxAge) return undefined;
    this.held.delete(key);
    this.held.set(key, h);
    return h;
  }

  private put(tenant: string, k: FeatureKey, entry: FeatureEntry | undefined, at: number): void {
    const max = this.settings.max_entries;
    const label = entry?.label ?? this.inner.definition(k.feature)?.label;
    if (label === undefined || !this.cacheable.has(label)) return;
    const key = tenant + SEP + k.entityId + SEP + k.feature;
    this.remove(key);
    this.held.set(key, { entry, at });
    if (entry?.userId !== undefined) {
      const uk = tenant + SEP + entry.userId;
      let set = this.byUser.get(uk);
      if (set === undefined) this.byUser.set(uk, (set = new Set()));
      set.add(key);
    }
    while (this.held.size > max) {
      const oldest = this.held.keys().next().value!;
      this.remove(oldest);
    }
  }

  /** Removes one held value and its user index entry. */
  private remove(key: string): void {
    const h = this.held.get(key);
    if (h === undefined) return;
    this.held.delete(key);
    const userId = h.entry?.userId;
    if (userId === undefined) return;
    const uk = key.slice(0, key.indexOf(SEP)) + SEP + userId;
    const set = this.byUser.get(uk);
    set?.delete(key);
    if (set?.size === 0) this.byUser.delete(uk);
  }

  private dropWritten(tenant: string, writes: readonly FeatureWrite[]): void {
    this.epoch++;
    for (const w of writes) this.remove(tenant + SEP + w.entityId + SEP + w.feature);
  }
}

/** A held value past its own feature TTL is gone, as it would be in the store. */
function live(entry: FeatureEntry | undefined, wall: number): FeatureEntry | undefined {
  return entry?.expiresAt !== undefined && entry.expiresAt <= wall ? undefined : entry;
}
