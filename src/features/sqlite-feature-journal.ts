import { openWalSqlite } from '../state/sqlite-wal.js';
import type Database from 'better-sqlite3';
import type { ConsentPurpose } from '../contracts/policy.js';
import type { FeatureEntry } from '../contracts/feature-source.js';

/**
 * One row change waiting to be written: the entry, or null for a delete of the value written at
 * `upTo` or before (a newer value another worker wrote meanwhile stays).
 */
export type JournalOp =
  | {
      readonly tenant: string;
      readonly entityId: string;
      readonly feature: string;
      readonly entry: FeatureEntry;
    }
  | {
      readonly tenant: string;
      readonly entityId: string;
      readonly feature: string;
      readonly entry: null;
      readonly upTo: number;
    };

/** The write time of a row's entry, in SQL. */
const WRITTEN = (table: string) => `json_extract(${table}.entry, '$.writtenAt')`;

interface Row {
  tenant: string;
  entry: string;
}

/**
 * The SQLite file behind the in-process feature store (WAL). It is written only behind the hot
 * path, in bounded transactions, and read only at start-up. Deletes for a consent purge are
 * written at once (`purgeUser`), so a crash cannot bring purged values back.
 *
 * With `serve --workers N` every worker holds every value and writes this one file (#17), each
 * from its own queue and in its own order: a row is replaced only by a newer value (the rule of
 * `newer` in memory) and deleted only up to the value that was dropped, so the file ends holding
 * what the workers hold whatever order their transactions land in.
 */
export class SqliteFeatureJournal {
  private readonly db: Database.Database;
  private readonly upsert: Database.Statement;
  private readonly remove: Database.Statement;
  private readonly purgeAll: Database.Statement;
  private readonly purgePurpose: Database.Statement;
  private readonly sweep: Database.Statement;

  constructor(path: string) {
    // A store under a directory that does not exist yet (`data/…` of a fresh checkout).
    this.db = openWalSqlite(path);
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`CREATE TABLE IF NOT EXISTS feature_values (
      tenant TEXT NOT NULL,
      entity_id TEXT NOT NULL,
      feature TEXT NOT NULL,
      user_id TEXT,
      purpose TEXT,
      expires_at INTEGER,
      entry TEXT NOT NULL,
      PRIMARY KEY (tenant, entity_id, feature)
    ) WITHOUT ROWID;
    CREATE INDEX IF NOT EXISTS feature_values_user ON feature_values (tenant, user_id);`);
    this.upsert = this.db.prepare(
      `INSERT INTO feature_values (tenant, entity_id, feature, user_id, purpose, expires_at, entry)
       VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (tenant, entity_id, feature) DO UPDATE SET
         user_id = excluded.user_id, purpose = excluded.purpose,
         expires_at = excluded.expires_at, entry = excluded.entry
       WHERE ${WRITTEN('excluded')} > ${WRITTEN('feature_values')}
         OR (${WRITTEN('excluded')} = ${WRITTEN('feature_values')}
             AND excluded.entry >= feature_values.entry)`,
    );
    this.remove = this.db.prepare(
      `DELETE FROM feature_values WHERE tenant = ? AND entity_id = ? AND feature = ?
       AND ${WRITTEN('feature_values')} <= ?`,
    );
    this.purgeAll = this.db.prepare(
      `DELETE FROM feature_values WHERE tenant = ? AND user_id = ? AND ${WRITTEN('feature_values')} <= ?`,
    );
    this.purgePurpose = this.db.prepare(
      `DELETE FROM feature_values WHERE tenant = ? AND user_id = ? AND purpose = ?
       AND ${WRITTEN('feature_values')} <= ?`,
    );
    this.sweep = this.db.prepare(
      'DELETE FROM feature_values WHERE expires_at IS NOT NULL AND expires_at <= ?',
    );
  }

  /** Every stored value that is still live at `now`. */
  load(now: number): { tenant: string; entry: FeatureEntry }[] {
    const rows = this.db
      .prepare(
        'SELECT tenant, entry FROM feature_values WHERE expires_at IS NULL OR expires_at > ?',
      )
      .all(now) as Row[];
    return rows.map((r) => ({ tenant: r.tenant, entry: JSON.parse(r.entry) as FeatureEntry }));
  }

  /** Applies a batch of changes in one transaction. */
  apply(ops: readonly JournalOp[]): void {
    this.db
      .transaction(() => {
        for (const op of ops) {
          if (op.entry === null) {
            this.remove.run(op.tenant, op.entityId, op.feature, op.upTo);
            continue;
          }
          const e = op.entry;
          this.upsert.run(
            op.tenant,
            e.entityId,
            e.feature,
            e.userId ?? null,
            e.purpose ?? null,
            e.expiresAt ?? null,
            JSON.stringify(e),
          );
        }
      })
      .immediate();
  }

  /** Deletes the user's values written at `upTo` or before (all of them when absent). */
  purgeUser(
    tenant: string,
    userId: string,
    purposes?: readonly ConsentPurpose[],
    upTo = Number.MAX_SAFE_INTEGER,
  ): void {
    this.db
      .transaction(() => {
        if (purposes === undefined) this.purgeAll.run(tenant, userId, upTo);
        else for (const p of purposes) this.purgePurpose.run(tenant, userId, p, upTo);
      })
      .immediate();
  }

  /** Drops rows expired at `now`; returns how many. */
  sweepExpired(now: number): number {
    return this.sweep.run(now).changes;
  }

  close(): void {
    this.db.close();
  }
}
