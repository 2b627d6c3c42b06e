import pg from 'pg';
import type {
  InferenceLogStore,
  InferenceQuery,
  ModelCallRecord,
  RequestDetail,
  RequestPage,
  RequestRecord,
  RetentionRule,
} from '../contracts/inference-log.js';
import {
  CALL_INSERT_COLUMNS,
  CALLS,
  callParams,
  pageOf,
  REQUEST_INSERT_COLUMNS,
  REQUESTS,
  requestParams,
  requestSelect,
  retentionStatements,
  type CallRow,
  type RequestRow,
} from './inference-log-rows.js';

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

const TABLES = (s: string): string => `
CREATE SCHEMA IF NOT EXISTS ${s};
CREATE TABLE IF NOT EXISTS ${REQUESTS} (
  seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL, at BIGINT NOT NULL,
  tenant TEXT NOT NULL, user_id TEXT, journey TEXT, model TEXT NOT NULL, outcome TEXT NOT NULL,
  trace_id TEXT, has_payload INTEGER NOT NULL, bytes INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ${REQUESTS}_id ON ${REQUESTS} (id);
CREATE INDEX IF NOT EXISTS ${REQUESTS}_at ON ${REQUESTS} (at);
CREATE INDEX IF NOT EXISTS ${REQUESTS}_tenant ON ${REQUESTS} (tenant, seq);
CREATE INDEX IF NOT EXISTS ${REQUESTS}_user ON ${REQUESTS} (tenant, user_id);
CREATE INDEX IF NOT EXISTS ${REQUESTS}_trace ON ${REQUESTS} (trace_id);
CREATE TABLE IF NOT EXISTS ${CALLS} (
  seq BIGSERIAL PRIMARY KEY, request_id TEXT NOT NULL, at BIGINT NOT NULL,
  tenant TEXT NOT NULL, user_id TEXT, model TEXT NOT NULL, served_by TEXT NOT NULL,
  body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ${CALLS}_request ON ${CALLS} (request_id);
DROP INDEX IF EXISTS ${CALLS}_model; -- no query used it (see requestSelect)
CREATE INDEX IF NOT EXISTS ${CALLS}_user ON ${CALLS} (tenant, user_id);
`;

export interface PostgresInferenceLogOptions {
  readonly url: string;
  /** The schema of the two tables (default `switchyard`); every replica shares it. */
  readonly schema?: string;
  readonly poolSize?: number;
}

const CHUNK = 1000;

const $ = (n: number): string => `$${n}`;

/**
 * The scaled inference log (#15): the same two tables as the embedded one, in a PostgreSQL
 * schema every replica writes to. The schema is the connection's `search_path`, so both stores
 * run the same SQL.
 */
export class PostgresInferenceLog implements InferenceLogStore {
  private constructor(
    private readonly pool: pg.Pool,
    private readonly schema: string,
  ) {}

  static async open(opts: PostgresInferenceLogOptions): Promise<PostgresInferenceLog> {
    const schema = opts.schema ?? 'switchyard';
    if (!SCHEMA_NAME.test(schema)) throw new Error(`invalid PostgreSQL schema name "${schema}"`);
    const pool = new pg.Pool({
      connectionString: opts.url,
      max: opts.poolSize ?? 2,
      connectionTimeoutMillis: 5_000,
      options: `-c search_path=${schema}`,
    });
    pool.on('error', () => undefined); // an idle client's error; the next query reports it
    const c = await pool.connect().catch(async (err: unknown) => {
      await pool.end();
      throw err;
    });
    try {
      // Concurrent first starts race on CREATE ... IF NOT EXISTS; one advisory lock serialises them.
      await c.query('SELECT pg_advisory_lock(hashtext($1))', [`sy-inference:${schema}`]);
      await c.query(TABLES(schema));
      await c.query('SELECT pg_advisory_unlock(hashtext($1))', [`sy-inference:${schema}`]);
    } finally {
      c.release();
    }
    return new PostgresInferenceLog(pool, schema);
  }

  private async tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const c = await this.pool.connect();
    try {
      await c.query('BEGIN');
      const out = await fn(c);
      await c.query('COMMIT');
      return out;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      c.release();
    }
  }

  async append(
    requests: readonly RequestRecord[],
    calls: readonly ModelCallRecord[],
  ): Promise<void> {
    if (requests.length === 0 && calls.length === 0) return;
    await this.tx(async (c) => {
      // Multi-row INSERTs of at most CHUNK rows (PostgreSQL takes 65 535 parameters a statement).
      for (let i = 0; i < calls.length; i += CHUNK)
        await c.query(
          ...multiInsert(
            CALLS,
            CALL_INSERT_COLUMNS,
            calls.slice(i, i + CHUNK).map((c) => callParams(c)),
          ),
        );
      for (let i = 0; i < requests.length; i += CHUNK)
        await c.query(
          ...multiInsert(
            REQUESTS,
            REQUEST_INSERT_COLUMNS,
            requests.slice(i, i + CHUNK).map((r) => requestParams(r)),
          ),
        );
    });
  }

  async query(q: InferenceQuery = {}): Promise<RequestPage> {
    const { sql, params, limit } = requestSelect(q, $);
    return pageOf((await this.pool.query<RequestRow>(sql, params)).rows, limit);
  }

  async get(id: string): Promise<RequestDetail | undefined> {
    const r = await this.pool.query<RequestRow>(
      `SELECT seq, body FROM ${REQUESTS} WHERE id = $1 ORDER BY seq DESC LIMIT 1`,
      [id],
    );
    const row = r.rows[0];
    if (row === undefined) return undefined;
    const calls = await this.pool.query<CallRow>(
      `SELECT body FROM ${CALLS} WHERE request_id = $1 ORDER BY seq`,
      [id],
    );
    return {
      ...(JSON.parse(row.body) as RequestRecord),
      calls: calls.rows.map((c) => JSON.parse(c.body) as ModelCallRecord),
    };
  }

  purgeUser(tenant: string, user: string): Promise<number> {
    return this.tx(async (c) => {
      const n = await c.query(`DELETE FROM ${REQUESTS} WHERE tenant = $1 AND user_id = $2`, [
        tenant,
        user,
      ]);
      const m = await c.query(`DELETE FROM ${CALLS} WHERE tenant = $1 AND user_id = $2`, [
        tenant,
        user,
      ]);
      return (n.rowCount ?? 0) + (m.rowCount ?? 0);
    });
  }

  retain(rule: RetentionRule): Promise<number> {
    return this.tx(async (c) => {
      let deleted = 0;
      for (const s of retentionStatements(rule, $)) {
        const r = await c.query(s.sql, s.params);
        if (s.sql.startsWith(`DELETE FROM ${REQUESTS}`)) deleted += r.rowCount ?? 0;
      }
      return deleted;
    });
  }

  /** Tests: drops the schema and everything in it. */
  async dropSchema(): Promise<void> {
    await this.pool.query(`DROP SCHEMA IF EXISTS ${this.schema} CASCADE`);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

function multiInsert(table: string, columns: string, rows: unknown[][]): [string, unknown[]] {
  const params: unknown[] = [];
  const values = rows.map((r) => `(${r.map((v) => `$${params.push(v)}`).join(', ')})`);
  return [`INSERT INTO ${table} (${columns}) VALUES ${values.join(', ')}`, params];
}
