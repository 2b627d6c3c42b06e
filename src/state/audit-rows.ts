import type { AuditEntry, AuditQuery, StoredAuditEntry } from '../contracts/audit.js';
import type { JsonValue } from '../contracts/json.js';

/**
 * The audit table's rows and queries, shared by the SQLite and PostgreSQL logs. Both keep one
 * table, `rs_audit`, in the same layout, whether it sits in a state store or in the gateway's own
 * audit file: pointing `state.sqlite` at that file later keeps the history.
 */
export const AUDIT_COLUMNS =
  'id, at, actor, action, target, reason, before_json, after_json, detail';

export const AUDIT_INSERT_COLUMNS =
  'at, actor, action, target, reason, before_json, after_json, detail';

export interface AuditRow {
  id: number | string;
  at: number | string;
  actor: string;
  action: string;
  target: string;
  reason: string;
  before_json: string | null;
  after_json: string | null;
  detail: string | null;
}

const json = (v: unknown): string | null => (v === undefined ? null : JSON.stringify(v));

/** The insert parameters of an entry, in `AUDIT_INSERT_COLUMNS` order. */
export function auditParams(e: AuditEntry): unknown[] {
  return [
    e.at,
    e.actor,
    e.action,
    e.target,
    e.reason,
    json(e.before),
    json(e.after),
    json(e.detail),
  ];
}

export function auditOf(r: AuditRow): StoredAuditEntry {
  return {
    id: Number(r.id),
    at: Number(r.at),
    actor: r.actor,
    action: r.action,
    target: r.target,
    reason: r.reason,
    ...(r.before_json === null ? {} : { before: JSON.parse(r.before_json) as JsonValue }),
    ...(r.after_json === null ? {} : { after: JSON.parse(r.after_json) as JsonValue }),
    ...(r.detail === null ? {} : { detail: JSON.parse(r.detail) as Record<string, unknown> }),
  };
}

export const clampAuditLimit = (limit: number | undefined): number =>
  Math.max(1, Math.min(10_000, Math.floor(limit ?? 100)));

/**
 * `SELECT ... WHERE ... ORDER BY id DESC LIMIT ?` for a query; `ph(n)` writes the n-th (1-based)
 * placeholder (`?` for SQLite, `$n` for PostgreSQL). The action prefix is compared with `substr`,
 * so `%` and `_` in it are plain characters.
 */
export function auditSelect(
  table: string,
  q: AuditQuery,
  ph: (n: number) => string,
): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  const p = (v: unknown): string => ph(params.push(v));
  if (q.action !== undefined)
    where.push(`substr(action, 1, ${p(q.action.length)}) = ${p(q.action)}`);
  if (q.actor !== undefined) where.push(`actor = ${p(q.actor)}`);
  if (q.target !== undefined) where.push(`target = ${p(q.target)}`);
  if (q.since !== undefined) where.push(`at >= ${p(q.since)}`);
  if (q.until !== undefined) where.push(`at <= ${p(q.until)}`);
  if (q.beforeId !== undefined) where.push(`id < ${p(q.beforeId)}`);
  const limit = p(clampAuditLimit(q.limit));
  const sql = `SELECT ${AUDIT_COLUMNS} FROM ${table}
    ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ${limit}`;
  return { sql, params };
}
