import pg from 'pg';
import type { ResponseStore, StoredResponse } from '../contracts/response-store.js';
import { RESPONSE_COLUMNS, responseOf, responseParams, type ResponseRow } from './response-rows.js';

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

const SCHEMA = (s: string): string => `
CREATE SCHEMA IF NOT EXISTS ${s};
CREATE TABLE IF NOT EXISTS ${s}.rs_responses (
  id TEXT NOT NULL, tenant TEXT NOT NULL, user_id TEXT, created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL, response_json TEXT NOT NULL, input_json TEXT NOT NULL,
  context_json TEXT NOT NULL, PRIMARY KEY (tenant, id));
CREATE INDEX IF NOT EXISTS rs_responses_user ON ${s}.rs_responses (tenant, user_id);
CREATE INDEX IF NOT EXISTS rs_responses_expiry ON ${s}.rs_responses (expires_at);
`;

/** Stored Responses in table `rs_responses` of the state store's PostgreSQL schema, shared by replicas. */
export class PostgresResponseStore implements ResponseStore {
  private constructor(
    private readonly pool: pg.Pool,
    private readonly s: string,
  ) {}

  static async open(o: {
    url: string;
    schema?: string | undefined;
  }): Promise<PostgresResponseStore> {
    const schema = o.schema ?? 'switchyard';
    if (!SCHEMA_NAME.test(schema)) throw new Error(`invalid PostgreSQL schema name "${schema}"`);
    const pool = new pg.Pool({ connectionString: o.url, max: 4, connectionTimeoutMillis: 5_000 });
    pool.on('error', () => undefined); // an idle client's error; the next query reports it
    const client = await pool.connect();
    try {
      // Concurrent first starts race on CREATE ... IF NOT EXISTS; one advisory lock serialises them.
      await client.query('SELECT pg_advisory_lock(hashtext($1))', [`sy-responses:${schema}`]);
      await client.query(SCHEMA(schema));
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', [`sy-responses:${schema}`]);
    } finally {
      client.release();
    }
    return new PostgresResponseStore(pool, schema);
  }

  async put(r: StoredResponse): Promise<void> {
    await this.pool.query(
      `INSERT INTO ${this.s}.rs_responses (${RESPONSE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
       ON CONFLICT (tenant, id) DO UPDATE SET user_id = EXCLUDED.user_id,
         created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at,
         response_json = EXCLUDED.response_json, input_json = EXCLUDED.input_json,
         context_json = EXCLUDED.context_json`,
      responseParams(r),
    );
  }

  async get(tenant: string, id: string, now: number): Promise<StoredResponse | undefined> {
    const { rows } = await this.pool.query<ResponseRow>(
      `SELECT ${RESPONSE_COLUMNS} FROM ${this.s}.rs_responses
       WHERE tenant = $1 AND id = $2 AND expires_at > $3`,
      [tenant, id, now],
    );
    return rows[0] === undefined ? undefined : responseOf(rows[0]);
  }

  async delete(tenant: string, id: string): Promise<boolean> {
    const r = await this.pool.query(
      `DELETE FROM ${this.s}.rs_responses WHERE tenant = $1 AND id = $2`,
      [tenant, id],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async purgeUser(tenant: string, user: string): Promise<number> {
    const r = await this.pool.query(
      `DELETE FROM ${this.s}.rs_responses WHERE tenant = $1 AND user_id = $2`,
      [tenant, user],
    );
    return r.rowCount ?? 0;
  }

  async sweep(now: number): Promise<number> {
    const r = await this.pool.query(`DELETE FROM ${this.s}.rs_responses WHERE expires_at <= $1`, [
      now,
    ]);
    return r.rowCount ?? 0;
  }

  /** Tests: drops the whole schema. */
  async dropSchema(): Promise<void> {
    await this.pool.query(`DROP SCHEMA IF EXISTS ${this.s} CASCADE`);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
