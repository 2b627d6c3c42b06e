import type Database from 'better-sqlite3';
import type { ResponseStore, StoredResponse } from '../contracts/response-store.js';
import { RESPONSE_COLUMNS, responseOf, responseParams, type ResponseRow } from './response-rows.js';
import { openDurableSqlite } from './sqlite-audit-log.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS rs_responses (
  id TEXT NOT NULL, tenant TEXT NOT NULL, user_id TEXT, created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL, response_json TEXT NOT NULL, input_json TEXT NOT NULL,
  context_json TEXT NOT NULL, PRIMARY KEY (tenant, id));
CREATE INDEX IF NOT EXISTS rs_responses_user ON rs_responses (tenant, user_id);
CREATE INDEX IF NOT EXISTS rs_responses_expiry ON rs_responses (expires_at);
`;

/**
 * Stored Responses in table `rs_responses` of a SQLite file: the state store's file when
 * `state.sqlite` is configured (its own connection; WAL lets both write), else a file of its own.
 */
export class SqliteResponseStore implements ResponseStore {
  private readonly db: Database.Database;
  private readonly insert: Database.Statement;
  private readonly select: Database.Statement;
  private readonly remove: Database.Statement;
  private readonly purge: Database.Statement;
  private readonly expire: Database.Statement;

  constructor(path: string) {
    this.db = openDurableSqlite(path);
    // Stored answers are cheap to lose on a power cut, unlike the audit: no fsync per write.
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(SCHEMA);
    this.insert = this.db.prepare(
      `INSERT OR REPLACE INTO rs_responses (${RESPONSE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.select = this.db.prepare(
      `SELECT ${RESPONSE_COLUMNS} FROM rs_responses WHERE tenant = ? AND id = ? AND expires_at > ?`,
    );
    this.remove = this.db.prepare('DELETE FROM rs_responses WHERE tenant = ? AND id = ?');
    this.purge = this.db.prepare('DELETE FROM rs_responses WHERE tenant = ? AND user_id = ?');
    this.expire = this.db.prepare('DELETE FROM rs_responses WHERE expires_at <= ?');
  }

  put(r: StoredResponse): Promise<void> {
    this.insert.run(...responseParams(r));
    return Promise.resolve();
  }

  get(tenant: string, id: string, now: number): Promise<StoredResponse | undefined> {
    const row = this.select.get(tenant, id, now) as ResponseRow | undefined;
    return Promise.resolve(row === undefined ? undefined : responseOf(row));
  }

  delete(tenant: string, id: string): Promise<boolean> {
    return Promise.resolve(this.remove.run(tenant, id).changes > 0);
  }

  purgeUser(tenant: string, user: string): Promise<number> {
    return Promise.resolve(this.purge.run(tenant, user).changes);
  }

  sweep(now: number): Promise<number> {
    return Promise.resolve(this.expire.run(now).changes);
  }

  close(): Promise<void> {
    if (this.db.open) this.db.close();
    return Promise.resolve();
  }
}
