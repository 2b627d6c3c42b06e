import type Database from 'better-sqlite3';
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
import { openDurableSqlite } from './sqlite-audit-log.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS rs_files (
  id TEXT NOT NULL, tenant TEXT NOT NULL, filename TEXT NOT NULL, purpose TEXT NOT NULL,
  bytes INTEGER NOT NULL, created_at INTEGER NOT NULL, content BLOB NOT NULL,
  expires_at INTEGER, PRIMARY KEY (tenant, id));
CREATE TABLE IF NOT EXISTS rs_batches (
  id TEXT NOT NULL, tenant TEXT NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL,
  batch_json TEXT NOT NULL, PRIMARY KEY (tenant, id));
CREATE INDEX IF NOT EXISTS rs_batches_status ON rs_batches (status, created_at);
CREATE TABLE IF NOT EXISTS rs_batch_lines (
  batch_id TEXT NOT NULL, line_index INTEGER NOT NULL, custom_id TEXT NOT NULL,
  state TEXT NOT NULL, started_at INTEGER NOT NULL, ok INTEGER, result_json TEXT, cost REAL,
  PRIMARY KEY (batch_id, line_index));
`;

/**
 * Files and batches in tables `rs_files`, `rs_batches` and `rs_batch_lines` of a SQLite file: the
 * state store's when `state.sqlite` is configured, else a file of its own. Every write is synced
 * (`synchronous = FULL`): a line claimed or committed is on disk before the runner moves on, so a
 * `kill -9` loses no line and runs none twice (#16).
 */
export class SqliteBatchStore implements BatchStore {
  private readonly db: Database.Database;
  private readonly s: Record<string, Database.Statement>;

  constructor(path: string) {
    this.db = openDurableSqlite(path);
    this.db.exec(SCHEMA);
    // Files made before expiry (#16) have no expires_at column: kept until deleted.
    const cols = (this.db.pragma('table_info(rs_files)') as { name: string }[]).map((c) => c.name);
    if (!cols.includes('expires_at'))
      this.db.exec('ALTER TABLE rs_files ADD COLUMN expires_at INTEGER');
    this.db.exec('CREATE INDEX IF NOT EXISTS rs_files_expires ON rs_files (expires_at)');
    const active = ACTIVE_STATUSES.map((x) => `'${x}'`).join(', ');
    const p = (sql: string): Database.Statement => this.db.prepare(sql);
    this.s = {
      putFile: p(`INSERT INTO rs_files (${FILE_COLUMNS}, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
      getFile: p(`SELECT ${FILE_COLUMNS} FROM rs_files WHERE tenant = ? AND id = ?`),
      content: p('SELECT content FROM rs_files WHERE tenant = ? AND id = ?'),
      listFiles: p(
        `SELECT ${FILE_COLUMNS} FROM rs_files WHERE tenant = ? ORDER BY created_at DESC, id DESC`,
      ),
      deleteFile: p('DELETE FROM rs_files WHERE tenant = ? AND id = ?'),
      sweepFiles: p(
        `DELETE FROM rs_files WHERE expires_at IS NOT NULL AND expires_at <= ?
         AND NOT EXISTS (SELECT 1 FROM rs_batches b WHERE b.tenant = rs_files.tenant
           AND b.status IN (${active}) AND json_extract(b.batch_json, '$.input_file_id') = rs_files.id)`,
      ),
      putBatch: p(`INSERT INTO rs_batches (${BATCH_COLUMNS}) VALUES (?, ?, ?, ?, ?)`),
      getBatch: p(`SELECT ${BATCH_COLUMNS} FROM rs_batches WHERE tenant = ? AND id = ?`),
      listBatches: p(
        `SELECT ${BATCH_COLUMNS} FROM rs_batches WHERE tenant = ? ORDER BY created_at DESC, id DESC`,
      ),
      active: p(
        `SELECT ${BATCH_COLUMNS} FROM rs_batches WHERE status IN (${active}) ORDER BY created_at, id`,
      ),
      claim: p(
        `INSERT INTO rs_batch_lines (batch_id, line_index, custom_id, state, started_at)
         VALUES (?, ?, ?, 'started', ?) ON CONFLICT DO NOTHING`,
      ),
      commit: p(
        `UPDATE rs_batch_lines SET state = 'done', ok = ?, result_json = ?, cost = ?
         WHERE batch_id = ? AND line_index = ? AND state = 'started'`,
      ),
      release: p(
        `DELETE FROM rs_batch_lines WHERE batch_id = ? AND line_index = ? AND state = 'started'`,
      ),
      lines: p(`SELECT ${LINE_COLUMNS} FROM rs_batch_lines WHERE batch_id = ? ORDER BY line_index`),
    };
  }

  putFile(file: StoredFile, content: Buffer): Promise<void> {
    this.s['putFile']!.run(...fileParams(file), content);
    return Promise.resolve();
  }

  getFile(tenant: string, id: string): Promise<StoredFile | undefined> {
    const row = this.s['getFile']!.get(tenant, id) as FileRow | undefined;
    return Promise.resolve(row === undefined ? undefined : fileOf(row));
  }

  fileContent(tenant: string, id: string): Promise<Buffer | undefined> {
    const row = this.s['content']!.get(tenant, id) as { content: Buffer } | undefined;
    return Promise.resolve(row?.content);
  }

  listFiles(tenant: string): Promise<StoredFile[]> {
    return Promise.resolve((this.s['listFiles']!.all(tenant) as FileRow[]).map(fileOf));
  }

  deleteFile(tenant: string, id: string): Promise<boolean> {
    return Promise.resolve(this.s['deleteFile']!.run(tenant, id).changes > 0);
  }

  sweepFiles(now: number): Promise<number> {
    return Promise.resolve(this.s['sweepFiles']!.run(now).changes);
  }

  putBatch(batch: StoredBatch): Promise<void> {
    this.s['putBatch']!.run(...batchParams(batch));
    return Promise.resolve();
  }

  getBatch(tenant: string, id: string): Promise<StoredBatch | undefined> {
    const row = this.s['getBatch']!.get(tenant, id) as BatchRow | undefined;
    return Promise.resolve(row === undefined ? undefined : batchOf(row));
  }

  listBatches(tenant: string): Promise<StoredBatch[]> {
    return Promise.resolve((this.s['listBatches']!.all(tenant) as BatchRow[]).map(batchOf));
  }

  activeBatches(): Promise<StoredBatch[]> {
    return Promise.resolve((this.s['active']!.all() as BatchRow[]).map(batchOf));
  }

  updateBatch(
    next: StoredBatch,
    from: readonly BatchStatus[],
    files: readonly { readonly file: StoredFile; readonly content: Buffer }[] = [],
  ): Promise<boolean> {
    const marks = from.map(() => '?').join(', ');
    const update = this.db.prepare(
      `UPDATE rs_batches SET status = ?, batch_json = ? WHERE tenant = ? AND id = ?
       AND status IN (${marks})`,
    );
    const [, , status, , json] = batchParams(next);
    const run = this.db.transaction((): boolean => {
      if (update.run(status, json, next.tenant, next.id, ...from).changes === 0) return false;
      for (const f of files) this.s['putFile']!.run(...fileParams(f.file), f.content);
      return true;
    });
    return Promise.resolve(run.immediate());
  }

  claimLine(batchId: string, index: number, customId: string, now: number): Promise<boolean> {
    return Promise.resolve(this.s['claim']!.run(batchId, index, customId, now).changes > 0);
  }

  commitLine(batchId: string, index: number, o: LineOutcome): Promise<boolean> {
    const r = this.s['commit']!.run(o.ok ? 1 : 0, JSON.stringify(o.result), o.cost, batchId, index);
    return Promise.resolve(r.changes > 0);
  }

  releaseLine(batchId: string, index: number): Promise<void> {
    this.s['release']!.run(batchId, index);
    return Promise.resolve();
  }

  lines(batchId: string): Promise<BatchLine[]> {
    return Promise.resolve((this.s['lines']!.all(batchId) as LineRow[]).map(lineOf));
  }

  close(): Promise<void> {
    if (this.db.open) this.db.close();
    return Promise.resolve();
  }
}
