import { isAbsolute, resolve } from 'node:path';
import type { ClusterPeer } from '../contracts/cluster.js';
import type {
  FeatureDefinition,
  FeatureEntry,
  FeatureSource,
  FeatureType,
} from '../contracts/feature-source.js';
import type { Logger } from '../contracts/logger.js';
import type { ConsentPurpose, PolicyLabel } from '../contracts/policy.js';
import type { Clock } from '../core/clock.js';
import { CachedFeatureStore, type FeatureCacheSettings } from './cached-feature-store.js';
import { MemoryFeatureStore } from './memory-feature-store.js';
import { ReplicatedFeatureStore } from './replicated-feature-store.js';

/** One `features.definitions` entry of the config (snake_case, as written in YAML). */
export interface FeatureDefinitionInput {
  readonly entity: string;
  readonly type: FeatureType;
  readonly min?: number | undefined;
  readonly max?: number | undefined;
  readonly values?: readonly string[] | undefined;
  readonly max_length?: number | undefined;
  readonly dims?: number | undefined;
  readonly ttl_ms?: number | undefined;
  readonly label: PolicyLabel;
  readonly purpose?: ConsentPurpose | undefined;
  readonly version: number;
  readonly lineage: { readonly source: string; readonly transformation: string };
  readonly description?: string | undefined;
}

/** The `features.store` section of the config. */
export type FeatureStoreInput =
  | { readonly kind: 'embedded'; readonly sqlite?: string | undefined; readonly flush_ms: number }
  | {
      readonly kind: 'redis';
      readonly url: string;
      readonly prefix: string;
      readonly command_timeout_ms: number;
      readonly cache?: FeatureCacheSettings | undefined;
    };

export function toFeatureDefinitions(
  input: Readonly<Record<string, FeatureDefinitionInput>>,
): FeatureDefinition[] {
  return Object.entries(input).map(([name, d]) => {
    const opt = <K extends string, V>(key: K, v: V | undefined) =>
      (v === undefined ? {} : { [key]: v }) as Partial<Record<K, V>>;
    return {
      name,
      entity: d.entity,
      type: d.type,
      ...opt('min', d.min),
      ...opt('max', d.max),
      ...opt('values', d.values),
      ...opt('maxLength', d.max_length),
      ...opt('dims', d.dims),
      ...opt('ttlMs', d.ttl_ms),
      label: d.label,
      ...opt('purpose', d.purpose),
      version: d.version,
      lineage: { source: d.lineage.source, transformation: d.lineage.transformation },
      ...opt('description', d.description),
    };
  });
}

/** A feature store whose definitions can be swapped on config reload. */
export interface OpenedFeatureStore extends FeatureSource {
  setDefinitions(definitions: readonly FeatureDefinition[]): void;
  /** The per-tenant cap of stored values (`features.max_values_per_tenant`), on reload. */
  setMaxValuesPerTenant(max: number | undefined): void;
  /**
   * Drops the user's values from this process's cache of a remote store, when it has one: a
   * revocation made elsewhere purged the store itself (#17).
   */
  dropCachedUser?(tenant: string, userId: string): number;
}

/**
 * Opens the configured store: in-process (with SQLite write-behind when a file is given; shared by
 * the workers of `serve --workers N`) or Redis, optionally behind a local read-through cache.
 */
export async function openFeatureStore(
  store: FeatureStoreInput,
  definitions: readonly FeatureDefinition[],
  options: {
    readonly dir: string;
    readonly clock: Clock;
    readonly logger: Logger;
    readonly maxValuesPerTenant?: number;
    /**
     * The other workers of `serve --workers N` (#17): an embedded store then holds every value in
     * every worker (`ReplicatedFeatureStore`), copied from one that is up before this one serves.
     */
    readonly cluster?: ClusterPeer;
    /** With `cluster`: whether another worker's value may still be stored when it arrives. */
    readonly admit?: (tenant: string, entry: FeatureEntry) => boolean;
  },
): Promise<OpenedFeatureStore> {
  const cap =
    options.maxValuesPerTenant === undefined
      ? {}
      : { maxValuesPerTenant: options.maxValuesPerTenant };
  // Redis and SQLite are imported only when configured: loaded for nothing they cost ~25 MB RSS.
  if (store.kind === 'redis') {
    const { RedisFeatureStore } = await import('./redis-feature-store.js');
    const redis = new RedisFeatureStore({
      url: store.url,
      prefix: store.prefix,
      definitions,
      clock: options.clock,
      commandTimeoutMs: store.command_timeout_ms,
      logger: options.logger,
      ...cap,
    });
    if (!(await redis.ready(2_000)))
      options.logger.warn(
        {},
        'feature store: Redis is not reachable yet; reads fail with 503 until it is',
      );
    // An edge node keeps what it read close (#17): fresh reads without a round trip to its
    // region's Redis, and stale ones while that Redis is away.
    return store.cache === undefined
      ? redis
      : new CachedFeatureStore(redis, store.cache, options.clock);
  }
  const path =
    store.sqlite === undefined
      ? undefined
      : isAbsolute(store.sqlite)
        ? store.sqlite
        : resolve(options.dir, store.sqlite);
  const journal =
    path === undefined
      ? undefined
      : new (await import('./sqlite-feature-journal.js')).SqliteFeatureJournal(path);
  const memory = new MemoryFeatureStore({
    definitions,
    clock: options.clock,
    flushMs: store.flush_ms,
    logger: options.logger,
    ...cap,
    ...(journal === undefined ? {} : { journal }),
  });
  if (options.cluster === undefined) return memory;
  const replicated = new ReplicatedFeatureStore(
    memory,
    options.cluster,
    options.admit === undefined ? {} : { admit: options.admit },
  );
  try {
    const copied = await replicated.join();
    if (copied > 0)
      options.logger.info({ values: copied }, 'feature store: copied from another worker');
  } catch (err) {
    await replicated.close();
    throw err;
  }
  return replicated;
}
