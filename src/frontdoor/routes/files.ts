import { randomBytes } from 'node:crypto';
import { ACTIVE_STATUSES, type BatchStore, type StoredFile } from '../../contracts/batch-store.js';
import type { JsonObject } from '../../contracts/json.js';
import { SwitchyardError, syError } from '../../core/errors.js';
import type { RequestContext } from '../context.js';
import { readFileUpload } from '../multipart.js';
import { sendBytes, sendJson } from '../respond.js';
import { withDataScope } from '../scope.js';

/** The purposes a client may upload: a batch's input file (#16). */
const UPLOAD_PURPOSES = new Set(['batch']);

/** The file store, or 404 when files and batches are off. */
export function batchStoreOf(ctx: RequestContext): BatchStore {
  const b = ctx.runtime.batches;
  if (b === undefined || !ctx.runtime.snapshot.config.batches.enabled)
    throw syError('SY_ERR_BATCHES_DISABLED');
  return b.store;
}

/** Runs a store operation; its failure is a 503 with a stable code. */
export async function stored<T>(op: () => Promise<T>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if (err instanceof SwitchyardError) throw err;
    throw syError('SY_ERR_BATCH_STORE_FAILED', String(err).slice(0, 200), { cause: err });
  }
}

/** OpenAI's File object. */
export function fileObject(f: StoredFile): JsonObject {
  return {
    id: f.id,
    object: 'file',
    bytes: f.bytes,
    created_at: f.createdAt,
    expires_at: f.expiresAt,
    filename: f.filename,
    purpose: f.purpose,
    status: 'processed',
    status_details: null,
  };
}

/** OpenAI's bounds of `expires_after[seconds]`: an hour to 30 days. */
const EXPIRES_MIN_S = 3_600;
const EXPIRES_MAX_S = 2_592_000;

/**
 * An `expires_after` policy (`POST /v1/files`) or a batch's `output_expires_after`: `anchor` must
 * be `created_at` and `seconds` an integer from 3600 to 2592000 (a form sends it as digits).
 * Undefined when neither is given; else the seconds after the file's creation it expires.
 */
export function expiresAfter(anchor: unknown, seconds: unknown, param: string): number | undefined {
  if (anchor === undefined && seconds === undefined) return undefined;
  if (anchor !== 'created_at')
    throw syError('SY_ERR_INVALID_REQUEST', `${param}[anchor] must be "created_at"`, {
      param: `${param}[anchor]`,
    });
  const n = typeof seconds === 'string' && /^\d{1,10}$/.test(seconds) ? Number(seconds) : seconds;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < EXPIRES_MIN_S || n > EXPIRES_MAX_S)
    throw syError(
      'SY_ERR_INVALID_REQUEST',
      `${param}[seconds] must be an integer from ${EXPIRES_MIN_S} (an hour) to ${EXPIRES_MAX_S} (30 days)`,
      { param: `${param}[seconds]` },
    );
  return n;
}

/** Expired at `nowS` (epoch seconds): answered as absent until the sweep deletes it. */
export function expired(f: StoredFile, nowS: number): boolean {
  return f.expiresAt !== null && f.expiresAt <= nowS;
}

/** This tenant's file, or 404 (unknown, deleted, expired, or another tenant's). */
export async function loadFile(
  ctx: RequestContext,
  store: BatchStore,
  id: string,
  param?: string,
): Promise<StoredFile> {
  const f = await stored(() => store.getFile(ctx.principal?.tenant ?? '', id));
  if (f === undefined || expired(f, Math.floor(ctx.clock.wall() / 1000)))
    throw syError('SY_ERR_FILE_NOT_FOUND', JSON.stringify(id.slice(0, 200)), {
      ...(param === undefined ? {} : { param }),
    });
  return f;
}

/**
 * `POST /v1/files`: a multipart upload (`purpose=batch`, `file`), at most `batches.max_file_bytes`;
 * `expires_after[anchor]` and `expires_after[seconds]` set when it is gone, else
 * `batches.file_expires_after_s` (unset: kept until deleted).
 */
export async function uploadFile(ctx: RequestContext): Promise<void> {
  const store = batchStoreOf(ctx);
  await withDataScope(ctx, async () => {
    const upload = await readFileUpload(ctx, ctx.runtime.snapshot.config.batches.max_file_bytes);
    const purpose = upload.fields['purpose'];
    if (purpose === undefined || !UPLOAD_PURPOSES.has(purpose))
      throw syError('SY_ERR_INVALID_REQUEST', 'purpose must be "batch"', { param: 'purpose' });
    if (upload.file === undefined || upload.file.field !== 'file')
      throw syError('SY_ERR_INVALID_REQUEST', 'send the file in the form field "file"', {
        param: 'file',
      });
    const ttl =
      expiresAfter(
        upload.fields['expires_after[anchor]'],
        upload.fields['expires_after[seconds]'],
        'expires_after',
      ) ?? ctx.runtime.snapshot.config.batches.file_expires_after_s;
    const createdAt = Math.floor(ctx.clock.wall() / 1000);
    const file: StoredFile = {
      id: `file-${randomBytes(12).toString('hex')}`,
      tenant: ctx.principal?.tenant ?? '',
      filename: upload.file.filename.slice(0, 256),
      purpose,
      bytes: upload.file.content.length,
      createdAt,
      expiresAt: ttl === undefined ? null : createdAt + ttl,
    };
    await stored(() => store.putFile(file, upload.file!.content));
    sendJson(ctx, 200, fileObject(file));
  });
}

/** `GET /v1/files`: the tenant's files, newest first (`purpose`, `limit` 1-10000, `after`, `order`). */
export async function listFiles(ctx: RequestContext): Promise<void> {
  const store = batchStoreOf(ctx);
  const q = new URL(ctx.req.url ?? '/', 'http://x').searchParams;
  const purpose = q.get('purpose');
  const now = Math.floor(ctx.clock.wall() / 1000);
  let files = await stored(() => store.listFiles(ctx.principal?.tenant ?? ''));
  files = files.filter((f) => !expired(f, now) && (purpose === null || f.purpose === purpose));
  const order = q.get('order') ?? 'desc';
  if (order !== 'asc' && order !== 'desc')
    throw syError('SY_ERR_INVALID_REQUEST', '"order" must be asc or desc', { param: 'order' });
  if (order === 'asc') files.reverse();
  sendJson(ctx, 200, page(q, files, 10_000, fileObject));
}

/** A cursor page of `items`: those after the id `after`, at most `limit` (1 to `max`, default `fallback`). */
export function page<T extends { id: string }>(
  q: URLSearchParams,
  items: readonly T[],
  max: number,
  view: (item: T) => JsonObject,
  fallback = max,
): JsonObject {
  const raw = q.get('limit');
  const limit = raw === null ? fallback : Number(raw);
  if (raw !== null && (!/^\d{1,6}$/.test(raw) || limit < 1 || limit > max))
    throw syError('SY_ERR_INVALID_REQUEST', `"limit" must be an integer from 1 to ${max}`, {
      param: 'limit',
    });
  let rest = items;
  const after = q.get('after');
  if (after !== null) {
    const i = items.findIndex((x) => x.id === after);
    rest = i < 0 ? [] : items.slice(i + 1);
  }
  const data = rest.slice(0, limit).map(view);
  return {
    object: 'list',
    data,
    first_id: (data[0]?.['id'] as string | undefined) ?? null,
    last_id: (data[data.length - 1]?.['id'] as string | undefined) ?? null,
    has_more: rest.length > limit,
  };
}

/** `GET /v1/files/{id}`. */
export async function retrieveFile(ctx: RequestContext): Promise<void> {
  const f = await loadFile(ctx, batchStoreOf(ctx), ctx.params['id'] ?? '');
  sendJson(ctx, 200, fileObject(f));
}

/** `GET /v1/files/{id}/content`: the file's bytes as uploaded or written. */
export async function fileContent(ctx: RequestContext): Promise<void> {
  const store = batchStoreOf(ctx);
  const id = ctx.params['id'] ?? '';
  await loadFile(ctx, store, id);
  const content = await stored(() => store.fileContent(ctx.principal?.tenant ?? '', id));
  if (content === undefined)
    throw syError('SY_ERR_FILE_NOT_FOUND', JSON.stringify(id.slice(0, 200)));
  sendBytes(ctx, 200, 'application/octet-stream', content);
}

/** `DELETE /v1/files/{id}`. */
export async function deleteFile(ctx: RequestContext): Promise<void> {
  const store = batchStoreOf(ctx);
  const id = ctx.params['id'] ?? '';
  const tenant = ctx.principal?.tenant ?? '';
  await loadFile(ctx, store, id);
  // A running batch reads its input again after a restart: its file stays until it ends.
  const batches = await stored(() => store.listBatches(tenant));
  const user = batches.find(
    (b) => ACTIVE_STATUSES.includes(b.status) && b.batch['input_file_id'] === id,
  );
  if (user !== undefined) throw syError('SY_ERR_FILE_IN_USE', user.id);
  const deleted = await stored(() => store.deleteFile(tenant, id));
  if (!deleted) throw syError('SY_ERR_FILE_NOT_FOUND', JSON.stringify(id.slice(0, 200)));
  sendJson(ctx, 200, { id, object: 'file', deleted: true });
}
