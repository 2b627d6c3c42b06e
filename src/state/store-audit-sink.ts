import type { AuditEntry, AuditSink } from '../contracts/audit.js';
import type { Logger } from '../contracts/logger.js';
import type { RegistryStore } from '../contracts/registry-store.js';

/**
 * The durable AuditSink over a registry store (SQLite embedded, PostgreSQL scaled). `record`
 * never blocks: entries are written behind, in order; `flush` resolves once every entry recorded
 * so far is durable. Callers that must not acknowledge before the audit is durable (registry
 * changes) write through `RegistryStore.appendAudit` instead.
 */
export class StoreAuditSink implements AuditSink {
  private chain: Promise<void> = Promise.resolve();
  private failures = 0;

  constructor(
    private readonly store: RegistryStore,
    private readonly logger?: Logger,
  ) {}

  record(entry: AuditEntry): void {
    const e = Object.freeze({ ...entry });
    this.chain = this.chain.then(() =>
      this.store.appendAudit(e).catch((err: unknown) => {
        this.failures++;
        this.logger?.error({ err: String(err), action: e.action }, 'audit write failed');
      }),
    );
  }

  /** Audit writes that failed since start (also logged). */
  failed(): number {
    return this.failures;
  }

  flush(): Promise<void> {
    return this.chain;
  }

  async list(
    filter: { readonly action?: string; readonly limit?: number } = {},
  ): Promise<readonly AuditEntry[]> {
    await this.chain;
    return this.store.listAudit(filter);
  }
}
