import type { JsonValue } from './json.js';

/** One control-plane decision or change: who did what to which thing, when, and why. */
export interface AuditEntry {
  /** Epoch ms (wall clock): audit records are read by people. */
  readonly at: number;
  /**
   * `key:<fingerprint>` for an admin call, `cli:<user>` for the CLI, `config:<trigger>` for a
   * config reload, `system` for an automatic decision.
   */
  readonly actor: string;
  /** Dotted verb, such as `mode.override`, `model.promote`, `experiment.rollback`. */
  readonly action: string;
  /** What the action was applied to, such as a model version or an experiment id. */
  readonly target: string;
  readonly reason: string;
  /** The changed thing's state before the change; `null` when it did not exist. */
  readonly before?: JsonValue;
  /** The changed thing's state after the change; `null` when it no longer exists. */
  readonly after?: JsonValue;
  /** Anything else worth keeping (what a purge removed, which hooks failed, ...). */
  readonly detail?: Readonly<Record<string, unknown>>;
}

/** An entry as read back from an audit log. */
export interface StoredAuditEntry extends AuditEntry {
  /** Assigned by the log, increasing in append order: the paging cursor. */
  readonly id: number;
}

/** Which entries to read. Every present field must match. */
export interface AuditQuery {
  /** Action prefix: `mode.` matches `mode.override` (plain characters, no wildcards). */
  readonly action?: string;
  readonly actor?: string;
  readonly target?: string;
  /** Entries at or after this time (epoch ms). */
  readonly since?: number;
  /** Entries at or before this time (epoch ms). */
  readonly until?: number;
  /** Paging: entries with an id below this one (the last id of the previous page). */
  readonly beforeId?: number;
  /** At most this many (default 100, clamped to [1, 10 000]). */
  readonly limit?: number;
}

/**
 * The durable audit trail: SQLite (embedded), PostgreSQL (scaled), memory (tests). Append-only.
 * `appendAudit` resolves once the entry is durable: an acknowledged entry survives a kill -9.
 * All pass `test/contract/audit.contract.ts`.
 */
export interface AuditLog {
  appendAudit(entry: AuditEntry): Promise<void>;
  /** Newest first (by id). */
  listAudit(query?: AuditQuery): Promise<StoredAuditEntry[]>;
}

/**
 * Where control-plane code records what it changed. `record` never blocks its caller on I/O
 * it may write behind; `flush` resolves once everything recorded so far is durable (or failed
 * and was logged), so an admin route can answer only after its change is on record.
 */
export interface AuditSink {
  record(entry: AuditEntry): void;
  /** Newest first, after everything recorded so far is written. */
  list(query?: AuditQuery): Promise<readonly StoredAuditEntry[]>;
  flush?(): Promise<void>;
}
