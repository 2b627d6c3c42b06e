import pg from 'pg';
import type {
  BatchLine,
  BatchStatus,
  BatchStore,
  LineOutcome,
  StoredBatch,
  StoredFile,
} from '../contracts/batch-store.js';
import {
  ACTIVE_STATUSES,
  BATCH_COLUMNS,
  batchOf,
  batchParams,
  FILE_COLUMNS,
  fileOf,
  fileParams,
  LINE_COLUMNS,
  lineOf,
  type BatchRow,
  type FileRow,
  type LineRow,
} from './batch-rows.js';

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

const SCHEMA = (s: string): string => `
CREATE SCHEMA IF NOT EXISTS ${s};
CREATE TABLE IF NOT EXISTS ${s}.rs_files (
  id TEXT NOT NULL, tenant TEXT NOT NULL, filename TEXT NOT NULL, purpose TEXT NOT NULL,
  bytes BIGINT NOT NULL, created_at BIGINT NOT NULL, content BYTEA NOT NULL,
  PRIMARY KEY (tenant, id));
ALTER TABLE ${s}.rs_files ADD COLUMN IF NOT EXISTS expires_at BIGINT;
CREATE INDEX IF NOT EXISTS rs_files_expires ON ${s}.rs_files (expires_at);
CREATE TABLE IF NOT EXISTS ${s}.rs_batches (
  id TEXT NOT NULL, tenant TEXT NOT NULL, status TEXT NOT NULL, created_at BIGINT NOT NULL,
  batch_json TEXT NOT NULL, PRIMARY KEY (tenant, id));
CREATE INDEX IF NOT EXISTS rs_batches_status ON ${s}.rs_batches (status, created_at);
CREATE TABLE IF NOT EXISTS ${s}.rs_batch_lines (
  batch_id TEXT NOT NULL, line_index INTEGER NOT NULL, custom_id TEXT NOT NULL,
  state TEXT NOT NULL, started_at BIGINT NOT NULL, ok BOOLEAN, result_json TEXT,
  cost DOUBLE PRECISION, PRIMARY KEY (batch_id, line_index));
`;

/** Files and batches in the state store's PostgreSQL schema, shared by replicas (#16). */
export class PostgresBatchStore implements BatchStore {
  private constructor(
    private readonly pool: pg.Pool,
    private readonly s: string,
  ) {}

  static async open(o: { url: string; schema?: string | undefined }): Promise<PostgresBatchStore> {
    const schema = o.schema ?? 'switchyard';
    if (!SCHEMA_NAME.test(schema)) throw new Error(`invalid PostgreSQL schema name "${schema}"`);
    const pool = new pg.Pool({ connectionString: o.url, max: 4, connectionTimeoutMillis: 5_000 });
    pool.on('error', () => undefined); // an idle client's error; the next query reports it
    const client = await pool.connect();
    try {
      // Concurrent first starts race on CREATE ... IF NOT EXISTS; one advisory lock serialises them.
      await client.query('SELECT pg_advisory_lock(hashtext($1))', [`sy-batches:${schema}`]);
      await client.query(SCHEMA(schema));
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', [`sy-batches:${schema}`]);
    } finally {
      client.release();
    }
    return new PostgresBatchStore(pool, schema);
  }

  async putFile(file: StoredFile, content: Buffer): Promise<void> {
    await this.pool.query(
      `INSERT INTO ${this.s}.rs_files (${FILE_COLUMNS}, content) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [...fileParams(file), content],
    );
  }

  async getFile(tenant: string, id: string): Promise<StoredFile | undefined> {
    const { rows } = await this.pool.query<FileRow>(
      `SELECT ${FILE_COLUMNS} FROM ${this.s}.rs_files WHERE tenant = $1 AND id = $2`,
      [tenant, id],
    );
    return rows[0] === undefined ? undefined : fileOf(rows[0]);
  }

  async fileContent(tenant: string, id: string): Promise<Buffer | undefined> {
    const { rows } = await this.pool.query<{ content: Buffer }>(
      `SELECT content FROM ${this.s}.rs_files WHERE tenant = $1 AND id = $2`,
      [tenant, id],
    );
    return rows[0]?.content;
  }

  async listFiles(tenant: string): Promise<StoredFile[]> {
    const { rows } = await this.pool.query<FileRow>(
      `SELECT ${FILE_COLUMNS} FROM ${this.s}.rs_files WHERE tenant = $1
       ORDER BY created_at DESC, id DESC`,
      [tenant],
    );
    return rows.map(fileOf);
  }

  async deleteFile(tenant: string, id: string): Promise<boolean> {
    const r = await this.pool.query(
      `DELETE FROM ${this.s}.rs_files WHERE tenant = $1 AND id = $2`,
      [tenant, id],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async sweepFiles(now: number): Promise<number> {
    const r = await this.pool.query(
      `DELETE FROM ${this.s}.rs_files f WHERE f.expires_at IS NOT NULL AND f.expires_at <= $1
       AND NOT EXISTS (SELECT 1 FROM ${this.s}.rs_batches b WHERE b.tenant = f.tenant
         AND b.status = ANY($2) AND (b.batch_json::json ->> 'input_file_id') = f.id)`,
      [now, ACTIVE_STATUSES],
    );
    return r.rowCount ?? 0;
  }

  async putBatch(batch: StoredBatch): Promise<void> {
    await this.pool.query(
      `INSERT INTO ${this.s}.rs_batches (${BATCH_COLUMNS}) VALUES ($1, $2, $3, $4, $5)`,
      batchParams(batch),
    );
  }

  async getBatch(tenant: string, id: string): Promise<StoredBatch | undefined> {
    const { rows } = await this.pool.query<BatchRow>(
      `SELECT ${BATCH_COLUMNS} FROM ${this.s}.rs_batches WHERE tenant = $1 AND id = $2`,
      [tenant, id],
    );
    return rows[0] === undefined ? undefined : batchOf(rows[0]);
  }

  async listBatches(tenant: string): Promise<StoredBatch[]> {
    const { rows } = await this.pool.query<BatchRow>(
      `SELECT ${BATCH_COLUMNS} FROM ${this.s}.rs_batches WHERE tenant = $1
       ORDER BY created_at DESC, id DESC`,
      [tenant],
    );
    return rows.map(batchOf);
  }

  async activeBatches(): Promise<StoredBatch[]> {
    const { rows } = await this.pool.query<BatchRow>(
      `SELECT ${BATCH_COLUMNS} FROM ${this.s}.rs_batches WHERE status = ANY($1)
       ORDER BY created_at, id`,
      [ACTIVE_STATUSES],
    );
    return rows.map(batchOf);
  }

  async updateBatch(
    next: StoredBatch,
    from: readonly BatchStatus[],
    files: readonly { readonly file: StoredFile; readonly content: Buffer }[] = [],
  ): Promise<boolean> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      const [, , status, , json] = batchParams(next);
      const r = await client.query(
        `UPDATE ${this.s}.rs_batches SET status = $1, batch_json = $2
         WHERE tenant = $3 AND id = $4 AND status = ANY($5)`,
        [status, json, next.tenant, next.id, from],
      );
      if ((r.rowCount ?? 0) === 0) {
        await client.query('ROLLBACK');
        return false;
      }
      for (const f of files)
        await client.query(
          `INSERT INTO ${this.s}.rs_files (${FILE_COLUMNS}, content)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
          [...fileParams(f.file), f.content],
        );
      await client.query('COMMIT');
      return true;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async claimLine(batchId: string, index: number, customId: string, now: number): Promise<boolean> {
    const r = await this.pool.query(
      `INSERT INTO ${this.s}.rs_batch_lines (batch_id, line_index, custom_id, state, started_at)
       VALUES ($1, $2, $3, 'started', $4) ON CONFLICT DO NOTHING`,
      [batchId, index, customId, now],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async commitLine(batchId: string, index: number, o: LineOutcome): Promise<boolean> {
    const r = await this.pool.query(
      `UPDATE ${this.s}.rs_batch_lines SET state = 'done', ok = $1, result_json = $2, cost = $3
       WHERE batch_id = $4 AND line_index = $5 AND state = 'started'`,
      [o.ok, JSON.stringify(o.result), o.cost, batchId, index],
    );
    return (r.rowCount ?? 0) > 0;
  }

  async releaseLine(batchId: string, index: number): Promise<void> {
    await this.pool.query(
      `DELETE FROM ${this.s}.rs_batch_lines
       WHERE batch_id = $1 AND line_index = $2 AND state = 'started'`,
      [batchId, index],
    );
  }

  async lines(batchId: string): Promise<BatchLine[]> {
    const { rows } = await this.pool.query<LineRow>(
      `SELECT ${LINE_COLUMNS} FROM ${this.s}.rs_batch_lines WHERE batch_id = $1 ORDER BY line_index`,
      [batchId],
    );
    return rows.map(lineOf);
  }

  /** Tests: drops the whole schema. */
  async dropSchema(): Promise<void> {
    await this.pool.query(`DROP SCHEMA IF EXISTS ${this.s} CASCADE`);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
