import type { JsonObject } from '../contracts/json.js';
import type { BatchLine, BatchStatus, StoredBatch, StoredFile } from '../contracts/batch-store.js';

/** Rows of tables `rs_files`, `rs_batches` and `rs_batch_lines`, as both SQL stores read them. */
export interface FileRow {
  id: string;
  tenant: string;
  filename: string;
  purpose: string;
  bytes: number | string;
  created_at: number | string;
  expires_at: number | string | null;
}

export interface BatchRow {
  id: string;
  tenant: string;
  status: string;
  created_at: number | string;
  batch_json: string;
}

export interface LineRow {
  batch_id: string;
  line_index: number | string;
  custom_id: string;
  state: string;
  started_at: number | string;
  ok: number | boolean | null;
  result_json: string | null;
  cost: number | string | null;
}

export const FILE_COLUMNS = 'id, tenant, filename, purpose, bytes, created_at, expires_at';
export const BATCH_COLUMNS = 'id, tenant, status, created_at, batch_json';
export const LINE_COLUMNS =
  'batch_id, line_index, custom_id, state, started_at, ok, result_json, cost';

export { ACTIVE_STATUSES } from '../contracts/batch-store.js';

export function fileParams(f: StoredFile): (string | number | null)[] {
  return [f.id, f.tenant, f.filename, f.purpose, f.bytes, f.createdAt, f.expiresAt];
}

export function fileOf(r: FileRow): StoredFile {
  return {
    id: r.id,
    tenant: r.tenant,
    filename: r.filename,
    purpose: r.purpose,
    bytes: Number(r.bytes),
    createdAt: Number(r.created_at),
    expiresAt: r.expires_at === null ? null : Number(r.expires_at),
  };
}

export function batchParams(b: StoredBatch): (string | number)[] {
  return [b.id, b.tenant, b.status, b.createdAt, JSON.stringify({ ...b.batch, status: b.status })];
}

export function batchOf(r: BatchRow): StoredBatch {
  return {
    id: r.id,
    tenant: r.tenant,
    status: r.status as BatchStatus,
    createdAt: Number(r.created_at),
    batch: JSON.parse(r.batch_json) as JsonObject,
  };
}

export function lineOf(r: LineRow): BatchLine {
  return {
    batchId: r.batch_id,
    index: Number(r.line_index),
    customId: r.custom_id,
    state: r.state === 'done' ? 'done' : 'started',
    startedAt: Number(r.started_at),
    ok: r.ok === true || r.ok === 1,
    result: r.result_json === null ? undefined : (JSON.parse(r.result_json) as JsonObject),
    cost: Number(r.cost ?? 0),
  };
}
