import type {
  InferenceQuery,
  ModelCallRecord,
  RequestDetail,
  RequestRecord,
} from '../contracts/inference-log.js';
import type { JsonObject, JsonValue } from '../contracts/json.js';
import { parseAuditTime, AuditQueryError } from './audit-query.js';

/**
 * The inference log's read side, shared by `GET /admin/requests` and `switchyard requests`: the
 * same parameters, parsed the same way, and the same JSON for a record (#15).
 */

/** A bad query parameter: the route answers 400 naming it, the CLI exits 2. */
export { AuditQueryError as RequestQueryError };

export const REQUEST_PARAMS = [
  'tenant',
  'journey',
  'model',
  'outcome',
  'since',
  'until',
  'trace_id',
  'user',
  'limit',
  'cursor',
] as const;
export type RequestParam = (typeof REQUEST_PARAMS)[number];

export const REQUESTS_MAX_LIMIT = 1_000;
const DEFAULT_LIMIT = 100;

function text(value: string, param: string): string {
  if (value.length === 0 || value.length > 256)
    throw new AuditQueryError(param, `${param} must be 1 to 256 characters`);
  return value;
}

/** An InferenceQuery from string parameters; `limit` is 1 to 1000 (default 100). */
export function parseRequestQuery(
  params: Readonly<Partial<Record<RequestParam, string>>>,
): InferenceQuery & { readonly limit: number } {
  const { tenant, journey, model, outcome, since, until, limit, cursor, user } = params;
  const traceId = params.trace_id;
  const n = limit === undefined ? DEFAULT_LIMIT : /^\d{1,5}$/.test(limit) ? Number(limit) : NaN;
  if (!(n >= 1 && n <= REQUESTS_MAX_LIMIT))
    throw new AuditQueryError(
      'limit',
      `limit must be a whole number from 1 to ${REQUESTS_MAX_LIMIT}`,
    );
  if (cursor !== undefined && !/^[1-9]\d{0,15}$/.test(cursor))
    throw new AuditQueryError('cursor', 'cursor must be a next_cursor value of an earlier page');
  if (traceId !== undefined && !/^[0-9a-f]{32}$/.test(traceId))
    throw new AuditQueryError('trace_id', 'trace_id must be 32 lowercase hex digits (W3C)');
  const q = {
    ...(tenant === undefined ? {} : { tenant: text(tenant, 'tenant') }),
    ...(journey === undefined ? {} : { journey: text(journey, 'journey') }),
    ...(model === undefined ? {} : { model: text(model, 'model') }),
    ...(outcome === undefined ? {} : { outcome: text(outcome, 'outcome') }),
    ...(user === undefined ? {} : { user: text(user, 'user') }),
    ...(since === undefined ? {} : { since: parseAuditTime(since, 'since') }),
    ...(until === undefined ? {} : { until: parseAuditTime(until, 'until') }),
    ...(traceId === undefined ? {} : { traceId }),
    ...(cursor === undefined ? {} : { cursor }),
    limit: n,
  };
  if (q.since !== undefined && q.until !== undefined && q.until < q.since)
    throw new AuditQueryError('until', 'until is before since');
  return q;
}

const snakeKey = (k: string): string => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** A record's fields in snake_case (a payload is shown exactly as it was kept). */
export function snake(value: unknown): JsonValue {
  if (Array.isArray(value)) return value.map(snake);
  if (value === null || typeof value !== 'object') return value as JsonValue;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(value))
    // A payload and a feature's value are shown exactly as they were kept.
    out[snakeKey(k)] = k === 'payload' || k === 'value' ? (v as JsonValue) : snake(v);
  return out;
}

/** A request record as the API and `requests list --json` show it (`at` in ISO 8601). */
export function requestJson(r: RequestRecord): JsonObject {
  const out = snake(r) as JsonObject;
  out['at'] = new Date(r.at).toISOString();
  return out;
}

export function callJson(c: ModelCallRecord): JsonObject {
  const out = snake(c) as JsonObject;
  out['at'] = new Date(c.at).toISOString();
  return out;
}

/** A request with its model calls, as `GET /admin/requests/{id}` and `requests show` give it. */
export function requestDetailJson(d: RequestDetail): JsonObject {
  const { calls, ...record } = d;
  return { ...requestJson(record), calls: calls.map(callJson) };
}
