/** One control-plane decision or change: who did what to which thing, and why. */
export interface AuditEntry {
  /** Epoch ms (wall clock): audit records are read by people. */
  readonly at: number;
  /** `key:<fingerprint>` for an admin call, `system` for an automatic decision. */
  readonly actor: string;
  /** Dotted verb, such as `mode.override`, `model.promote`, `experiment.rollback`. */
  readonly action: string;
  /** What the action was applied to, such as a model version or an experiment id. */
  readonly target: string;
  readonly reason: string;
  readonly detail?: Readonly<Record<string, unknown>>;
}

/**
 * Where audit records go. The embedded implementation appends to SQLite, the scaled one to
 * PostgreSQL; both are append-only. `record` never blocks the hot path: it may write behind.
 */
export interface AuditSink {
  record(entry: AuditEntry): void;
  /** Newest first; `action` filters by prefix (`mode.` matches `mode.override`). */
  list(filter?: {
    readonly action?: string;
    readonly limit?: number;
  }): Promise<readonly AuditEntry[]>;
}
