/**
 * Consent, policy labels and residency (issue #7). ONE policy module decides, at four enforcement
 * points, what may happen to a piece of personal data:
 *
 * - `ingestion`: may it be stored here? (refused → `SY_ERR_CONSENT_REQUIRED` / `SY_ERR_RESIDENCY`)
 * - `retrieval`: may a read return it? (filtered out, never an error)
 * - `model_input`: may it be passed to this model? (stripped from the input)
 * - `logging`: may its value be written to a log? (redacted)
 *
 * Stores (features, vectors) never check consent themselves: they carry each datum's `DataTag`
 * and ask this module. Consent changes are pushed to stores through purge hooks.
 */
import type { Tier } from './backend.js';
import type { FeatureSource } from './feature-source.js';
import type { Logger } from './logger.js';
import type { PolicyLabel, VectorFilter, VectorMetadata } from './vector-index.js';

export type { PolicyLabel } from './vector-index.js';

/** What a user can consent to. Each purpose is granted or not, per tenant and user. */
export type ConsentPurpose = 'behavioral_inference' | 'cross_service_personalization' | 'location';

export const CONSENT_PURPOSES: readonly ConsentPurpose[] = [
  'behavioral_inference',
  'cross_service_personalization',
  'location',
];

export const POLICY_LABELS: readonly PolicyLabel[] = [
  'public',
  'consented',
  'sensitive',
  'restricted',
];

export type EnforcementPoint = 'ingestion' | 'retrieval' | 'model_input' | 'logging';

/** One user's consent within one tenant. Unknown users get the configured defaults. */
export interface ConsentRecord {
  readonly tenant: string;
  readonly userId: string;
  readonly purposes: Readonly<Record<ConsentPurpose, boolean>>;
  /** Wall-clock epoch ms of the last change (0 when the record is the default). */
  readonly updatedAt: number;
  /** Increments on every change; 0 for a default (never written) record. */
  readonly version: number;
}

/** A partial change: purposes not named keep their value. */
export type ConsentUpdate = Partial<Readonly<Record<ConsentPurpose, boolean>>>;

/**
 * What the policy module needs to know about one datum. Features and vectors derive it from their
 * definition / metadata; a journey may tag anything it handles.
 */
export interface DataTag {
  readonly tenant: string;
  readonly label: PolicyLabel;
  /** The use this datum serves; consent for it is what `consented`/`sensitive` data requires. */
  readonly purpose?: ConsentPurpose;
  /** Whose data it is; absent for data about no person (items, documents). */
  readonly userId?: string;
  /** Residency tag: the datum stays on the node set of this jurisdiction. */
  readonly jurisdiction?: string;
}

/** A value travelling with its tag, so any enforcement point (the logger included) can decide. */
export interface Tagged<T = unknown> {
  readonly policyTag: DataTag;
  readonly value: T;
}

/** Where model input is going: residency and per-tier rules depend on it. */
export interface ModelTarget {
  readonly model?: string;
  readonly tier?: Tier;
  /** The gateway node that will run the model; default: this node. */
  readonly node?: string;
  /**
   * Where the model runs (#17): when set, data tagged with a jurisdiction goes to it only when
   * this is that jurisdiction.
   */
  readonly jurisdiction?: string;
}

export type PolicyDenialCode =
  'SY_ERR_CONSENT_REQUIRED' | 'SY_ERR_RESIDENCY' | 'SY_ERR_POLICY_DENIED';

/** A decision and its one-line reason (it goes into the route and logs, never the data). */
export type PolicyDecision =
  | { readonly allow: true; readonly reason: string }
  | { readonly allow: false; readonly reason: string; readonly code: PolicyDenialCode };

/** What `stripModelInput` kept and what it removed (with reasons, never values). */
export interface StripResult<T> {
  readonly kept: T[];
  readonly stripped: readonly { readonly index: number; readonly reason: string }[];
}

/** Residency: jurisdiction tags → the node set allowed to hold and process that data. */
export interface Residency {
  /** This gateway node's id. */
  readonly node: string;
  /** This node's own jurisdiction, when it has one. */
  readonly jurisdiction: string | undefined;
  /** Nodes allowed for a jurisdiction; undefined when the jurisdiction is not configured. */
  nodesFor(jurisdiction: string): readonly string[] | undefined;
  /** Untagged data may go anywhere; tagged data only to its jurisdiction's nodes. */
  mayHold(jurisdiction: string | undefined, node?: string): boolean;
  /** Jurisdictions whose data this node may hold, plus `null` for untagged data. */
  localJurisdictions(): readonly (string | null)[];
}

/**
 * The one policy module. All methods are synchronous and cheap (consent is held in memory), so
 * the hot path can call them per datum.
 */
export interface PolicyModule {
  readonly residency: Residency;
  /** The raw decision for one datum at one point. */
  decide(point: EnforcementPoint, tag: DataTag, target?: ModelTarget): PolicyDecision;
  /** Ingestion: throws a SwitchyardError (`SY_ERR_CONSENT_REQUIRED`, `SY_ERR_RESIDENCY`) if refused. */
  admit(tag: DataTag): void;
  /** Retrieval: the items that may be returned, in order. */
  filterRetrieved<T>(items: readonly T[], tagOf: (item: T) => DataTag): T[];
  /**
   * Retrieval for vector search: a serializable filter (travels to remote shards) and an
   * in-process predicate that applies the per-user consent rules to every candidate.
   */
  vectorGuard(tenant: string): {
    readonly filter: VectorFilter;
    readonly predicate: (meta: VectorMetadata) => boolean;
  };
  /** Model input: removes what `target` may not see. */
  stripModelInput<T>(
    items: readonly T[],
    tagOf: (item: T) => DataTag,
    target?: ModelTarget,
  ): StripResult<T>;
  /**
   * Logging: a copy of `value` in which every `Tagged` value that may not be logged is replaced
   * by `"[redacted:<label>]"`. Untagged data passes through (tag it, or do not log it).
   */
  redact(value: unknown): unknown;
}

/** What a purge hook is asked to delete after a consent change. */
export interface PurgeRequest {
  readonly tenant: string;
  readonly userId: string;
  /** Purposes that were just revoked. */
  readonly purposes: readonly ConsentPurpose[];
  /** True when every purpose was revoked (delete everything about the user). */
  readonly all: boolean;
}

/**
 * A store that holds per-user data and must shrink when consent is revoked, such as the vector
 * retriever: `{ name: 'vectors', purge: (r) => retriever.purgeUser(r.tenant, r.userId) }`.
 * Resolves with the number of items removed.
 */
export interface PurgeHook {
  readonly name: string;
  purge(request: PurgeRequest): Promise<number>;
}

/** The result of a consent change: the new record, what was revoked, and what each hook purged. */
export interface ConsentChange {
  readonly record: ConsentRecord;
  readonly revoked: readonly ConsentPurpose[];
  readonly granted: readonly ConsentPurpose[];
  /** Items removed per purge hook name (only when something was revoked). */
  readonly purged: Readonly<Record<string, number>>;
  /** Purge hooks that failed, by name, with the error code; the audit entry lists them too. */
  readonly failed: Readonly<Record<string, string>>;
}

/**
 * Consent records per tenant, user and purpose. Reads are synchronous (in-memory); changes are
 * durable when the promise resolves. A revocation purges at once: it runs every purge hook before
 * resolving, and records an `AuditEntry` (`consent.revoke`) naming what was purged.
 */
export interface ConsentRegistry {
  get(tenant: string, userId: string): ConsentRecord;
  /** Sets purposes; a purpose turned from granted to not granted is a revocation (purges). */
  set(tenant: string, userId: string, update: ConsentUpdate, actor: string): Promise<ConsentChange>;
  /** Revokes the listed purposes, or all of them. */
  revoke(
    tenant: string,
    userId: string,
    purposes: readonly ConsentPurpose[] | 'all',
    actor: string,
  ): Promise<ConsentChange>;
  /** Registers a purge hook; returns the function that unregisters it. */
  onPurge(hook: PurgeHook): () => void;
}

/**
 * Diagnostics channels (`node:diagnostics_channel`) the feature store and the policy module
 * publish on; metrics subscribe. Publishing costs nothing when nobody listens.
 */
export const PERSONALIZATION_CHANNELS = {
  /** `PolicyDeniedEvent`: a datum refused, filtered, stripped or redacted. */
  denied: 'switchyard:policy:denied',
  /** `ConsentChangeEvent`: a consent change and what it purged. */
  consent: 'switchyard:consent:change',
  /** `FeatureOpEvent`: feature reads and writes. */
  features: 'switchyard:features:op',
  /** `FeatureCacheEvent`: reads answered by the local cache of a remote feature store. */
  featureCache: 'switchyard:features:cache',
} as const;

export interface PolicyDeniedEvent {
  readonly point: EnforcementPoint;
  readonly code: PolicyDenialCode;
  readonly label: PolicyLabel;
}

export interface ConsentChangeEvent {
  readonly action: 'revoke' | 'update';
  readonly purged: Readonly<Record<string, number>>;
  readonly failed: number;
}

export interface FeatureOpEvent {
  readonly op: 'read' | 'write';
  /** `read`: values found / not found; `write`: `ok`, `invalid`, `full` (tenant cap) or `unavailable`. */
  readonly result: 'hit' | 'miss' | 'ok' | 'invalid' | 'full' | 'unavailable';
  readonly count: number;
}

/**
 * How values asked of a cached remote feature store were answered (#17): `hit` from the cache
 * within its TTL, `miss` read remotely, `stale` from the cache because the store could not be
 * read, `error` neither (the read failed).
 */
export interface FeatureCacheEvent {
  readonly result: 'hit' | 'miss' | 'stale' | 'error';
  readonly count: number;
}

/**
 * Where consent records are kept durably: SQLite (embedded, synchronous) or Redis (shared by the
 * replicas, which then hear each other's changes through `subscribe`); absent: memory only.
 * Implementations live in `state/` and pass `test/contract/consent-store.contract.ts`.
 */
export interface ConsentPersistence {
  loadAll(): ConsentRecord[] | Promise<ConsentRecord[]>;
  save(record: ConsentRecord): void | Promise<void>;
  /**
   * Changes made by other replicas (and, after a reconnect, everything again). A promise resolves
   * once changes are being delivered (or it gave up waiting): the book loads the stored records
   * only then, so a change made between the load and the subscription is never missed.
   */
  subscribe?(onRecord: (record: ConsentRecord) => void): void | Promise<void>;
  close(): void | Promise<void>;
}

/** Online features, consent and the policy module that guards both (#7), as one snapshot sees them. */
export interface Personalization {
  readonly features: FeatureSource;
  readonly consent: ConsentRegistry;
  readonly policy: PolicyModule;
  readonly logger: Logger;
}
