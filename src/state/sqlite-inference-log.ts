import type Database from 'better-sqlite3';
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
  pageOf,
  REQUEST_INSERT_COLUMNS,
  REQUESTS,
  requestParams,
  callParams,
  fromLines,
  withJson,
  requestSelect,
  retentionStatements,
  type CallRow,
  type RequestRow,
} from './inference-log-rows.js';
import { openDurableSqlite } from './sqlite-audit-log.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS ${REQUESTS} (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, at INTEGER NOT NULL,
  tenant TEXT NOT NULL, user_id TEXT, journey TEXT, model TEXT NOT NULL, outcome TEXT NOT NULL,
  trace_id TEXT, has_payload INTEGER NOT NULL, bytes INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ${REQUESTS}_id ON ${REQUESTS} (id);
CREATE INDEX IF NOT EXISTS ${REQUESTS}_at ON ${REQUESTS} (at);
CREATE INDEX IF NOT EXISTS ${REQUESTS}_tenant ON ${REQUESTS} (tenant, seq);
CREATE INDEX IF NOT EXISTS ${REQUESTS}_user ON ${REQUESTS} (tenant, user_id);
CREATE INDEX IF NOT EXISTS ${REQUESTS}_trace ON ${REQUESTS} (trace_id);
CREATE TABLE IF NOT EXISTS ${CALLS} (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, at INTEGER NOT NULL,
  tenant TEXT NOT NULL, user_id TEXT, model TEXT NOT NULL, served_by TEXT NOT NULL,
  body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS ${CALLS}_request ON ${CALLS} (request_id);
DROP INDEX IF EXISTS ${CALLS}_model; -- no query used it (see requestSelect)
CREATE INDEX IF NOT EXISTS ${CALLS}_user ON ${CALLS} (tenant, user_id);
`;

/**
 * The embedded inference log (#15): two tables in a SQLite file of its own (WAL, default
 * `var/inference.db`). Only the recorder's batch writer appends, one transaction per batch.
 */
export class SqliteInferenceLog implements InferenceLogStore {
  private readonly insertRequest: Database.Statement;
  private readonly insertCall: Database.Statement;
  /** One transaction of a batch: its calls, then its requests, each with its JSON body. */
  private readonly insertBatch: (
    calls: Iterable<[ModelCallRecord, string]>,
    requests: Iterable<[RequestRecord, string]>,
  ) => void;

  constructor(private readonly db: Database.Database) {
    db.exec(SCHEMA);
    this.insertRequest = db.prepare(
      `INSERT INTO ${REQUESTS} (${REQUEST_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.insertCall = db.prepare(
      `INSERT INTO ${CALLS} (${CALL_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`,
    );
    this.insertBatch = db.transaction(
      (calls: Iterable<[ModelCallRecord, string]>, requests: Iterable<[RequestRecord, string]>) => {
        for (const [c, body] of calls) this.insertCall.run(...callParams(c, body));
        for (const [r, body] of requests) this.insertRequest.run(...requestParams(r, body));
      },
    );
  }

  static open(path: string): SqliteInferenceLog {
    const db = openDurableSqlite(path);
    // A batch lost to a power cut is what the writer's flush interval already allows (#15).
    db.pragma('synchronous = NORMAL');
    return new SqliteInferenceLog(db);
  }

  // async: a failed write becomes a rejection, yet the batch is on disk before this returns.
  // eslint-disable-next-line @typescript-eslint/require-await
  async append(
    requests: readonly RequestRecord[],
    calls: readonly ModelCallRecord[],
  ): Promise<void> {
    this.insertBatch(withJson(calls), withJson(requests));
  }

  /** `append` of batches encoded by `toLines` (the writer thread's input). */
  appendLines(requests: string, calls: string): void {
    this.insertBatch(fromLines<ModelCallRecord>(calls), fromLines<RequestRecord>(requests));
  }

  // async: a bad cursor becomes a rejection.
  // eslint-disable-next-line @typescript-eslint/require-await
  async query(q: InferenceQuery = {}): Promise<RequestPage> {
    const { sql, params, limit } = requestSelect(q, () => '?');
    return pageOf(this.db.prepare(sql).all(...params) as RequestRow[], limit);
  }

  get(id: string): Promise<RequestDetail | undefined> {
    const row = this.db
      .prepare(`SELECT seq, body FROM ${REQUESTS} WHERE id = ? ORDER BY seq DESC LIMIT 1`)
      .get(id) as RequestRow | undefined;
    if (row === undefined) return Promise.resolve(undefined);
    const calls = this.db
      .prepare(`SELECT body FROM ${CALLS} WHERE request_id = ? ORDER BY seq`)
      .all(id) as CallRow[];
    return Promise.resolve({
      ...(JSON.parse(row.body) as RequestRecord),
      calls: calls.map((c) => JSON.parse(c.body) as ModelCallRecord),
    });
  }

  purgeUser(tenant: string, user: string): Promise<number> {
    const run = this.db.transaction(() => {
      const n = this.db
        .prepare(`DELETE FROM ${REQUESTS} WHERE tenant = ? AND user_id = ?`)
        .run(tenant, user).changes;
      const m = this.db
        .prepare(`DELETE FROM ${CALLS} WHERE tenant = ? AND user_id = ?`)
        .run(tenant, user).changes;
      return n + m;
    });
    return Promise.resolve(run.immediate());
  }

  retain(rule: RetentionRule): Promise<number> {
    const run = this.db.transaction(() => {
      let deleted = 0;
      for (const s of retentionStatements(rule, () => '?')) {
        const changes = this.db.prepare(s.sql).run(...s.params).changes;
        if (s.sql.startsWith(`DELETE FROM ${REQUESTS}`)) deleted += changes;
      }
      return deleted;
    });
    return Promise.resolve(run.immediate());
  }

  close(): Promise<void> {
    if (this.db.open) this.db.close();
    return Promise.resolve();
  }
}
