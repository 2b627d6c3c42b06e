import type Database from 'better-sqlite3';
import type { CostDelta, CostGroup, CostLedgerStore, CostQuery } from '../contracts/cost-ledger.js';
import { groupOf, ledgerTable, totalsSql, upsertParams, upsertSql } from './cost-ledger-rows.js';
import { openDurableSqlite } from './sqlite-audit-log.js';

const TABLE = 'sy_cost_totals';

/**
 * The embedded cost ledger: table `sy_cost_totals` in a SQLite file (WAL). A batch is one
 * transaction of upserts; processes sharing the file add to the same rows atomically.
 */
export class SqliteCostLedger implements CostLedgerStore {
  private readonly upsert: Database.Statement;
  private readonly spent: Database.Statement;
  private readonly batch: (deltas: readonly CostDelta[]) => void;

  constructor(private readonly db: Database.Database) {
    db.exec(ledgerTable(TABLE, 'INTEGER'));
    this.upsert = db.prepare(upsertSql(TABLE, () => '?'));
    this.spent = db.prepare(
      `SELECT COALESCE(SUM(cost_nanos), 0) AS n FROM ${TABLE} WHERE tenant = ? AND day = ?`,
    );
    this.batch = db.transaction((deltas: readonly CostDelta[]) => {
      for (const d of deltas) this.upsert.run(...upsertParams(d));
    });
  }

  static open(path: string): SqliteCostLedger {
    return new SqliteCostLedger(openDurableSqlite(path));
  }

  // async: a failed transaction becomes a rejection; the rows are written before this returns.
  // eslint-disable-next-line @typescript-eslint/require-await
  async add(deltas: readonly CostDelta[]): Promise<void> {
    if (deltas.length > 0) this.batch(deltas);
  }

  totals(q: CostQuery): Promise<CostGroup[]> {
    const { sql, params } = totalsSql(TABLE, q, () => '?');
    const rows = this.db.prepare(sql).all(...params) as Record<string, unknown>[];
    return Promise.resolve(rows.map(groupOf));
  }

  spentNanos(tenant: string, day: string): Promise<number> {
    const row = this.spent.get(tenant, day) as { n: number | bigint };
    return Promise.resolve(Number(row.n));
  }

  close(): Promise<void> {
    if (this.db.open) this.db.close();
    return Promise.resolve();
  }
}
