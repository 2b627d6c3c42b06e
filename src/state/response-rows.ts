import type { JsonObject } from '../contracts/json.js';
import type { StoredResponse } from '../contracts/response-store.js';

/** A row of table `rs_responses`, as both SQL stores read it. */
export interface ResponseRow {
  id: string;
  tenant: string;
  user_id: string | null;
  created_at: number | string;
  expires_at: number | string;
  response_json: string;
  input_json: string;
  context_json: string;
}

export const RESPONSE_COLUMNS =
  'id, tenant, user_id, created_at, expires_at, response_json, input_json, context_json';

export function responseParams(r: StoredResponse): (string | number | null)[] {
  return [
    r.id,
    r.tenant,
    r.user ?? null,
    r.createdAt,
    r.expiresAt,
    JSON.stringify(r.response),
    JSON.stringify(r.input),
    JSON.stringify(r.context),
  ];
}

export function responseOf(row: ResponseRow): StoredResponse {
  return {
    id: row.id,
    tenant: row.tenant,
    user: row.user_id ?? undefined,
    createdAt: Number(row.created_at),
    expiresAt: Number(row.expires_at),
    response: JSON.parse(row.response_json) as JsonObject,
    input: JSON.parse(row.input_json) as JsonObject[],
    context: JSON.parse(row.context_json) as JsonObject[],
  };
}
