/**
 * The online feature store (issue #7). Feature definitions are declared in config; values are
 * pushed through `POST /v1/features` and read by the `features` stage of journeys. Every value
 * carries its definition's policy label and purpose, so the policy module (`./policy.ts`) can decide
 * ingestion, retrieval, model input and logging without the store knowing consent rules.
 *
 * Implementations: in-process with SQLite write-behind (embedded default) and Redis (scaled). Both
 * pass `test/contract/feature-source.contract.ts`.
 */
import type { ConsentPurpose, DataTag, PolicyLabel } from './policy.js';

/**
 * `float` and `int` are numbers (`int` must be whole); `vector` is a fixed-length array of finite
 * numbers; `enum` is one of `values`.
 */
export type FeatureType = 'float' | 'int' | 'bool' | 'string' | 'enum' | 'vector';

export type FeatureValue = number | boolean | string | readonly number[];

/** Where a feature's values come from and how they were derived (shown by the admin API). */
export interface FeatureLineage {
  /** Upstream system or dataset, such as `kafka:rides` or `warehouse.orders_daily`. */
  readonly source: string;
  /** How the value was computed, such as `count(rides) over 7d`. */
  readonly transformation: string;
}

export interface FeatureDefinition {
  /** Unique name, such as `user.rides_7d`. */
  readonly name: string;
  /** The kind of entity the value is keyed by: `user`, `item`, `session`, ... */
  readonly entity: string;
  readonly type: FeatureType;
  /** Inclusive bounds of `float`/`int` values and of each `vector` element. */
  readonly min?: number;
  readonly max?: number;
  /** The allowed values of an `enum`. */
  readonly values?: readonly string[];
  /** Longest `string`, in characters. */
  readonly maxLength?: number;
  /** Length of a `vector`. */
  readonly dims?: number;
  /** A value is not returned after this long (wall clock from its write); absent: no expiry. */
  readonly ttlMs?: number;
  readonly label: PolicyLabel;
  /** The consent purpose that `consented`/`sensitive`/`restricted` values require. */
  readonly purpose?: ConsentPurpose;
  /** Bumped when the meaning of the values changes; a write naming another version is refused. */
  readonly version: number;
  readonly lineage: FeatureLineage;
  readonly description?: string;
}

/** One value to store. */
export interface FeatureWrite {
  readonly entityId: string;
  readonly feature: string;
  /** Untrusted: validated against the definition. */
  readonly value: unknown;
  /** Whose data it is. Defaults to `entityId` when the definition's entity is `user`. */
  readonly userId?: string;
  /** Residency tag of the value. */
  readonly jurisdiction?: string;
  /** When given, must equal the definition's version. */
  readonly version?: number;
}

/** Why one write is invalid. `index` is the write's position in the batch. */
export interface FeatureIssue {
  readonly index: number;
  readonly feature: string;
  /** A JSON-ish path inside the write, such as `value` or `value[3]`. */
  readonly path: string;
  readonly problem: string;
}

/** A stored, live value with everything the policy module needs. */
export interface FeatureEntry {
  readonly feature: string;
  readonly entityId: string;
  readonly value: FeatureValue;
  readonly version: number;
  readonly label: PolicyLabel;
  readonly purpose?: ConsentPurpose;
  readonly userId?: string;
  readonly jurisdiction?: string;
  /** Wall-clock epoch ms of the write. */
  readonly writtenAt: number;
  /** Wall-clock epoch ms after which the value is gone; absent: never. */
  readonly expiresAt?: number;
}

export interface FeatureKey {
  readonly entityId: string;
  readonly feature: string;
}

/** A read and how it was answered (#17). */
export interface MarkedFeatureRead {
  readonly entries: (FeatureEntry | undefined)[];
  /**
   * True when some values came from a local cache past its freshness because the store could not
   * be read: the answer built from them is degraded.
   */
  readonly stale: boolean;
}

export interface FeatureWriteResult {
  readonly written: number;
}

/**
 * A tenant-isolated online feature store. Errors are SwitchyardErrors: an invalid write is
 * `SY_ERR_FEATURE_INVALID` (the whole batch is refused; the message lists every problem), an
 * unknown feature `SY_ERR_FEATURE_NOT_FOUND`.
 */
export interface FeatureSource {
  definitions(): readonly FeatureDefinition[];
  definition(name: string): FeatureDefinition | undefined;
  /** Every problem of a batch, without writing anything. Empty when the batch is valid. */
  validate(writes: readonly FeatureWrite[]): FeatureIssue[];
  /**
   * Validates, then stores the batch (all or nothing). Values are readable by this process as soon
   * as the promise resolves; an embedded store persists behind (see `flush`).
   */
  write(tenant: string, writes: readonly FeatureWrite[]): Promise<FeatureWriteResult>;
  /** Live values, positionally: `undefined` for missing, expired or unknown features. */
  read(tenant: string, keys: readonly FeatureKey[]): Promise<(FeatureEntry | undefined)[]>;
  /**
   * `read`, saying whether the answer is stale. Only stores fronted by a local cache implement it
   * (`features.store.cache`); without it every read is fresh.
   */
  readMarked?(tenant: string, keys: readonly FeatureKey[]): Promise<MarkedFeatureRead>;
  /** Every live value of one entity (any feature). */
  readEntity(tenant: string, entityId: string): Promise<FeatureEntry[]>;
  /**
   * Deletes the user's values (those whose `userId` is the user), optionally only those needing
   * one of `purposes`; resolves once they can no longer be read anywhere. Returns how many.
   */
  purgeUser(tenant: string, userId: string, purposes?: readonly ConsentPurpose[]): Promise<number>;
  /**
   * Values the tenant holds (expired ones not yet dropped included): what the per-tenant cap
   * counts. A write whose new values would take it past the cap is refused whole with
   * `SY_ERR_TENANT_STORAGE_FULL`; purges, expiry and deletes free room.
   */
  stored(tenant: string): Promise<number>;
  /** `stored` for every tenant holding values (metrics). */
  storedByTenant(): Promise<ReadonlyMap<string, number>>;
  /** Resolves when every write accepted so far is durable. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** The policy tag of a stored value. */
export function featureTag(tenant: string, entry: FeatureEntry): DataTag {
  return {
    tenant,
    label: entry.label,
    ...(entry.purpose === undefined ? {} : { purpose: entry.purpose }),
    ...(entry.userId === undefined ? {} : { userId: entry.userId }),
    ...(entry.jurisdiction === undefined ? {} : { jurisdiction: entry.jurisdiction }),
  };
}
