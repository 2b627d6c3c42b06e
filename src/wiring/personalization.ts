import { resolve } from 'node:path';
import type { AuditSink } from '../contracts/audit.js';
import type { ConfigSnapshot } from '../config/load.js';
import {
  openFeatureStore,
  toFeatureDefinitions,
  type OpenedFeatureStore,
} from '../features/open-feature-store.js';
import { setLogRedactor } from '../observability/logger.js';
import { featureTag, type FeatureEntry } from '../contracts/feature-source.js';
import { CONSENT_PURPOSES, type ConsentPersistence } from '../contracts/policy.js';
import { ConsentBook } from '../privacy/consent-book.js';
import { PolicyEngine } from '../privacy/policy-engine.js';
import { sharedConsent, type SharedConsentPersistence } from './shared-consent.js';
import type { Personalization } from '../contracts/policy.js';
import type { WiringDeps } from './shared.js';

const purposeDefaults = (snap: ConfigSnapshot) => {
  const p = snap.config.privacy.purposes;
  return {
    behavioral_inference: p.behavioral_inference.default,
    cross_service_personalization: p.cross_service_personalization.default,
    location: p.location.default,
  };
};

export interface PersonalizationWiring {
  readonly features: OpenedFeatureStore;
  readonly consent: ConsentBook;
  /** The policy module of the current snapshot, over the shared store and consent records. */
  current(): Personalization;
  reconfigure(snap: ConfigSnapshot): Personalization;
  close(): Promise<void>;
}

/**
 * Feature store and consent records (#7): opened once, they outlive reloads; the policy module
 * is rebuilt per snapshot. Revoking consent purges the user's features; every log line goes
 * through the current policy (the logging enforcement point).
 */
export async function openPersonalization(
  snap: ConfigSnapshot,
  deps: WiringDeps,
  audit: AuditSink,
): Promise<PersonalizationWiring> {
  const { clock, logger } = deps;
  const { features: fc, privacy } = snap.config;
  let policy: PolicyEngine | undefined;
  const features = await openFeatureStore(fc.store, toFeatureDefinitions(fc.definitions), {
    dir: snap.dir,
    clock,
    logger,
    maxValuesPerTenant: fc.max_values_per_tenant,
    ...(deps.cluster === undefined
      ? {}
      : {
          cluster: deps.cluster,
          // A value written in another worker just before the user withdrew the consent it needs,
          // arriving here after the withdrawal: the writer purges its copy when it learns of the
          // change, so it is not stored here either (the one check that can differ by worker).
          admit: (tenant: string, entry: FeatureEntry) => {
            const d = policy?.decide('ingestion', featureTag(tenant, entry));
            return d === undefined || d.allow || d.code !== 'SY_ERR_CONSENT_REQUIRED';
          },
        }),
  });
  let persistence: ConsentPersistence | undefined;
  if (privacy.consent_sqlite !== undefined) {
    const { SqliteConsentStore } = await import('../state/sqlite-consent-store.js');
    persistence = new SqliteConsentStore(resolve(snap.dir, privacy.consent_sqlite));
  } else if (privacy.consent_redis !== undefined) {
    const { RedisConsentStore } = await import('../state/redis-consent-store.js');
    const r = privacy.consent_redis;
    const store = new RedisConsentStore({
      url: r.url,
      prefix: r.prefix,
      commandTimeoutMs: r.command_timeout_ms,
      logger,
    });
    if (!(await store.ready(2_000)))
      logger.warn({}, 'consent store: Redis is not reachable yet; consent changes fail with 503');
    persistence = store;
  }
  // A cached remote store (#17): a consent change made on another node purged the shared store
  // there; the values this node cached of that user go when the change is heard.
  const dropCached = features.dropCachedUser?.bind(features);
  if (dropCached !== undefined && persistence?.subscribe !== undefined) {
    const inner = persistence;
    persistence = {
      loadAll: () => inner.loadAll(),
      save: (record) => inner.save(record),
      subscribe: (on) =>
        inner.subscribe?.((r) => {
          dropCached(r.tenant, r.userId);
          on(r);
        }),
      close: () => inner.close(),
    };
  }
  const held: { book?: ConsentBook } = {};
  let shared: SharedConsentPersistence | undefined;
  if (deps.cluster !== undefined) {
    const local = fc.store.kind !== 'redis';
    persistence = shared = sharedConsent(
      persistence,
      deps.cluster,
      async (before, after) => {
        // Every worker holds its own copy of the in-process feature values: a revocation made in
        // another worker purges them here too (a Redis feature store was purged once, by that
        // worker, but this worker's cache of it holds copies).
        dropCached?.(after.tenant, after.userId);
        if (!local || before === undefined) return;
        const revoked = CONSENT_PURPOSES.filter((p) => before.purposes[p] && !after.purposes[p]);
        if (revoked.length === 0) return;
        const all = CONSENT_PURPOSES.every((p) => !after.purposes[p]);
        await features.purgeUser(after.tenant, after.userId, all ? undefined : revoked);
      },
      () => held.book,
      logger,
    );
  }
  const consent = new ConsentBook({
    clock,
    audit,
    defaults: purposeDefaults(snap),
    logger,
    maxRecordsPerTenant: privacy.max_consent_records_per_tenant,
    ...(persistence === undefined ? {} : { persistence }),
  });
  held.book = consent;
  await consent.ready();
  // A worker that starts (or is restarted) must enforce every change made before it. With SQLite
  // the file it just read has them: every worker writes it before it broadcasts a change, and this
  // worker was among those a later change is broadcast to from its fork on. In memory, the workers
  // that are up are the only place they are (the primary keeps none). Redis would have them too,
  // but loading skips an unreachable Redis (the defaults until it answers): the copy keeps the
  // worker at what the others enforce. A copied record never replaces a newer one.
  if (shared !== undefined && privacy.consent_sqlite === undefined) {
    try {
      const copied = await shared.join();
      if (copied > 0) logger.info({ records: copied }, 'consent: copied from another worker');
    } catch (err) {
      await consent.close();
      await features.close();
      throw err;
    }
  }
  consent.onPurge({
    name: 'features',
    purge: (r) => features.purgeUser(r.tenant, r.userId, r.all ? undefined : r.purposes),
  });
  deps.metrics.trackTenantStorage('feature_values', () => features.storedByTenant());
  deps.metrics.trackTenantStorage('consent_records', () =>
    Promise.resolve(consent.recordsByTenant()),
  );
  const reconfigure = (next: ConfigSnapshot): Personalization => {
    features.setDefinitions(toFeatureDefinitions(next.config.features.definitions));
    features.setMaxValuesPerTenant(next.config.features.max_values_per_tenant);
    consent.setDefaults(purposeDefaults(next));
    consent.setMaxRecordsPerTenant(next.config.privacy.max_consent_records_per_tenant);
    policy = new PolicyEngine(next.config.privacy, consent);
    return { features, consent, policy, logger };
  };
  let current = reconfigure(snap);
  setLogRedactor(logger, (obj) => policy?.redact(obj) ?? obj);
  return {
    features,
    consent,
    current: () => current,
    reconfigure: (next) => (current = reconfigure(next)),
    close: async () => {
      setLogRedactor(logger, undefined);
      await features.close();
      await consent.close();
    },
  };
}
