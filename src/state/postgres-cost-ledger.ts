import pg from 'pg';
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

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * The scaled cost ledger: table `sy_cost_totals` in the state store's PostgreSQL schema, shared
 * by every replica. A batch is one transaction of upserts (`cost = t.cost + excluded.cost`): the
 * row lock makes concurrent replicas' increments add up exactly.
 */
export class PostgresCostLedger implements CostLedgerStore {
  private readonly table: string;
  private readonly outcomes: string;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly schema: string,
  ) {
    this.table = `${schema}.sy_cost_totals`;
    this.outcomes = `${schema}.sy_cost_outcomes`;
  }

  static async open(o: { url: string; schema?: string | undefined }): Promise<PostgresCostLedger> {
    const schema = o.schema ?? 'switchyard';
    if (!SCHEMA_NAME.test(schema)) throw new Error(`invalid PostgreSQL schema name "${schema}"`);
    const pool = new pg.Pool({ connectionString: o.url, max: 2, connectionTimeoutMillis: 5_000 });
    pool.on('error', () => undefined); // an idle client's error; the next query reports it
    const ledger = new PostgresCostLedger(pool, schema);
    const c = await pool.connect();
    try {
      // Concurrent first starts race on CREATE ... IF NOT EXISTS; one advisory lock serialises them.
      await c.query('SELECT pg_advisory_lock(hashtext($1))', [`sy-costs:${schema}`]);
      try {
        await c.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
        await c.query(ledgerTable(ledger.table, 'BIGINT'));
        await c.query(outcomesTable(ledger.outcomes, 'BIGINT', 'DOUBLE PRECISION'));
      } finally {
        await c.query('SELECT pg_advisory_unlock(hashtext($1))', [`sy-costs:${schema}`]);
      }
    } catch (err) {
      c.release();
      await pool.end();
      throw err;
    }
    c.release();
    return ledger;
  }

  async add(deltas: readonly CostDelta[]): Promise<void> {
    if (deltas.length === 0) return;
    const sql = upsertSql(this.table, (n) => `$${n}`);
    const c = await this.pool.connect();
    try {
      await c.query('BEGIN');
      // Rows in key order: two replicas' batches lock shared rows in the same order (no deadlock).
      const sorted = [...deltas].sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
      for (const d of sorted) await c.query(sql, upsertParams(d));
      await c.query('COMMIT');
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  }

  async pruneOutcomes(before: number): Promise<number> {
    const r = await this.pool.query(
      outcomePruneSql(this.outcomes, (n) => `$${n}`),
      [Math.floor(before)],
    );
    return r.rowCount ?? 0;
  }

  async hasOutcome(tenant: string, requestId: string): Promise<boolean> {
    const sql = outcomeExistsSql(this.outcomes, (n) => `$${n}`);
    return ((await this.pool.query(sql, [tenant, requestId])).rowCount ?? 0) > 0;
  }

  async addOutcome(o: OutcomeClaim): Promise<boolean> {
    const c = await this.pool.connect();
    try {
      await c.query('BEGIN');
      // A second replica's insert of the same row waits for this commit, then inserts nothing.
      const taken = await c.query(
        outcomeInsertSql(this.outcomes, (n) => `$${n}`),
        [...outcomeInsertParams(o)],
      );
      if (taken.rowCount !== 1) {
        await c.query('ROLLBACK');
        return false;
      }
      await c.query(
        upsertSql(this.table, (n) => `$${n}`),
        upsertParams(outcomeDelta(o)),
      );
      await c.query('COMMIT');
      return true;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  }

  async totals(q: CostQuery): Promise<CostGroup[]> {
    const { sql, params } = totalsSql(this.table, q, (n) => `$${n}`);
    return (await this.pool.query(sql, params)).rows.map(groupOf);
  }

  async spentNanos(tenant: string, day: string): Promise<number> {
    const r = await this.pool.query<{ n: string }>(
      `SELECT COALESCE(SUM(cost_nanos), 0)::text AS n FROM ${this.table} WHERE tenant = $1 AND day = $2`,
      [tenant, day],
    );
    return Number(r.rows[0]?.n ?? 0);
  }

  /** Drops the schema (tests). */
  async dropSchema(): Promise<void> {
    await this.pool.query(`DROP SCHEMA IF EXISTS ${this.schema} CASCADE`);
  }

  close(): Promise<void> {
    return this.pool.end();
  }
}

function keyOf(d: CostDelta): string {
  return [d.day, d.tenant, d.journey, d.model, d.trafficClass, d.experiment, d.arm].join('\u0000');
}
