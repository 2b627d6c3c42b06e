import type {
  AuditEntry,
  AuditLog,
  AuditQuery,
  AuditSink,
  StoredAuditEntry,
} from '../contracts/audit.js';
import { extend } from '../core/objects.js';

const clamp = (limit: number | undefined): number =>
  Math.max(1, Math.min(10_000, Math.floor(limit ?? 100)));

/** Whether an entry matches every field of a query (the memory log's filter). */
function matchesAudit(e: StoredAuditEntry, q: AuditQuery): boolean {
  return (
    (q.action === undefined || e.action.startsWith(q.action)) &&
    (q.actor === undefined || e.actor === q.actor) &&
    (q.target === undefined || e.target === q.target) &&
    (q.since === undefined || e.at >= q.since) &&
    (q.until === undefined || e.at <= q.until) &&
    (q.beforeId === undefined || e.id < q.beforeId)
  );
}

/**
 * An AuditLog in memory: the newest `capacity` entries, lost on restart. For tests and tools;
 * a gateway keeps its audit in SQLite or PostgreSQL (`src/state/open-audit.ts`).
 */
export class MemoryAuditLog implements AuditLog {
  private readonly entries: StoredAuditEntry[] = [];
  private nextId = 1;

  constructor(private readonly capacity = 10_000) {}

  appendAudit(entry: AuditEntry): Promise<void> {
    this.append(entry);
    return Promise.resolve();
  }

  append(entry: AuditEntry): void {
    this.entries.push(Object.freeze(extend(entry, { id: this.nextId++ })));
    if (this.entries.length > this.capacity) this.entries.shift();
  }

  listAudit(query: AuditQuery = {}): Promise<StoredAuditEntry[]> {
    const out: StoredAuditEntry[] = [];
    const limit = clamp(query.limit);
    for (let i = this.entries.length - 1; i >= 0 && out.length < limit; i--) {
      const e = this.entries[i]!;
      if (matchesAudit(e, query)) out.push(e);
    }
    return Promise.resolve(out);
  }
}

/** An AuditSink over a MemoryAuditLog: recorded at once, for tests and benchmarks. */
export class MemoryAuditSink implements AuditSink {
  private readonly log: MemoryAuditLog;

  constructor(capacity = 10_000) {
    this.log = new MemoryAuditLog(capacity);
  }

  record(entry: AuditEntry): void {
    this.log.append(entry);
  }

  list(query: AuditQuery = {}): Promise<readonly StoredAuditEntry[]> {
    return this.log.listAudit(query);
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }
}
