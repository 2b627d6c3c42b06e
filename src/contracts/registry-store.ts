/**
 * Durable state of release management (issue #6): the model registry (models, versions, signed
 * artifacts and their stages), experiments and their ramp state, experiment counters, exposures
 * and the audit trail. Embedded: SQLite in WAL mode; scaled: PostgreSQL. Both pass
 * `test/contract/registry-store.contract.ts`, and, as the gateway's audit log,
 * `test/contract/audit.contract.ts`.
 *
 * Every method that returns resolves only once the write is durable (an acknowledged write
 * survives a kill -9). Hot-path data (counters, exposures) reaches the store only in batches,
 * written behind by the release manager.
 */
import type { AuditLog } from './audit.js';

/** The lifecycle of a model version. */
export type ReleaseStage = 'staging' | 'shadow' | 'canary' | 'production' | 'retired';

export interface ModelRecord {
  readonly name: string;
  readonly description: string;
  /** Epoch ms. */
  readonly createdAt: number;
}

export interface VersionRecord {
  readonly model: string;
  readonly version: string;
  readonly stage: ReleaseStage;
  /** `sha256:<hex>` over the artifact's manifest (each file's sha256 and relative path). */
  readonly digest: string;
  readonly sizeBytes: number;
  /** Files of the artifact, relative to its directory in the registry. */
  readonly files: readonly string[];
  /** Base64 Ed25519 signature over the signing message; absent until signed. */
  readonly signature?: string;
  /** The pinned public key the signature verifies against. */
  readonly keyId?: string;
  readonly createdAt: number;
  readonly updatedAt: number;
  /** When the version was (or is to be) retired, epoch ms. */
  readonly retireAt?: number;
  readonly metadata: Readonly<Record<string, string>>;
}

export type VersionPatch = Partial<
  Pick<VersionRecord, 'stage' | 'signature' | 'keyId' | 'retireAt' | 'updatedAt'>
>;

/** Eligibility: every present field must match (AND); a list matches any of its values (OR). */
export interface EligibilitySpec {
  readonly geo?: readonly string[];
  readonly device?: readonly string[];
  readonly tenant?: readonly string[];
  readonly class?: readonly string[];
  /** Attribute equality (or membership), or numeric range `{ gte, lte }` (user history). */
  readonly attributes?: Readonly<
    Record<
      string,
      | string
      | number
      | boolean
      | readonly (string | number | boolean)[]
      | { readonly gte?: number; readonly lte?: number }
    >
  >;
}

export interface VariantSpec {
  readonly name: string;
  readonly model: string;
  readonly version?: string;
  /** Relative weight (A/B); ignored by canaries (the ramp decides) and bandits (the posterior). */
  readonly weight: number;
}

/** Pre-declared rollback rules: the candidate is compared with the control over `window_s`. */
export interface RollbackRules {
  /** Breach when candidate p95 > control p95 × this (e.g. 1.2 = +20 %). */
  readonly p95_latency_ratio?: number;
  /**
   * With `p95_latency_ratio`: breach only when the candidate's p95 is also at least this many ms
   * above the control's, so sub-millisecond jitter between fast models never rolls a release back.
   */
  readonly p95_latency_min_delta_ms?: number;
  /** Breach when candidate error rate > control error rate + this. */
  readonly error_rate_delta?: number;
  readonly fallback_rate_delta?: number;
  /** Breach when the candidate's policy-exception rate exceeds this. */
  readonly policy_exception_rate?: number;
  /** Shadow releases: breach when label disagreement exceeds this share. */
  readonly shadow_disagreement?: number;
  /** Each side needs this many requests in the window before a rule is judged. */
  readonly min_samples: number;
  readonly window_s: number;
}

export interface RampSpec {
  /** Candidate share, in percent, step by step (such as [1, 5, 25, 50, 100]). */
  readonly steps: readonly number[];
  /** A step is held at least this long, and advances only while every rule holds. */
  readonly hold_s: number;
}

export interface BanditSpec {
  /** Each arm is chosen with at least this probability (0 ≤ floor ≤ 1/arms). */
  readonly exploration_floor: number;
  /** Posterior per segment: `geo`, `device`, `tenant`, `class` or `attr.<name>`. */
  readonly segment_by?: string;
}

export interface ShadowSpec {
  /** Share of the slot's traffic mirrored, in percent. */
  readonly percent: number;
  readonly targets: readonly { readonly model: string; readonly version?: string }[];
}

export type ExperimentKind = 'ab' | 'canary' | 'bandit' | 'shadow';

/** A declared experiment (config `experiments:` or the admin API). Snake case, as in config. */
export interface ExperimentSpec {
  readonly id: string;
  readonly slot: string;
  readonly kind: ExperimentKind;
  /** Experiments in one layer are mutually exclusive; layers are independent. */
  readonly layer: string;
  /** Hashing seed of the variant split; defaults to the id. */
  readonly seed?: string;
  /** Share of the layer's units the experiment takes, in percent. */
  readonly traffic: number;
  /** Share of the experiment's units held out on the control, in percent. */
  readonly holdout: number;
  readonly eligibility?: EligibilitySpec;
  /** The first variant is the control (the stable version of a canary). */
  readonly variants: readonly VariantSpec[];
  readonly ramp?: RampSpec;
  readonly rules?: RollbackRules;
  readonly bandit?: BanditSpec;
  readonly shadow?: ShadowSpec;
  readonly description?: string;
}

export type ExperimentStatus = 'running' | 'paused' | 'rolled_back' | 'completed';

export interface ExperimentRecord {
  readonly spec: ExperimentSpec;
  readonly status: ExperimentStatus;
  /** Layer buckets [start, end) the experiment owns, fixed at creation (sticky). */
  readonly allocation: { readonly start: number; readonly end: number };
  /** Index into `spec.ramp.steps`; 0 without a ramp. */
  readonly step: number;
  /** Epoch ms the current step began. */
  readonly stepSince: number;
  /** Why the status last changed. */
  readonly reason: string;
  /** Optimistic concurrency: bumped by every write. */
  readonly revision: number;
  readonly createdAt: number;
  readonly updatedAt: number;
}

/** One aggregate: count, sum and sum of squares of a metric of one variant (and segment). */
export interface CounterKey {
  readonly experiment: string;
  readonly variant: string;
  /** `''` when the experiment is not segmented. */
  readonly segment: string;
  readonly metric: string;
}

export interface CounterRow extends CounterKey {
  readonly n: number;
  readonly sum: number;
  readonly sumSq: number;
}

/** One exposure: enough to tie an inference to what served it and to replay the assignment. */
export interface ExposureRow {
  readonly inferenceId: string;
  readonly at: number;
  readonly experiment: string;
  readonly variant: string;
  readonly seed: string;
  readonly bucket: number;
  readonly model: string;
  readonly version: string;
  readonly unit: string;
  /**
   * The tenant whose request it was ('' when unknown, and on rows written before #15): only it may
   * give the inference's reward, on any replica.
   */
  readonly tenant: string;
  /** A bandit's segment of the unit (`segment_by`), '' otherwise: the posterior a reward feeds. */
  readonly segment: string;
}

export interface RegistryStore extends AuditLog {
  readonly kind: 'sqlite' | 'postgres';
  upsertModel(model: ModelRecord): Promise<void>;
  getModel(name: string): Promise<ModelRecord | undefined>;
  listModels(): Promise<ModelRecord[]>;
  /** False (and nothing written) when the version exists already. */
  insertVersion(version: VersionRecord): Promise<boolean>;
  getVersion(model: string, version: string): Promise<VersionRecord | undefined>;
  /** Versions of one model (or all), oldest first. */
  listVersions(model?: string): Promise<VersionRecord[]>;
  updateVersion(
    model: string,
    version: string,
    patch: VersionPatch,
  ): Promise<VersionRecord | undefined>;
  /**
   * Writes the experiment if its stored revision is `expectedRevision` (0: must not exist).
   * Returns the stored record (revision bumped) or `undefined` on a conflict.
   */
  putExperiment(
    record: Omit<ExperimentRecord, 'revision'>,
    expectedRevision: number,
  ): Promise<ExperimentRecord | undefined>;
  getExperiment(id: string): Promise<ExperimentRecord | undefined>;
  listExperiments(): Promise<ExperimentRecord[]>;
  deleteExperiment(id: string): Promise<boolean>;
  /** Adds to the counters atomically (one transaction), creating missing rows. */
  addCounters(deltas: readonly CounterRow[]): Promise<void>;
  readCounters(experiment: string): Promise<CounterRow[]>;
  appendExposures(rows: readonly ExposureRow[]): Promise<void>;
  /** Newest first. */
  listExposures(filter: {
    readonly experiment?: string;
    readonly inferenceId?: string;
    readonly tenant?: string;
    readonly limit?: number;
  }): Promise<ExposureRow[]>;
  /** A number that grows with every registry or experiment change (for change polling). */
  changeCounter(): Promise<number>;
  close(): Promise<void>;
}
