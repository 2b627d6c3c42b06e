import type {
  AuditEntry,
  AuditLog,
  AuditQuery,
  AuditSink,
  StoredAuditEntry,
} from '../contracts/audit.js';
import { events, publish } from '../core/events.js';
import type { Logger } from '../contracts/logger.js';

/**
 * The durable AuditSink over an audit log (SQLite embedded, PostgreSQL scaled). Entries are
 * written in the order recorded. When nothing is pending, `record` starts the write at once: a
 * SQLite log has the entry on disk before `record` returns, so a change is on record before the
 * caller can acknowledge it; a PostgreSQL log commits it behind, and `flush` waits for that. A
 * failed write is logged and counted (`switchyard_audit_writes_total{result="failed"}`) and never
 * fails the change itself: an override during an outage of the store must still work.
 */
export class StoreAuditSink implements AuditSink {
  private chain: Promise<void> = Promise.resolve();
  private pending = 0;
  private failures = 0;

  constructor(
    readonly log: AuditLog,
    private readonly logger?: Logger,
  ) {}

  record(entry: AuditEntry): void {
    const e = Object.freeze({ ...entry });
    // The executor runs at once; a log that throws instead of rejecting is caught the same way.
    const write = (): Promise<void> =>
      new Promise<void>((resolve) => resolve(this.log.appendAudit(e))).then(
        () => publish(events.auditWrite, { action: e.action, result: 'ok' }),
        (err: unknown) => {
          this.failures++;
          publish(events.auditWrite, { action: e.action, result: 'failed' });
          this.logger?.error({ err: String(err), action: e.action }, 'audit write failed');
        },
      );
    const started = this.pending === 0 ? write() : this.chain.then(write);
    this.pending++;
    this.chain = started.then(() => {
      this.pending--;
    });
  }

  /** Audit writes that failed since start (also logged). */
  failed(): number {
    return this.failures;
  }

  flush(): Promise<void> {
    return this.chain;
  }

  async list(query: AuditQuery = {}): Promise<readonly StoredAuditEntry[]> {
    await this.chain;
    return this.log.listAudit(query);
  }
}
