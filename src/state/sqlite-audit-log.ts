import { openWalSqlite } from './sqlite-wal.js';
import type Database from 'better-sqlite3';
import type { AuditEntry, AuditLog, AuditQuery, StoredAuditEntry } from '../contracts/audit.js';
import {
  AUDIT_INSERT_COLUMNS,
  auditOf,
  auditParams,
  auditSelect,
  type AuditRow,
} from './audit-rows.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS rs_audit (
  id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL,
  action TEXT NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT,
  before_json TEXT, after_json TEXT);
CREATE INDEX IF NOT EXISTS rs_audit_target ON rs_audit (target, id);
CREATE INDEX IF NOT EXISTS rs_audit_at ON rs_audit (at);
`;

/**
 * A SQLite file whose writes are on disk when they return: WAL with `synchronous = FULL`, and a
 * busy timeout, since the CLI and a running gateway may write the same file.
 */
export function openDurableSqlite(path: string): Database.Database {
  const db = openWalSqlite(path);
  db.pragma('synchronous = FULL');
  return db;
}

/**
 * The embedded audit log: table `rs_audit` of a SQLite database, either the state store's
 * (SqliteRegistryStore) or a file of its own (`audit.sqlite` when no `state:` is configured).
 * better-sqlite3 is synchronous, so an entry is on disk by the time `appendAudit` returns.
 */
export class SqliteAuditLog implements AuditLog {
  private readonly insert: Database.Statement;

  constructor(
    private readonly db: Database.Database,
    private readonly owned = false,
  ) {
    db.exec(SCHEMA);
    // Files written before entries had before/after get the two columns (kept as NULL).
    const cols = new Set(
      (db.pragma('table_info(rs_audit)') as { name: string }[]).map((c) => c.name),
    );
    for (const c of ['before_json', 'after_json'])
      if (!cols.has(c)) db.exec(`ALTER TABLE rs_audit ADD COLUMN ${c} TEXT`);
    this.insert = db.prepare(
      `INSERT INTO rs_audit (${AUDIT_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
  }

  /** A log in a file of its own, closed by `close()`. */
  static open(path: string): SqliteAuditLog {
    return new SqliteAuditLog(openDurableSqlite(path), true);
  }

  // async: a failed insert becomes a rejection, yet the row is written before this returns.
  // eslint-disable-next-line @typescript-eslint/require-await
  async appendAudit(e: AuditEntry): Promise<void> {
    this.insert.run(...auditParams(e));
  }

  listAudit(query: AuditQuery = {}): Promise<StoredAuditEntry[]> {
    const { sql, params } = auditSelect('rs_audit', query, () => '?');
    return Promise.resolve((this.db.prepare(sql).all(...params) as AuditRow[]).map(auditOf));
  }

  close(): Promise<void> {
    if (this.owned && this.db.open) this.db.close();
    return Promise.resolve();
  }
}
