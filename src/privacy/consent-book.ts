import type { AuditSink } from '../contracts/audit.js';
import type { Logger } from '../contracts/logger.js';
import type {
  ConsentChange,
  ConsentPurpose,
  ConsentRecord,
  ConsentRegistry,
  ConsentUpdate,
  PurgeHook,
} from '../contracts/policy.js';
import { channel } from 'node:diagnostics_channel';
import {
  CONSENT_PURPOSES,
  PERSONALIZATION_CHANNELS,
  type ConsentChangeEvent,
} from '../contracts/policy.js';
import type { Clock } from '../core/clock.js';
import { toSwitchyardError } from '../core/errors.js';
import { ensureRoom } from '../core/tenant-storage.js';

export type { ConsentPersistence } from '../contracts/policy.js';

import type { ConsentPersistence } from '../contracts/policy.js';

export interface ConsentBookOptions {
  readonly clock: Clock;
  readonly audit: AuditSink;
  /** Consent every user has before a record is written (opt-in: all false). */
  readonly defaults: Readonly<Record<ConsentPurpose, boolean>>;
  readonly persistence?: ConsentPersistence;
  readonly logger?: Logger;
  /** Most records one tenant may hold (`privacy.max_consent_records_per_tenant`); absent: no cap. */
  readonly maxRecordsPerTenant?: number;
}

const SEP = '\u0000';
const consentChannel = channel(PERSONALIZATION_CHANNELS.consent);

/**
 * Consent records per tenant, user and purpose, held in memory (every policy decision reads them
 * synchronously) and written through to `persistence`. A change takes effect for enforcement the
 * moment it is applied; a revocation then runs every purge hook before resolving, and records one
 * audit entry naming what each hook purged (and which failed).
 */
export class ConsentBook implements ConsentRegistry {
  private readonly records = new Map<string, ConsentRecord>();
  private readonly hooks = new Set<PurgeHook>();
  private defaults: Readonly<Record<ConsentPurpose, boolean>>;
  private maxRecords: number | undefined;
  /** Records held per tenant, and new ones being written (they count before they land). */
  private readonly held = new Map<string, number>();
  private readonly creating = new Map<string, number>();

  private readonly loaded: Promise<void>;

  constructor(private readonly options: ConsentBookOptions) {
    this.defaults = options.defaults;
    this.maxRecords = options.maxRecordsPerTenant;
    const persistence = options.persistence;
    const load = (): Promise<void> | undefined => {
      const all = persistence?.loadAll() ?? [];
      if (!Array.isArray(all)) return all.then((records) => records.forEach((r) => this.learn(r)));
      for (const r of all) this.learn(r);
      return undefined;
    };
    // Subscribed first, loaded after: a change published in between arrives by the subscription
    // (`learn` keeps the newer of two records, so hearing one twice is harmless).
    const subscribed = persistence?.subscribe?.((r) => this.learn(r));
    this.loaded =
      subscribed instanceof Promise ? subscribed.then(() => load()) : (load() ?? Promise.resolve());
  }

  /** Resolves once the stored records are loaded (at once for SQLite). */
  ready(): Promise<void> {
    return this.loaded;
  }

  /**
   * Takes a record from storage or another replica (or worker) unless a newer one is already held.
   * Two changes of one user made at once in two places carry the same version: each place then
   * keeps a purpose granted only if both records grant it, so they agree, and a revocation is
   * never lost to a concurrent change (#17).
   */
  private learn(r: ConsentRecord): void {
    const held = this.records.get(r.tenant + SEP + r.userId);
    if (held === undefined || held.version < r.version) this.store(r);
    else if (held.version === r.version && held !== r) this.store(bothGrant(held, r));
  }

  private store(r: ConsentRecord): void {
    const key = r.tenant + SEP + r.userId;
    if (!this.records.has(key)) this.held.set(r.tenant, (this.held.get(r.tenant) ?? 0) + 1);
    this.records.set(key, r);
  }

  /** New defaults (config reload); written records keep their values. */
  setDefaults(defaults: Readonly<Record<ConsentPurpose, boolean>>): void {
    this.defaults = defaults;
  }

  /** A new cap (config reload); records already held are kept, only new ones are refused. */
  setMaxRecordsPerTenant(max: number | undefined): void {
    this.maxRecords = max;
  }

  /** Records held per tenant: what the cap counts. */
  recordsByTenant(): ReadonlyMap<string, number> {
    return this.held;
  }

  /** Every record held (a live iterator: a starting worker's copy of them, #17). */
  entries(): IterableIterator<ConsentRecord> {
    return this.records.values();
  }

  get(tenant: string, userId: string): ConsentRecord {
    return (
      this.records.get(tenant + SEP + userId) ?? {
        tenant,
        userId,
        purposes: this.defaults,
        updatedAt: 0,
        version: 0,
      }
    );
  }

  onPurge(hook: PurgeHook): () => void {
    this.hooks.add(hook);
    return () => {
      this.hooks.delete(hook);
    };
  }

  set(
    tenant: string,
    userId: string,
    update: ConsentUpdate,
    actor: string,
  ): Promise<ConsentChange> {
    return this.apply(tenant, userId, actor, (p) => update[p] ?? undefined);
  }

  revoke(
    tenant: string,
    userId: string,
    purposes: readonly ConsentPurpose[] | 'all',
    actor: string,
  ): Promise<ConsentChange> {
    const set = purposes === 'all' ? CONSENT_PURPOSES : purposes;
    return this.apply(tenant, userId, actor, (p) => (set.includes(p) ? false : undefined));
  }

  private async apply(
    tenant: string,
    userId: string,
    actor: string,
    next: (p: ConsentPurpose) => boolean | undefined,
  ): Promise<ConsentChange> {
    const previous = this.get(tenant, userId);
    const purposes = {} as Record<ConsentPurpose, boolean>;
    const revoked: ConsentPurpose[] = [];
    const granted: ConsentPurpose[] = [];
    for (const p of CONSENT_PURPOSES) {
      const was = previous.purposes[p];
      const now = next(p) ?? was;
      purposes[p] = now;
      if (was && !now) revoked.push(p);
      if (!was && now) granted.push(p);
    }
    const record: ConsentRecord = {
      tenant,
      userId,
      purposes: Object.freeze(purposes),
      updatedAt: this.options.clock.wall(),
      version: previous.version + 1,
    };
    // A record for one user more must fit the tenant's cap (#13, finding 8) when it grants
    // consent. Withdrawing consent is never refused; at the cap, a change that neither grants
    // nor revokes stores nothing (the user's consent is the default already).
    const creates = !this.records.has(tenant + SEP + userId);
    if (creates && revoked.length === 0) {
      const held = (this.held.get(tenant) ?? 0) + (this.creating.get(tenant) ?? 0);
      if (granted.length === 0 && this.maxRecords !== undefined && held >= this.maxRecords)
        return { record: previous, revoked, granted, purged: {}, failed: {} };
      ensureRoom('consent_records', tenant, held, 1, this.maxRecords);
    }
    // Durable first (a failure here changes nothing), then enforced at once.
    if (creates) this.creating.set(tenant, (this.creating.get(tenant) ?? 0) + 1);
    try {
      await this.options.persistence?.save(record);
    } finally {
      if (creates) {
        const n = (this.creating.get(tenant) ?? 1) - 1;
        if (n > 0) this.creating.set(tenant, n);
        else this.creating.delete(tenant);
      }
    }
    // A record another place made meanwhile (learned while this one was being saved) decides too.
    this.learn(record);

    const purged: Record<string, number> = {};
    const failed: Record<string, string> = {};
    if (revoked.length > 0) {
      const all = CONSENT_PURPOSES.every((p) => !purposes[p]);
      const request = { tenant, userId, purposes: revoked, all };
      await Promise.all(
        [...this.hooks].map(async (hook) => {
          try {
            purged[hook.name] = await hook.purge(request);
          } catch (err) {
            const e = toSwitchyardError(err);
            failed[hook.name] = e.code;
            this.options.logger?.error(
              { err, hook: hook.name, tenant },
              'consent revocation: a purge hook failed',
            );
          }
        }),
      );
    }
    this.options.audit.record({
      at: record.updatedAt,
      actor,
      action: revoked.length > 0 ? 'consent.revoke' : 'consent.update',
      target: `${tenant}/${userId}`,
      reason:
        revoked.length > 0
          ? `revoked ${revoked.join(', ')}`
          : granted.length > 0
            ? `granted ${granted.join(', ')}`
            : 'no change',
      before: { purposes: { ...previous.purposes }, version: previous.version },
      after: { purposes: { ...purposes }, version: record.version },
      detail: { version: record.version, revoked, granted, purged, failed },
    });
    if (consentChannel.hasSubscribers)
      consentChannel.publish({
        action: revoked.length > 0 ? 'revoke' : 'update',
        purged,
        failed: Object.keys(failed).length,
      } satisfies ConsentChangeEvent);
    return { record, revoked, granted, purged, failed };
  }

  async close(): Promise<void> {
    await this.options.persistence?.close();
  }
}

/** One record of two with the same version: a purpose is granted only where both grant it. */
function bothGrant(a: ConsentRecord, b: ConsentRecord): ConsentRecord {
  const purposes = {} as Record<ConsentPurpose, boolean>;
  let same = true;
  for (const p of CONSENT_PURPOSES) {
    purposes[p] = a.purposes[p] && b.purposes[p];
    if (purposes[p] !== a.purposes[p]) same = false;
  }
  if (same) return a;
  return { ...a, purposes: Object.freeze(purposes), updatedAt: Math.max(a.updatedAt, b.updatedAt) };
}
