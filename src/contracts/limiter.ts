/**
 * A quota window. `{ ms }` is a rate: `limit` units per `ms`, enforced as a GCRA (a token bucket
 * that refills continuously) holding at most `burst` units, so that any interval of that length
 * admits at most `limit + burst` units. `day` and `month` are fixed calendar windows in UTC,
 * which is what spend budgets are read against.
 */
export type QuotaWindow = { readonly ms: number } | 'day' | 'month';

/** One counter to charge: `amount` more units, only if the counter stays within `limit`. */
export interface QuotaCharge {
  /** The counter's name, such as `t:acme:tokens` (an implementation adds its own prefix). */
  readonly key: string;
  /** Whole units (requests, tokens, or spend in micro-units of the currency). */
  readonly limit: number;
  readonly window: QuotaWindow;
  /** Whole units, >= 0. */
  readonly amount: number;
  /** For `{ ms }` windows: units that may be taken at once after a quiet spell (default `limit`). */
  readonly burst?: number;
}

/** Proof of one charge, handed back to `settle` to correct it to the actual amount. */
export interface QuotaReceipt {
  readonly key: string;
  readonly window: QuotaWindow;
  /** The calendar bucket (window start, epoch ms) the amount went into; 0 for a rate. */
  readonly bucket: number;
  /** For a rate: the limit it was taken under (a settle moves the bucket by units of it). */
  readonly limit: number;
  readonly amount: number;
  /** False when a local fallback took the charge (the shared store was unreachable). */
  readonly shared: boolean;
  /**
   * For a charge taken locally: the outage it was counted in (a number the implementation
   * keeps), so that a later `settle` knows whether that usage was written back already.
   */
  readonly outage?: number;
}

export interface QuotaDecision {
  readonly allowed: boolean;
  /** The key of the first charge that did not fit (when refused). */
  readonly refused?: string;
  /** When the refused charge could fit again, ms from now (0 when allowed). */
  readonly retryAfterMs: number;
  /** One per charge, in order; empty when refused (nothing was taken). */
  readonly receipts: readonly QuotaReceipt[];
  /** False when the decision was made by the local fallback. */
  readonly shared: boolean;
}

/**
 * Counts requests, tokens and spend against limits. `reserve` is all-or-nothing: every charge
 * fits and is taken, or nothing is. Token and spend charges take an estimate up front and are
 * corrected with `settle` once the actual usage is known (streams included). Implementations:
 * in process (embedded) and Redis (shared across replicas, falling back to local counting when
 * Redis is away). Both pass `test/contract/limiter.contract.ts`. Never throws for an outage;
 * never waits on an unreachable store longer than its stated bound.
 *
 * An implementation with a shared store keeps these through an outage of that store (DESIGN.md,
 * issue #13): local counting starts from the last shared state it saw, so a switch grants no
 * fresh budget or burst; usage counted locally (settles included) is written back once when the
 * store returns, into the calendar bucket it was counted in; a command that timed out (and was
 * counted locally) but reached the store late is counted once, not twice.
 */
export interface QuotaLimiter {
  reserve(charges: readonly QuotaCharge[]): Promise<QuotaDecision>;
  /** Moves a receipt's bucket by `actual - receipt.amount` (a refund when negative). */
  settle(receipt: QuotaReceipt, actual: number): Promise<void>;
  /** Units counted against `key` now (for a rate: units not yet drained from its bucket). */
  usage(key: string, window: QuotaWindow): Promise<number>;
  close(): Promise<void>;
}
