import type { AuditQuery, StoredAuditEntry } from '../contracts/audit.js';
import type { JsonObject, JsonValue } from '../contracts/json.js';

/**
 * The audit trail's read side, shared by `GET /admin/audit` and `switchyard audit list`: the
 * same parameters, parsed the same way, and the same JSON for an entry.
 */

/** A bad query parameter: the route answers 400 naming it, the CLI exits 2. */
export class AuditQueryError extends Error {
  override readonly name = 'AuditQueryError';
  constructor(
    readonly param: string,
    message: string,
  ) {
    super(message);
  }
}

export const AUDIT_PARAMS = [
  'action',
  'actor',
  'target',
  'since',
  'until',
  'limit',
  'cursor',
] as const;
export type AuditParam = (typeof AUDIT_PARAMS)[number];

export const AUDIT_MAX_LIMIT = 1_000;
const DEFAULT_LIMIT = 100;

/** Epoch milliseconds (digits) or an ISO 8601 date or date-time. */
export function parseAuditTime(value: string, param: string): number {
  const v = value.trim();
  const ms = /^\d{1,16}$/.test(v)
    ? Number(v)
    : /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(v)
      ? Date.parse(v)
      : NaN;
  if (!Number.isSafeInteger(ms))
    throw new AuditQueryError(param, `${param} must be epoch milliseconds or an ISO 8601 date`);
  return ms;
}

function text(value: string, param: string): string {
  if (value.length === 0 || value.length > 256)
    throw new AuditQueryError(param, `${param} must be 1 to 256 characters`);
  return value;
}

/**
 * An AuditQuery from string parameters (absent ones are undefined). `cursor` is the
 * `next_cursor` of the previous page; `limit` is 1 to 1000, default 100.
 */
export function parseAuditQuery(
  params: Readonly<Partial<Record<AuditParam, string>>>,
): AuditQuery & { readonly limit: number } {
  const { action, actor, target, since, until, limit, cursor } = params;
  const n = limit === undefined ? DEFAULT_LIMIT : /^\d{1,5}$/.test(limit) ? Number(limit) : NaN;
  if (!(n >= 1 && n <= AUDIT_MAX_LIMIT))
    throw new AuditQueryError('limit', `limit must be a whole number from 1 to ${AUDIT_MAX_LIMIT}`);
  const beforeId =
    cursor === undefined ? undefined : /^[1-9]\d{0,14}$/.test(cursor) ? Number(cursor) : NaN;
  if (Number.isNaN(beforeId))
    throw new AuditQueryError('cursor', 'cursor must be a next_cursor value of an earlier page');
  const q = {
    ...(action === undefined ? {} : { action: text(action, 'action') }),
    ...(actor === undefined ? {} : { actor: text(actor, 'actor') }),
    ...(target === undefined ? {} : { target: text(target, 'target') }),
    ...(since === undefined ? {} : { since: parseAuditTime(since, 'since') }),
    ...(until === undefined ? {} : { until: parseAuditTime(until, 'until') }),
    ...(beforeId === undefined ? {} : { beforeId }),
    limit: n,
  };
  if (q.since !== undefined && q.until !== undefined && q.until < q.since)
    throw new AuditQueryError('until', 'until is before since');
  return q;
}

/** The cursor of the page after `entries`, or null when this page was the last. */
export function nextAuditCursor(
  entries: readonly StoredAuditEntry[],
  limit: number,
): string | null {
  return entries.length < limit || entries.length === 0 ? null : String(entries.at(-1)!.id);
}

/** An entry as the API and `audit list --json` show it. */
export function auditEntryJson(e: StoredAuditEntry): JsonObject {
  return {
    id: e.id,
    at: new Date(e.at).toISOString(),
    actor: e.actor,
    action: e.action,
    target: e.target,
    reason: e.reason,
    before: e.before ?? null,
    after: e.after ?? null,
    detail: (e.detail ?? null) as JsonValue,
  };
}
