import type {
  InferenceQuery,
  ModelCallRecord,
  RequestRecord,
  RetentionRule,
} from '../contracts/inference-log.js';

/**
 * The inference log's tables, rows and queries (#15), shared by the SQLite and PostgreSQL stores.
 * A record is kept whole as JSON in `body`; the columns beside it are what queries filter on.
 * `seq` orders records as written and is the paging cursor.
 */
export const REQUESTS = 'sy_inference_requests';
export const CALLS = 'sy_inference_calls';

export const REQUEST_INSERT_COLUMNS =
  'id, at, tenant, user_id, journey, model, outcome, trace_id, has_payload, bytes, body';
export const CALL_INSERT_COLUMNS = 'request_id, at, tenant, user_id, model, served_by, body';

export interface RequestRow {
  seq: number | string;
  body: string;
}

export interface CallRow {
  body: string;
}

/**
 * Insert parameters of a request record, in `REQUEST_INSERT_COLUMNS` order; `body` is the
 * record's JSON when the caller has it already.
 */
export function requestParams(r: RequestRecord, body = JSON.stringify(r)): unknown[] {
  return [
    r.id,
    r.at,
    r.tenant,
    r.user ?? null,
    r.journey ?? null,
    r.model,
    r.outcome,
    r.traceId ?? null,
    r.payload === undefined ? 0 : 1,
    Buffer.byteLength(body),
    body,
  ];
}

export function callParams(c: ModelCallRecord, body = JSON.stringify(c)): unknown[] {
  return [c.requestId, c.at, c.tenant, c.user ?? null, c.model, c.servedBy, body];
}

/**
 * Records as JSON lines, one per record (JSON.stringify never writes a raw newline): how a batch
 * crosses to the writer thread. A string is copied across in one piece, where the records
 * themselves are cloned field by field (~10% of the gateway's event loop under load with the log
 * on), and the lines are the rows' `body` as they are.
 */
export function toLines(records: readonly object[]): string {
  let out = '';
  for (let i = 0; i < records.length; i++)
    out += i === 0 ? JSON.stringify(records[i]) : `\n${JSON.stringify(records[i])}`;
  return out;
}

/** Each record with its JSON. */
export function* withJson<T>(records: readonly T[]): Generator<[T, string]> {
  for (const r of records) yield [r, JSON.stringify(r)];
}

/** Each line of `toLines`'s text, with its record. */
export function* fromLines<T>(text: string): Generator<[T, string]> {
  if (text === '') return;
  for (const line of text.split('\n')) yield [JSON.parse(line) as T, line];
}

export const clampLimit = (limit: number | undefined): number =>
  Math.max(1, Math.min(1000, Math.floor(limit ?? 100)));

/** A cursor is the `seq` of the last record of a page, in decimal. */
export function parseCursor(cursor: string): number {
  if (!/^[1-9]\d{0,15}$/.test(cursor)) throw new RangeError(`bad cursor ${cursor.slice(0, 32)}`);
  return Number(cursor);
}

/**
 * `SELECT seq, body ... ORDER BY seq DESC LIMIT n+1` for a query (one more than the page, to know
 * whether another page follows); `ph(n)` writes the n-th placeholder (`?` or `$n`).
 *
 * The model filter matches a call's `model` or its `served_by`. Neither is indexed, so it reads
 * the calls table whole: SQLite and PostgreSQL use indexes for an OR only when every branch has
 * one, and the index on `model` alone that both schemas had was used by no query (now dropped: it
 * cost the log's writer an index entry per call, ~1-2 µs of its ~17 per request). Indexing
 * `served_by` as well would make the filter fast, for two entries per call.
 */
export function requestSelect(
  q: InferenceQuery,
  ph: (n: number) => string,
): { sql: string; params: unknown[]; limit: number } {
  const where: string[] = [];
  const params: unknown[] = [];
  const p = (v: unknown): string => ph(params.push(v));
  if (q.tenant !== undefined) where.push(`tenant = ${p(q.tenant)}`);
  if (q.journey !== undefined) where.push(`journey = ${p(q.journey)}`);
  if (q.model !== undefined) {
    const m = p(q.model);
    where.push(
      `(model = ${m} OR id IN (SELECT request_id FROM ${CALLS} WHERE model = ${p(q.model)} OR served_by = ${p(q.model)}))`,
    );
  }
  if (q.outcome !== undefined) where.push(`outcome = ${p(q.outcome)}`);
  if (q.since !== undefined) where.push(`at >= ${p(q.since)}`);
  if (q.until !== undefined) where.push(`at <= ${p(q.until)}`);
  if (q.traceId !== undefined) where.push(`trace_id = ${p(q.traceId)}`);
  if (q.requestId !== undefined) where.push(`id = ${p(q.requestId)}`);
  if (q.user !== undefined) where.push(`user_id = ${p(q.user)}`);
  if (q.withPayload === true) where.push('has_payload = 1');
  if (q.cursor !== undefined) where.push(`seq < ${p(parseCursor(q.cursor))}`);
  const limit = clampLimit(q.limit);
  const sql = `SELECT seq, body FROM ${REQUESTS}
    ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ${p(limit + 1)}`;
  return { sql, params, limit };
}

/** The page of a query's rows (one more than `limit` were asked for). */
export function pageOf(
  rows: readonly RequestRow[],
  limit: number,
): { records: RequestRecord[]; nextCursor?: string } {
  const shown = rows.slice(0, limit);
  const records = shown.map((r) => JSON.parse(r.body) as RequestRecord);
  return rows.length > limit ? { records, nextCursor: String(shown.at(-1)!.seq) } : { records };
}

/**
 * The deletes of a retention rule, in order, each with its parameters. Calls go with their
 * requests: a call whose request is gone and that is older than every kept request is deleted.
 */
export function retentionStatements(
  rule: RetentionRule,
  ph: (n: number) => string,
): { sql: string; params: unknown[] }[] {
  const out: { sql: string; params: unknown[] }[] = [];
  if (rule.maxAgeMs !== undefined) {
    const cutoff = rule.now - rule.maxAgeMs;
    out.push({ sql: `DELETE FROM ${REQUESTS} WHERE at < ${ph(1)}`, params: [cutoff] });
    out.push({
      sql: `DELETE FROM ${CALLS} WHERE at < ${ph(1)}
        AND NOT EXISTS (SELECT 1 FROM ${REQUESTS} r WHERE r.id = ${CALLS}.request_id)`,
      params: [cutoff],
    });
  }
  if (rule.maxRows !== undefined)
    out.push({
      sql: `DELETE FROM ${REQUESTS} WHERE seq <= (SELECT seq FROM ${REQUESTS} ORDER BY seq DESC LIMIT 1 OFFSET ${ph(1)})`,
      params: [Math.max(0, Math.floor(rule.maxRows))],
    });
  if (rule.maxBytes !== undefined)
    out.push({
      sql: `DELETE FROM ${REQUESTS} WHERE seq <= (SELECT seq FROM (SELECT seq, SUM(bytes) OVER (ORDER BY seq DESC) AS run FROM ${REQUESTS}) w WHERE run > ${ph(1)} ORDER BY seq DESC LIMIT 1)`,
      params: [Math.max(0, Math.floor(rule.maxBytes))],
    });
  if (rule.maxRows !== undefined || rule.maxBytes !== undefined)
    out.push({
      sql: `DELETE FROM ${CALLS} WHERE NOT EXISTS (SELECT 1 FROM ${REQUESTS} r WHERE r.id = ${CALLS}.request_id)
        AND at < (SELECT COALESCE(MIN(at), ${ph(1)}) FROM ${REQUESTS})`,
      params: [rule.now + 1],
    });
  return out;
}
