import type { AuditEntry, AuditSink } from '../contracts/audit.js';

/**
 * An in-memory AuditSink: the newest `capacity` records, for a gateway with no database
 * configured and for tests. The embedded (SQLite) and scaled (PostgreSQL) sinks replace it.
 */
export class MemoryAuditSink implements AuditSink {
  private readonly entries: AuditEntry[] = [];

  constructor(private readonly capacity = 10_000) {}

  record(entry: AuditEntry): void {
    this.entries.push(Object.freeze({ ...entry }));
    if (this.entries.length > this.capacity) this.entries.shift();
  }

  list(
    filter: { readonly action?: string; readonly limit?: number } = {},
  ): Promise<readonly AuditEntry[]> {
    const out: AuditEntry[] = [];
    const limit = filter.limit ?? 100;
    for (let i = this.entries.length - 1; i >= 0 && out.length < limit; i--) {
      const e = this.entries[i]!;
      if (filter.action === undefined || e.action.startsWith(filter.action)) out.push(e);
    }
    return Promise.resolve(out);
  }
}
