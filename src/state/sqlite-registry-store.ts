import type Database from 'better-sqlite3';
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
import { openDurableSqlite, SqliteAuditLog } from './sqlite-audit-log.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS rs_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO rs_meta (key, value) VALUES ('changes', 0);
CREATE TABLE IF NOT EXISTS rs_models (
  name TEXT PRIMARY KEY, description TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rs_versions (
  model TEXT NOT NULL, version TEXT NOT NULL, stage TEXT NOT NULL, digest TEXT NOT NULL,
  size_bytes INTEGER NOT NULL, files TEXT NOT NULL, signature TEXT, key_id TEXT,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, retire_at INTEGER,
  metadata TEXT NOT NULL, PRIMARY KEY (model, version));
CREATE TABLE IF NOT EXISTS rs_experiments (
  id TEXT PRIMARY KEY, record TEXT NOT NULL, revision INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS rs_counters (
  experiment TEXT NOT NULL, variant TEXT NOT NULL, segment TEXT NOT NULL, metric TEXT NOT NULL,
  n REAL NOT NULL, sum REAL NOT NULL, sum_sq REAL NOT NULL,
  PRIMARY KEY (experiment, variant, segment, metric)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rs_exposures (
  id INTEGER PRIMARY KEY AUTOINCREMENT, inference_id TEXT NOT NULL, at INTEGER NOT NULL,
  experiment TEXT NOT NULL, variant TEXT NOT NULL, seed TEXT NOT NULL, bucket INTEGER NOT NULL,
  model TEXT NOT NULL, version TEXT NOT NULL, unit TEXT NOT NULL,
  tenant TEXT NOT NULL DEFAULT '', segment TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS rs_exposures_exp ON rs_exposures (experiment, id);
CREATE INDEX IF NOT EXISTS rs_exposures_inf ON rs_exposures (inference_id);
`;

/**
 * The embedded registry store: one SQLite file in WAL mode with `synchronous = FULL`, so a write
 * is on disk when its promise resolves. better-sqlite3 is synchronous; the control-plane writes
 * here are small, and hot-path data arrives only in batches written behind.
 *
 * Every write transaction is `BEGIN IMMEDIATE`: several processes open the file (`serve
 * --workers N`, the CLI beside a gateway), and a deferred transaction that reads and then writes
 * fails at once with "database is locked" when another process wrote in between (SQLite cannot
 * wait to upgrade a read snapshot); an immediate one takes the write lock first and waits for it
 * (the busy timeout). Two workers creating the config's experiments at start failed this way.
 */
export class SqliteRegistryStore implements RegistryStore {
  readonly kind = 'sqlite' as const;
  private readonly db: Database.Database;
  private readonly bump: Database.Statement;
  private readonly addCounter: Database.Statement;
  private readonly addExposure: Database.Statement;
  /** The audit trail lives in the same file (table `rs_audit`). */
  private readonly audit: SqliteAuditLog;

  constructor(path: string) {
    this.db = openDurableSqlite(path);
    this.db.exec(SCHEMA);
    // #15: rewards are credited on any replica; a file made before gains the exposures' tenant
    // and segment (its old rows read '').
    const cols = new Set(
      (this.db.pragma('table_info(rs_exposures)') as { name: string }[]).map((c) => c.name),
    );
    for (const c of ['tenant', 'segment'])
      if (!cols.has(c))
        this.db.exec(`ALTER TABLE rs_exposures ADD COLUMN ${c} TEXT NOT NULL DEFAULT ''`);
    this.audit = new SqliteAuditLog(this.db);
    this.bump = this.db.prepare("UPDATE rs_meta SET value = value + 1 WHERE key = 'changes'");
    this.addCounter = this.db.prepare(
      `INSERT INTO rs_counters (experiment, variant, segment, metric, n, sum, sum_sq)
       VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (experiment, variant, segment, metric) DO UPDATE SET
         n = n + excluded.n, sum = sum + excluded.sum, sum_sq = sum_sq + excluded.sum_sq`,
    );
    this.addExposure = this.db.prepare(
      `INSERT INTO rs_exposures (${EXPOSURE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
  }

  upsertModel(m: ModelRecord): Promise<void> {
    this.db
      .transaction(() => {
        this.db
          .prepare(
            `INSERT INTO rs_models (name, description, created_at) VALUES (?, ?, ?)
           ON CONFLICT (name) DO UPDATE SET description = excluded.description`,
          )
          .run(m.name, m.description, m.createdAt);
        this.bump.run();
      })
      .immediate();
    return Promise.resolve();
  }

  getModel(name: string): Promise<ModelRecord | undefined> {
    const r = this.db.prepare('SELECT * FROM rs_models WHERE name = ?').get(name) as
      { name: string; description: string; created_at: number } | undefined;
    return Promise.resolve(
      r === undefined
        ? undefined
        : { name: r.name, description: r.description, createdAt: r.created_at },
    );
  }

  listModels(): Promise<ModelRecord[]> {
    const rows = this.db.prepare('SELECT * FROM rs_models ORDER BY name').all() as {
      name: string;
      description: string;
      created_at: number;
    }[];
    return Promise.resolve(
      rows.map((r) => ({ name: r.name, description: r.description, createdAt: r.created_at })),
    );
  }

  insertVersion(v: VersionRecord): Promise<boolean> {
    const ok = this.db
      .transaction(() => {
        const info = this.db
          .prepare(
            `INSERT OR IGNORE INTO rs_versions (${VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          )
          .run(...versionParams(v));
        if (info.changes > 0) this.bump.run();
        return info.changes > 0;
      })
      .immediate();
    return Promise.resolve(ok);
  }

  getVersion(model: string, version: string): Promise<VersionRecord | undefined> {
    const r = this.db
      .prepare('SELECT * FROM rs_versions WHERE model = ? AND version = ?')
      .get(model, version) as VersionRow | undefined;
    return Promise.resolve(r === undefined ? undefined : versionOf(r));
  }

  listVersions(model?: string): Promise<VersionRecord[]> {
    const rows = (
      model === undefined
        ? this.db.prepare('SELECT * FROM rs_versions ORDER BY model, created_at, version').all()
        : this.db
            .prepare('SELECT * FROM rs_versions WHERE model = ? ORDER BY created_at, version')
            .all(model)
    ) as VersionRow[];
    return Promise.resolve(rows.map(versionOf));
  }

  updateVersion(
    model: string,
    version: string,
    patch: VersionPatch,
  ): Promise<VersionRecord | undefined> {
    const out = this.db
      .transaction(() => {
        const r = this.db
          .prepare('SELECT * FROM rs_versions WHERE model = ? AND version = ?')
          .get(model, version) as VersionRow | undefined;
        if (r === undefined) return undefined;
        const next: VersionRecord = { ...versionOf(r), ...patch };
        this.db
          .prepare(
            `UPDATE rs_versions SET stage = ?, signature = ?, key_id = ?, retire_at = ?, updated_at = ?
           WHERE model = ? AND version = ?`,
          )
          .run(
            next.stage,
            next.signature ?? null,
            next.keyId ?? null,
            next.retireAt ?? null,
            next.updatedAt,
            model,
            version,
          );
        this.bump.run();
        return next;
      })
      .immediate();
    return Promise.resolve(out);
  }

  putExperiment(
    record: Omit<ExperimentRecord, 'revision'>,
    expectedRevision: number,
  ): Promise<ExperimentRecord | undefined> {
    const id = record.spec.id;
    const out = this.db
      .transaction(() => {
        const cur = this.db.prepare('SELECT revision FROM rs_experiments WHERE id = ?').get(id) as
          { revision: number } | undefined;
        if ((cur?.revision ?? 0) !== expectedRevision) return undefined;
        const revision = expectedRevision + 1;
        const { revision: _drop, ...body } = record as ExperimentRecord;
        void _drop;
        this.db
          .prepare(
            `INSERT INTO rs_experiments (id, record, revision) VALUES (?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET record = excluded.record, revision = excluded.revision`,
          )
          .run(id, JSON.stringify(body), revision);
        this.bump.run();
        return { ...body, revision };
      })
      .immediate();
    return Promise.resolve(out);
  }

  getExperiment(id: string): Promise<ExperimentRecord | undefined> {
    const r = this.db
      .prepare('SELECT record, revision FROM rs_experiments WHERE id = ?')
      .get(id) as { record: string; revision: number } | undefined;
    return Promise.resolve(r === undefined ? undefined : experimentOf(r.record, r.revision));
  }

  listExperiments(): Promise<ExperimentRecord[]> {
    const rows = this.db
      .prepare('SELECT record, revision FROM rs_experiments ORDER BY id')
      .all() as { record: string; revision: number }[];
    return Promise.resolve(rows.map((r) => experimentOf(r.record, r.revision)));
  }

  deleteExperiment(id: string): Promise<boolean> {
    const ok = this.db
      .transaction(() => {
        const n = this.db.prepare('DELETE FROM rs_experiments WHERE id = ?').run(id).changes;
        if (n > 0) this.bump.run();
        return n > 0;
      })
      .immediate();
    return Promise.resolve(ok);
  }

  addCounters(deltas: readonly CounterRow[]): Promise<void> {
    this.db
      .transaction(() => {
        for (const d of deltas)
          this.addCounter.run(d.experiment, d.variant, d.segment, d.metric, d.n, d.sum, d.sumSq);
      })
      .immediate();
    return Promise.resolve();
  }

  readCounters(experiment: string): Promise<CounterRow[]> {
    const rows = this.db
      .prepare('SELECT * FROM rs_counters WHERE experiment = ? ORDER BY variant, segment, metric')
      .all(experiment) as {
      experiment: string;
      variant: string;
      segment: string;
      metric: string;
      n: number;
      sum: number;
      sum_sq: number;
    }[];
    return Promise.resolve(
      rows.map((r) => ({
        experiment: r.experiment,
        variant: r.variant,
        segment: r.segment,
        metric: r.metric,
        n: r.n,
        sum: r.sum,
        sumSq: r.sum_sq,
      })),
    );
  }

  appendExposures(rows: readonly ExposureRow[]): Promise<void> {
    this.db
      .transaction(() => {
        for (const e of rows) this.addExposure.run(...exposureParams(e));
      })
      .immediate();
    return Promise.resolve();
  }

  listExposures(filter: {
    readonly experiment?: string;
    readonly inferenceId?: string;
    readonly tenant?: string;
    readonly limit?: number;
  }): Promise<ExposureRow[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.experiment !== undefined) {
      where.push('experiment = ?');
      params.push(filter.experiment);
    }
    if (filter.inferenceId !== undefined) {
      where.push('inference_id = ?');
      params.push(filter.inferenceId);
    }
    if (filter.tenant !== undefined) {
      where.push('tenant = ?');
      params.push(filter.tenant);
    }
    const sql = `SELECT * FROM rs_exposures ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY id DESC LIMIT ?`;
    const rows = this.db.prepare(sql).all(...params, clampLimit(filter.limit)) as ExposureDbRow[];
    return Promise.resolve(rows.map(exposureOf));
  }

  appendAudit(e: AuditEntry): Promise<void> {
    return this.audit.appendAudit(e);
  }

  listAudit(query?: AuditQuery): Promise<StoredAuditEntry[]> {
    return this.audit.listAudit(query);
  }

  changeCounter(): Promise<number> {
    const r = this.db.prepare("SELECT value FROM rs_meta WHERE key = 'changes'").get() as {
      value: number;
    };
    return Promise.resolve(r.value);
  }

  close(): Promise<void> {
    if (this.db.open) this.db.close();
    return Promise.resolve();
  }
}
