import pg from 'pg';
import type { AuditEntry, AuditQuery, StoredAuditEntry } from '../contracts/audit.js';
import type {
  CounterRow,
  ExperimentRecord,
  ExposureRow,
  ModelRecord,
  RegistryStore,
  VersionPatch,
  VersionRecord,
} from '../contracts/registry-store.js';
import {
  clampLimit,
  experimentOf,
  EXPOSURE_COLUMNS,
  exposureOf,
  exposureParams,
  versionOf,
  versionParams,
  VERSION_COLUMNS,
  type ExposureDbRow,
  type VersionRow,
} from './registry-rows.js';
import { AUDIT_SCHEMA, PostgresAuditLog } from './postgres-audit-log.js';

const SCHEMA = (s: string): string => `
CREATE SCHEMA IF NOT EXISTS ${s};
CREATE TABLE IF NOT EXISTS ${s}.rs_meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO ${s}.rs_meta (key, value) VALUES ('changes', 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS ${s}.rs_models (
  name TEXT PRIMARY KEY, description TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS ${s}.rs_versions (
  model TEXT NOT NULL, version TEXT NOT NULL, stage TEXT NOT NULL, digest TEXT NOT NULL,
  size_bytes BIGINT NOT NULL, files TEXT NOT NULL, signature TEXT, key_id TEXT,
  created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, retire_at BIGINT,
  metadata TEXT NOT NULL, PRIMARY KEY (model, version));
CREATE TABLE IF NOT EXISTS ${s}.rs_experiments (
  id TEXT PRIMARY KEY, record TEXT NOT NULL, revision BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS ${s}.rs_counters (
  experiment TEXT NOT NULL, variant TEXT NOT NULL, segment TEXT NOT NULL, metric TEXT NOT NULL,
  n DOUBLE PRECISION NOT NULL, sum DOUBLE PRECISION NOT NULL, sum_sq DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (experiment, variant, segment, metric));
CREATE TABLE IF NOT EXISTS ${s}.rs_exposures (
  id BIGSERIAL PRIMARY KEY, inference_id TEXT NOT NULL, at BIGINT NOT NULL,
  experiment TEXT NOT NULL, variant TEXT NOT NULL, seed TEXT NOT NULL, bucket INTEGER NOT NULL,
  model TEXT NOT NULL, version TEXT NOT NULL, unit TEXT NOT NULL);
-- #15: rewards are credited on any replica (older schemas gain the columns, old rows read '').
ALTER TABLE ${s}.rs_exposures ADD COLUMN IF NOT EXISTS tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE ${s}.rs_exposures ADD COLUMN IF NOT EXISTS segment TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS rs_exposures_exp ON ${s}.rs_exposures (experiment, id);
CREATE INDEX IF NOT EXISTS rs_exposures_inf ON ${s}.rs_exposures (inference_id);
${AUDIT_SCHEMA(s)}`;

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

export interface PostgresRegistryOptions {
  readonly url: string;
  /** Every table lives in this schema (tests use one per run). */
  readonly schema?: string;
  readonly poolSize?: number;
}

/**
 * The scaled registry store: PostgreSQL, shared by every replica. Counter additions are atomic
 * upserts, experiment writes are compare-and-set on the revision, so replicas never lose each
 * other's updates.
 */
export class PostgresRegistryStore implements RegistryStore {
  readonly kind = 'postgres' as const;
  private readonly pool: pg.Pool;
  private readonly s: string;
  /** The audit trail lives in the same schema (table `rs_audit`). */
  private readonly audit: PostgresAuditLog;

  private constructor(pool: pg.Pool, schema: string) {
    this.pool = pool;
    this.s = schema;
    this.audit = new PostgresAuditLog(pool, schema);
  }

  static async open(opts: PostgresRegistryOptions): Promise<PostgresRegistryStore> {
    const schema = opts.schema ?? 'switchyard';
    if (!SCHEMA_NAME.test(schema)) throw new Error(`invalid PostgreSQL schema name "${schema}"`);
    const pool = new pg.Pool({
      connectionString: opts.url,
      max: opts.poolSize ?? 4,
      connectionTimeoutMillis: 5_000,
    });
    pool.on('error', () => undefined); // an idle client's error; the next query reports it
    const store = new PostgresRegistryStore(pool, schema);
    const client = await pool.connect();
    try {
      // Concurrent first starts race on CREATE ... IF NOT EXISTS; one advisory lock serialises them.
      await client.query('SELECT pg_advisory_lock(hashtext($1))', [`sy-registry:${schema}`]);
      await client.query(SCHEMA(schema));
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', [`sy-registry:${schema}`]);
    } finally {
      client.release();
    }
    return store;
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

  private bump(c: pg.PoolClient): Promise<unknown> {
    return c.query(`UPDATE ${this.s}.rs_meta SET value = value + 1 WHERE key = 'changes'`);
  }

  async upsertModel(m: ModelRecord): Promise<void> {
    await this.tx(async (c) => {
      await c.query(
        `INSERT INTO ${this.s}.rs_models (name, description, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET description = excluded.description`,
        [m.name, m.description, m.createdAt],
      );
      await this.bump(c);
    });
  }

  async getModel(name: string): Promise<ModelRecord | undefined> {
    const r = await this.pool.query<{ name: string; description: string; created_at: string }>(
      `SELECT * FROM ${this.s}.rs_models WHERE name = $1`,
      [name],
    );
    const row = r.rows[0];
    return row === undefined
      ? undefined
      : { name: row.name, description: row.description, createdAt: Number(row.created_at) };
  }

  async listModels(): Promise<ModelRecord[]> {
    const r = await this.pool.query<{ name: string; description: string; created_at: string }>(
      `SELECT * FROM ${this.s}.rs_models ORDER BY name`,
    );
    return r.rows.map((row) => ({
      name: row.name,
      description: row.description,
      createdAt: Number(row.created_at),
    }));
  }

  insertVersion(v: VersionRecord): Promise<boolean> {
    return this.tx(async (c) => {
      const r = await c.query(
        `INSERT INTO ${this.s}.rs_versions (${VERSION_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING`,
        versionParams(v),
      );
      const ok = (r.rowCount ?? 0) > 0;
      if (ok) await this.bump(c);
      return ok;
    });
  }

  async getVersion(model: string, version: string): Promise<VersionRecord | undefined> {
    const r = await this.pool.query<VersionRow>(
      `SELECT * FROM ${this.s}.rs_versions WHERE model = $1 AND version = $2`,
      [model, version],
    );
    const row = r.rows[0];
    return row === undefined ? undefined : versionOf(row);
  }

  async listVersions(model?: string): Promise<VersionRecord[]> {
    const r =
      model === undefined
        ? await this.pool.query<VersionRow>(
            `SELECT * FROM ${this.s}.rs_versions ORDER BY model, created_at, version`,
          )
        : await this.pool.query<VersionRow>(
            `SELECT * FROM ${this.s}.rs_versions WHERE model = $1 ORDER BY created_at, version`,
            [model],
          );
    return r.rows.map(versionOf);
  }

  updateVersion(
    model: string,
    version: string,
    patch: VersionPatch,
  ): Promise<VersionRecord | undefined> {
    return this.tx(async (c) => {
      const r = await c.query<VersionRow>(
        `SELECT * FROM ${this.s}.rs_versions WHERE model = $1 AND version = $2 FOR UPDATE`,
        [model, version],
      );
      const row = r.rows[0];
      if (row === undefined) return undefined;
      const next: VersionRecord = { ...versionOf(row), ...patch };
      await c.query(
        `UPDATE ${this.s}.rs_versions SET stage = $1, signature = $2, key_id = $3, retire_at = $4,
           updated_at = $5 WHERE model = $6 AND version = $7`,
        [
          next.stage,
          next.signature ?? null,
          next.keyId ?? null,
          next.retireAt ?? null,
          next.updatedAt,
          model,
          version,
        ],
      );
      await this.bump(c);
      return next;
    });
  }

  putExperiment(
    record: Omit<ExperimentRecord, 'revision'>,
    expectedRevision: number,
  ): Promise<ExperimentRecord | undefined> {
    const id = record.spec.id;
    const { revision: _drop, ...body } = record as ExperimentRecord;
    void _drop;
    const revision = expectedRevision + 1;
    return this.tx(async (c) => {
      const r =
        expectedRevision === 0
          ? await c.query(
              `INSERT INTO ${this.s}.rs_experiments (id, record, revision) VALUES ($1, $2, 1)
               ON CONFLICT DO NOTHING`,
              [id, JSON.stringify(body)],
            )
          : await c.query(
              `UPDATE ${this.s}.rs_experiments SET record = $2, revision = $3
               WHERE id = $1 AND revision = $4`,
              [id, JSON.stringify(body), revision, expectedRevision],
            );
      if ((r.rowCount ?? 0) === 0) return undefined;
      await this.bump(c);
      return { ...body, revision };
    });
  }

  async getExperiment(id: string): Promise<ExperimentRecord | undefined> {
    const r = await this.pool.query<{ record: string; revision: string }>(
      `SELECT record, revision FROM ${this.s}.rs_experiments WHERE id = $1`,
      [id],
    );
    const row = r.rows[0];
    return row === undefined ? undefined : experimentOf(row.record, row.revision);
  }

  async listExperiments(): Promise<ExperimentRecord[]> {
    const r = await this.pool.query<{ record: string; revision: string }>(
      `SELECT record, revision FROM ${this.s}.rs_experiments ORDER BY id`,
    );
    return r.rows.map((row) => experimentOf(row.record, row.revision));
  }

  deleteExperiment(id: string): Promise<boolean> {
    return this.tx(async (c) => {
      const r = await c.query(`DELETE FROM ${this.s}.rs_experiments WHERE id = $1`, [id]);
      const ok = (r.rowCount ?? 0) > 0;
      if (ok) await this.bump(c);
      return ok;
    });
  }

  async addCounters(deltas: readonly CounterRow[]): Promise<void> {
    if (deltas.length === 0) return;
    // One statement, rows sorted by key, so concurrent replicas lock rows in the same order.
    const sorted = [...deltas].sort((a, b) =>
      `${a.experiment}\u0000${a.variant}\u0000${a.segment}\u0000${a.metric}` <
      `${b.experiment}\u0000${b.variant}\u0000${b.segment}\u0000${b.metric}`
        ? -1
        : 1,
    );
    const merged = new Map<string, CounterRow>();
    for (const d of sorted) {
      const k = `${d.experiment}\u0000${d.variant}\u0000${d.segment}\u0000${d.metric}`;
      const cur = merged.get(k);
      merged.set(
        k,
        cur === undefined
          ? d
          : { ...cur, n: cur.n + d.n, sum: cur.sum + d.sum, sumSq: cur.sumSq + d.sumSq },
      );
    }
    const rows = [...merged.values()];
    const params: unknown[] = [];
    const values = rows.map((d, i) => {
      params.push(d.experiment, d.variant, d.segment, d.metric, d.n, d.sum, d.sumSq);
      const b = i * 7;
      return `($${b + 1}, $${b + 2}, $${b + 3}, $${b + 4}, $${b + 5}::float8, $${b + 6}::float8, $${b + 7}::float8)`;
    });
    await this.pool.query(
      `INSERT INTO ${this.s}.rs_counters AS c (experiment, variant, segment, metric, n, sum, sum_sq)
       VALUES ${values.join(', ')}
       ON CONFLICT (experiment, variant, segment, metric) DO UPDATE SET
         n = c.n + excluded.n, sum = c.sum + excluded.sum, sum_sq = c.sum_sq + excluded.sum_sq`,
      params,
    );
  }

  async readCounters(experiment: string): Promise<CounterRow[]> {
    const r = await this.pool.query<{
      experiment: string;
      variant: string;
      segment: string;
      metric: string;
      n: number;
      sum: number;
      sum_sq: number;
    }>(
      `SELECT * FROM ${this.s}.rs_counters WHERE experiment = $1 ORDER BY variant, segment, metric`,
      [experiment],
    );
    return r.rows.map((row) => ({
      experiment: row.experiment,
      variant: row.variant,
      segment: row.segment,
      metric: row.metric,
      n: Number(row.n),
      sum: Number(row.sum),
      sumSq: Number(row.sum_sq),
    }));
  }

  async appendExposures(rows: readonly ExposureRow[]): Promise<void> {
    for (let i = 0; i < rows.length; i += 500) {
      const chunk = rows.slice(i, i + 500);
      const params: unknown[] = [];
      const values = chunk.map((e, j) => {
        params.push(...exposureParams(e));
        const b = j * 11;
        return `(${Array.from({ length: 11 }, (_, k) => `$${b + k + 1}`).join(', ')})`;
      });
      await this.pool.query(
        `INSERT INTO ${this.s}.rs_exposures (${EXPOSURE_COLUMNS}) VALUES ${values.join(', ')}`,
        params,
      );
    }
  }

  async listExposures(filter: {
    readonly experiment?: string;
    readonly inferenceId?: string;
    readonly tenant?: string;
    readonly limit?: number;
  }): Promise<ExposureRow[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.experiment !== undefined) {
      params.push(filter.experiment);
      where.push(`experiment = $${params.length}`);
    }
    if (filter.inferenceId !== undefined) {
      params.push(filter.inferenceId);
      where.push(`inference_id = $${params.length}`);
    }
    if (filter.tenant !== undefined) {
      params.push(filter.tenant);
      where.push(`tenant = $${params.length}`);
    }
    params.push(clampLimit(filter.limit));
    const r = await this.pool.query<ExposureDbRow>(
      `SELECT * FROM ${this.s}.rs_exposures ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY id DESC LIMIT $${params.length}`,
      params,
    );
    return r.rows.map(exposureOf);
  }

  appendAudit(e: AuditEntry): Promise<void> {
    return this.audit.appendAudit(e);
  }

  listAudit(query?: AuditQuery): Promise<StoredAuditEntry[]> {
    return this.audit.listAudit(query);
  }

  async changeCounter(): Promise<number> {
    const r = await this.pool.query<{ value: string }>(
      `SELECT value FROM ${this.s}.rs_meta WHERE key = 'changes'`,
    );
    return Number(r.rows[0]?.value ?? 0);
  }

  /** Drops the schema and everything in it (tests). */
  async dropSchema(): Promise<void> {
    await this.pool.query(`DROP SCHEMA IF EXISTS ${this.s} CASCADE`);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
