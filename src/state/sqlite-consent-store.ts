import { openWalSqlite } from './sqlite-wal.js';
import type Database from 'better-sqlite3';
import type { ConsentPersistence, ConsentPurpose, ConsentRecord } from '../contracts/policy.js';

interface Row {
  tenant: string;
  user_id: string;
  purposes: string;
  updated_at: number;
  version: number;
}

/** Consent records in a SQLite file (WAL). Written through on every change: consent is control plane. */
export class SqliteConsentStore implements ConsentPersistence {
  private readonly db: Database.Database;
  private readonly upsert: Database.Statement;

  constructor(path: string) {
    // A store under a directory that does not exist yet (`data/…` of a fresh checkout).
    this.db = openWalSqlite(path);
    this.db.exec(`CREATE TABLE IF NOT EXISTS consent (
      tenant TEXT NOT NULL,
      user_id TEXT NOT NULL,
      purposes TEXT NOT NULL,
      updated_at INTEGER NOT NULL,
      version INTEGER NOT NULL,
      PRIMARY KEY (tenant, user_id)
    ) WITHOUT ROWID`);
    this.upsert = this.db.prepare(
      `INSERT INTO consent (tenant, user_id, purposes, updated_at, version) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (tenant, user_id) DO UPDATE SET
         purposes = excluded.purposes, updated_at = excluded.updated_at, version = excluded.version`,
    );
  }

  loadAll(): ConsentRecord[] {
    const rows = this.db.prepare('SELECT * FROM consent').all() as Row[];
    return rows.map((r) => ({
      tenant: r.tenant,
      userId: r.user_id,
      purposes: Object.freeze(JSON.parse(r.purposes) as Record<ConsentPurpose, boolean>),
      updatedAt: r.updated_at,
      version: r.version,
    }));
  }

  save(record: ConsentRecord): void {
    this.upsert.run(
      record.tenant,
      record.userId,
      JSON.stringify(record.purposes),
      record.updatedAt,
      record.version,
    );
  }

  close(): void {
    this.db.close();
  }
}
