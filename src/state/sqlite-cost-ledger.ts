import type Database from 'better-sqlite3';
import type {
  CostDelta,
  CostGroup,
  CostLedgerStore,
  CostQuery,
  OutcomeClaim,
} from '../contracts/cost-ledger.js';
import {
  groupOf,
  ledgerTable,
  outcomeDelta,
  outcomeExistsSql,
  outcomeInsertParams,
  outcomeInsertSql,
  outcomePruneSql,
  outcomesTable,
  totalsSql,
  upsertParams,
  upsertSql,
} from './cost-ledger-rows.js';
import { openDurableSqlite } from './sqlite-audit-log.js';

const TABLE = 'sy_cost_totals';
const OUTCOMES = 'sy_cost_outcomes';

/**
 * The embedded cost ledger: table `sy_cost_totals` in a SQLite file (WAL). A batch is one
 * transaction of upserts; processes sharing the file add to the same rows atomically.
 */
export class SqliteCostLedger implements CostLedgerStore {
  private readonly upsert: Database.Statement;
  private readonly spent: Database.Statement;
  private readonly batch: (deltas: readonly CostDelta[]) => void;
  private readonly outcome: (o: OutcomeClaim) => boolean;
  private readonly taken: Database.Statement;

  constructor(private readonly db: Database.Database) {
    db.exec(ledgerTable(TABLE, 'INTEGER'));
    db.exec(outcomesTable(OUTCOMES, 'INTEGER', 'REAL'));
    const claim = db.prepare(outcomeInsertSql(OUTCOMES, () => '?'));
    this.upsert = db.prepare(upsertSql(TABLE, () => '?'));
    this.taken = db.prepare(outcomeExistsSql(OUTCOMES, () => '?'));
    this.spent = db.prepare(
      `SELECT COALESCE(SUM(cost_nanos), 0) AS n FROM ${TABLE} WHERE tenant = ? AND day = ?`,
    );
    this.batch = db.transaction((deltas: readonly CostDelta[]) => {
      for (const d of deltas) this.upsert.run(...upsertParams(d));
    });
    // Write-locking from the first statement (BEGIN IMMEDIATE): processes sharing the file take
    // the outcome's row one after the other.
    const outcome = db.transaction((o: OutcomeClaim): boolean => {
      if (claim.run(...outcomeInsertParams(o)).changes === 0) return false;
      this.upsert.run(...upsertParams(outcomeDelta(o)));
      return true;
    });
    this.outcome = (o) => outcome.immediate(o);
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

  // eslint-disable-next-line @typescript-eslint/require-await
  async addOutcome(o: OutcomeClaim): Promise<boolean> {
    return this.outcome(o);
  }

  // eslint-disable-next-line @typescript-eslint/require-await
  async hasOutcome(tenant: string, requestId: string): Promise<boolean> {
    return this.taken.get(tenant, requestId) !== undefined;
  }

  // eslint-disable-next-line @typescript-eslint/require-await
  async pruneOutcomes(before: number): Promise<number> {
    return this.db.prepare(outcomePruneSql(OUTCOMES, () => '?')).run(Math.floor(before)).changes;
  }

  close(): Promise<void> {
    if (this.db.open) this.db.close();
    return Promise.resolve();
  }
}
