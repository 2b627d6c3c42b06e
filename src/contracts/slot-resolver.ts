/**
 * Release-aware slot resolution (issue #6). A journey's `infer(slot)` stage asks which concrete
 * model version serves a *slot* for one request; the release manager answers from its live
 * experiments (A/B, canary ramps, bandits, holdouts) and says which shadow copies to mirror.
 *
 * `resolve` is on the hot path: synchronous, allocation-light, no I/O (≤ 5 µs with 50 live
 * experiments, measured by `bench/release.ts`). Exposures and outcomes are reported back through
 * `report`, which never blocks: it queues work and returns.
 *
 * Assignment is deterministic and replayable: `bucket = floor(murmur3_x86_32(seed + ':' + unitId, 1)
 * × 10000 / 2^32)` (`src/release/hashing.ts`), where `unitId` is `tenant + '/' + userId` (or the
 * request id when there is no user).
 * Re-running `resolve` with the same unit, the same experiment definitions and the same ramp
 * returns the same assignment (`seed` and `bucket` are returned so a replay can check it).
 *
 * The journeys orchestrator adapts this to its `SlotResolver` stage port (`contracts/stage.ts`):
 * an `undefined` answer means "no release rule for this slot, use the configured model".
 */

/** Flat request attributes predicates can match (plan, app version, history counters, ...). */
export type UnitAttributeValue = string | number | boolean | null;

/** Who and what a request is, as far as assignment is concerned. */
export interface AssignmentUnit {
  readonly tenant: string;
  /** The randomization unit; without it the request id is used (no stickiness across requests). */
  readonly userId?: string;
  readonly requestId?: string;
  /** Region or country code, such as `eu-west` or `de`. */
  readonly geo?: string;
  /** `ios`, `android`, `web`, ... */
  readonly device?: string;
  readonly trafficClass: string;
  readonly attributes?: Readonly<Record<string, UnitAttributeValue | undefined>>;
}

/** A model version to mirror the request to, asynchronously, after the user's answer. */
export interface ShadowTarget {
  readonly model: string;
  readonly version?: string;
  /** The shadow release (experiment id) whose agreement statistics the copy feeds. */
  readonly experiment: string;
}

/** What serves one request for one slot, and why. */
export interface SlotAssignment {
  readonly model: string;
  /** Absent: whatever version the model serves by default (its production version). */
  readonly version?: string;
  /** The experiment (A/B, canary, bandit) that decided, if any. */
  readonly experiment?: string;
  /** The variant (arm) within that experiment: `control`, `treatment`, `canary`, `stable`, ... */
  readonly variant?: string;
  /** The experiment's hashing seed and the unit's bucket in [0, 10000): enough to replay. */
  readonly seed?: string;
  readonly bucket?: number;
  /** The hashed unit id (`tenant/userId` or the request id), recorded with the exposure. */
  readonly unit?: string;
  /** True when the unit is in the experiment's (or its layer's) holdout. */
  readonly holdout?: boolean;
  /** Shadow copies to mirror (possibly empty). Never delays or changes the answer. */
  readonly shadow?: readonly ShadowTarget[];
  /** One line for the route: `default`, `exp:ranker-ab/treatment`, `canary:intent-v3@5%`, ... */
  readonly reason: string;
}

/** How one served request went, for statistics, guardrails, bandit rewards and rollback rules. */
export interface SlotOutcome {
  /** The inference id (request id) that `POST /v1/feedback` later refers to for rewards. */
  readonly inferenceId: string;
  readonly slot: string;
  readonly assignment: SlotAssignment;
  /** Model latency in ms as the user saw it. */
  readonly ms: number;
  /** `ok`, or the error code the call ended with. */
  readonly outcome: string;
  /** True when a fallback answered instead of the assigned version. */
  readonly fallback?: boolean;
  /** True when a policy check refused or altered the answer. */
  readonly policyException?: boolean;
  /** The primary output, used to compute agreement with shadow copies. */
  readonly output?: SlotOutput;
}

/** The comparable part of a model answer: a label with scores, and/or an embedding. */
export interface SlotOutput {
  readonly label?: string;
  readonly score?: number;
  readonly vector?: Float32Array | readonly number[];
}

/** Runs one shadow copy; supplied by the caller, which owns the backends. */
export type ShadowInvoke = (target: ShadowTarget, signal: AbortSignal) => Promise<SlotOutput>;

/**
 * The release manager's hot-path port. Implemented by `src/release/release-manager.ts`.
 */
export interface ReleaseSlotResolver {
  /** Synchronous and cheap; `undefined` when no release rule covers this slot. */
  resolve(slot: string, unit: AssignmentUnit): SlotAssignment | undefined;
  /**
   * Records the exposure and outcome of a served request (never awaits storage). When the
   * assignment has shadow targets, mirrors them with `invoke` after this call returns, unless
   * shadow load is being shed.
   */
  report(outcome: SlotOutcome, invoke?: ShadowInvoke): void;
}
