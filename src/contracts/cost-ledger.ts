/**
 * The cost ledger (#15 item 4): what model calls cost and what they bought, as totals per UTC
 * day, tenant, journey, model, traffic class and experiment arm. Every replica adds to the same
 * totals with atomic increments (`+=` in one SQL upsert), so they stay exact across replicas.
 */

/** The dimensions a total is kept by. `''` where one does not apply (no journey, no experiment). */
export interface CostKey {
  /** UTC day, `YYYY-MM-DD`. */
  readonly day: string;
  readonly tenant: string;
  /** The journey, or `''` for a direct API call. */
  readonly journey: string;
  /** The model that answered (billed), or `''` on a request's own row (requests, outcomes). */
  readonly model: string;
  readonly trafficClass: string;
  readonly experiment: string;
  /** The experiment's variant. */
  readonly arm: string;
}

/** What is added to one key's totals. Every field is a count; cost is in nano-units (integer). */
export interface CostCounts {
  /** Client requests (on the request's row, model `''`). */
  readonly requests: number;
  readonly calls: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** Calls whose tokens the gateway's tokenizer counted (the upstream reported none). */
  readonly estimatedCalls: number;
  /** Cost in 1e-9 of the config's currency unit: integers add exactly in any order. */
  readonly costNanos: number;
  /** Calls answered by an edge-tier model. */
  readonly edgeCalls: number;
  /** Calls answered by a fallback, not the model asked for. */
  readonly fallbackCalls: number;
  readonly failedCalls: number;
  /** Journey requests that looked in a cache, and those it answered. */
  readonly cacheLookups: number;
  readonly cacheHits: number;
  /** Retrieval stages run (vector searches). */
  readonly vectorReads: number;
  /** `/v1/feedback` outcomes: conversions (reward > 0) and feedback received. */
  readonly conversions: number;
  readonly feedback: number;
}

export interface CostDelta extends CostKey, CostCounts {}

export const COST_DIMENSIONS = ['tenant', 'journey', 'model', 'class', 'arm', 'day'] as const;
export type CostDimension = (typeof COST_DIMENSIONS)[number];

export interface CostQuery {
  readonly groupBy: CostDimension;
  /** Days from `since` to `until`, inclusive (`YYYY-MM-DD`). */
  readonly since?: string;
  readonly until?: string;
  readonly tenant?: string;
}

/**
 * One `/v1/feedback` outcome on a request (#15): counted on the request's own row (`key`, model
 * `''`) once per tenant and request id, whichever replica receives it.
 */
export interface OutcomeClaim {
  readonly requestId: string;
  /** The request's row; `key.tenant` is the tenant that gave the feedback (and owns the request). */
  readonly key: CostKey;
  /** In [0, 1]: above 0 is a conversion. */
  readonly reward: number;
  /** Epoch ms the feedback arrived. */
  readonly at: number;
}

/** One group's totals (`arm` groups by `experiment/arm`). */
export interface CostGroup extends CostCounts {
  readonly key: string;
}

/**
 * Where the totals are kept: SQLite (embedded) or PostgreSQL (scaled); both pass
 * `test/contract/cost-ledger.contract.ts`. `add` applies a batch atomically.
 */
export interface CostLedgerStore {
  add(deltas: readonly CostDelta[]): Promise<void>;
  totals(query: CostQuery): Promise<CostGroup[]>;
  /** A tenant's cost on a day, in nano-units. */
  spentNanos(tenant: string, day: string): Promise<number>;
  /**
   * Counts an outcome (`feedback`, and `conversions` when the reward is above 0) on its key's row,
   * in one transaction with a unique row per (tenant, request id): false, and nothing counted,
   * when that request already has its outcome (from any replica or process sharing the store).
   */
  addOutcome(o: OutcomeClaim): Promise<boolean>;
  /** Whether that request (tenant, request id) has its outcome already: a read, nothing counted. */
  hasOutcome(tenant: string, requestId: string): Promise<boolean>;
  /**
   * Forgets the outcome claims made before `before` (wall ms): a feedback repeated after that
   * would count again. Resolves with how many were deleted. The totals are not touched.
   */
  pruneOutcomes(before: number): Promise<number>;
  close(): Promise<void>;
}

/** A tenant's spend budget, enforced when a request is admitted. */
export interface SpendBudget {
  /** Throws SY_ERR_BUDGET_EXHAUSTED when the tenant's budget for today is spent. */
  admit(tenant: string): void;
}

export const COUNT_FIELDS = [
  'requests',
  'calls',
  'inputTokens',
  'outputTokens',
  'estimatedCalls',
  'costNanos',
  'edgeCalls',
  'fallbackCalls',
  'failedCalls',
  'cacheLookups',
  'cacheHits',
  'vectorReads',
  'conversions',
  'feedback',
] as const satisfies readonly (keyof CostCounts)[];

export const NO_COUNTS: CostCounts = Object.fromEntries(
  COUNT_FIELDS.map((f) => [f, 0]),
) as unknown as CostCounts;
