import { randomBytes } from 'node:crypto';
import type { StoredBatch } from '../../contracts/batch-store.js';
import type { JsonObject } from '../../contracts/json.js';
import { syError, toSwitchyardError } from '../../core/errors.js';
import { events, publish } from '../../core/events.js';
import { isJsonObject } from '../../core/safe-json.js';
import {
  BATCH_ENDPOINTS,
  DATA_FIELD,
  keptData,
  OUTPUT_EXPIRES_FIELD,
  parseBatchInput,
  type BatchLineError,
} from '../../pipeline/batch-lines.js';
import { JOURNEY_MODEL_PREFIX } from '../../pipeline/journey-chat.js';
import { validateResponsesRequest } from '../../pipeline/responses-chat.js';
import type { RequestContext } from '../context.js';
import { validateChat, validateEmbeddings, validatePassThrough } from '../openai-fields.js';
import { sendJson } from '../respond.js';
import { withDataScope } from '../scope.js';
import { batchStoreOf, expiresAfter, loadFile, page, stored } from './files.js';

/** The one completion window OpenAI accepts, in seconds. */
const WINDOWS: Readonly<Record<string, number>> = { '24h': 86_400 };
/** Where the key that made the batch is kept (its lines are charged to it); never shown. */
const KEY_FIELD = 'switchyard_key_id';

/** The Batch object as clients see it. */
function batchView(b: StoredBatch): JsonObject {
  const {
    [KEY_FIELD]: _key,
    [OUTPUT_EXPIRES_FIELD]: _ttl,
    [DATA_FIELD]: _data,
    ...shown
  } = b.batch;
  return { ...shown, status: b.status };
}

function bad(detail: string, param: string): never {
  throw syError('SY_ERR_INVALID_REQUEST', detail, { param });
}

/** Each batch endpoint's body check: the one the endpoint itself runs. */
const BATCH_VALIDATE: Readonly<Record<string, (body: JsonObject) => void>> = {
  '/v1/chat/completions': validateChat,
  '/v1/embeddings': validateEmbeddings,
  '/v1/completions': (b) => validatePassThrough('completions', b),
  '/v1/moderations': (b) => validatePassThrough('moderations', b),
  '/v1/responses': (b) => void validateResponsesRequest(b),
};

/**
 * `POST /v1/batches`: a batch over an uploaded `batch` file. Every line is checked now (JSONL
 * shape, endpoint, custom_id, the body as the endpoint would check it, the model and the
 * tenant's right to it; a journey's when its line runs): with any error the batch is `failed`
 * with the errors listed, as OpenAI does; otherwise it is `in_progress` and the runner takes it
 * when load allows. The data headers (`x-switchyard-data-*`, jurisdiction) declare the data of
 * every line, kept with the batch.
 */
export async function createBatch(ctx: RequestContext): Promise<void> {
  const store = batchStoreOf(ctx);
  await withDataScope(ctx, async () => {
    const body = await ctx.readJson();
    const fileId = body['input_file_id'];
    if (typeof fileId !== 'string' || fileId === '')
      bad('input_file_id is required', 'input_file_id');
    const endpoint = body['endpoint'];
    const op = typeof endpoint === 'string' ? BATCH_ENDPOINTS[endpoint] : undefined;
    if (op === undefined)
      bad(`endpoint must be one of ${Object.keys(BATCH_ENDPOINTS).join(', ')}`, 'endpoint');
    const window = body['completion_window'];
    if (typeof window !== 'string' || WINDOWS[window] === undefined)
      bad('completion_window must be "24h"', 'completion_window');
    const metadata = body['metadata'] ?? null;
    if (
      metadata !== null &&
      (!isJsonObject(metadata) ||
        Object.keys(metadata).length > 16 ||
        Object.values(metadata).some((v) => typeof v !== 'string' || v.length > 512))
    )
      bad('metadata must be at most 16 string values', 'metadata');
    const oea = body['output_expires_after'];
    if (oea !== undefined && oea !== null && !isJsonObject(oea))
      bad(
        'output_expires_after must be {"anchor": "created_at", "seconds": N}',
        'output_expires_after',
      );
    const cfg = ctx.runtime.snapshot.config.batches;
    const outputTtl =
      (isJsonObject(oea)
        ? expiresAfter(oea['anchor'], oea['seconds'], 'output_expires_after')
        : undefined) ?? cfg.file_expires_after_s;
    const tenant = ctx.principal?.tenant ?? '';
    const file = await loadFile(ctx, store, fileId, 'input_file_id');
    if (file.purpose !== 'batch') bad('the input file must have purpose "batch"', 'input_file_id');
    const content = await stored(() => store.fileContent(tenant, fileId));
    if (content === undefined) throw syError('SY_ERR_FILE_NOT_FOUND', JSON.stringify(fileId));
    const parsed = parseBatchInput(content, endpoint as string, cfg.max_lines);
    const errors: BatchLineError[] = [...parsed.errors];
    const validate = BATCH_VALIDATE[endpoint as string]!;
    for (const line of parsed.lines) {
      try {
        validate(line.body);
        // A journey (`journey:<name>`, a chat model) is checked when its line runs, as a direct
        // call checks it: an unknown or forbidden journey fails its line alone (#16 item 8).
        if (op !== 'chat' || !line.model.startsWith(JOURNEY_MODEL_PREFIX))
          ctx.runtime.pipeline.preflight(tenant, line.model, op);
      } catch (err) {
        const e = toSwitchyardError(err);
        errors.push({
          code: e.code === 'SY_ERR_MODEL_NOT_FOUND' ? 'model_not_found' : 'invalid_request',
          message: e.message,
          param: e.param === undefined ? null : `body.${e.param}`,
          line: line.line,
        });
      }
      if (errors.length >= 100) break;
    }
    errors.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
    const now = Math.floor(ctx.clock.wall() / 1000);
    const failed = errors.length > 0;
    const id = `batch_${randomBytes(12).toString('hex')}`;
    const b: StoredBatch = {
      id,
      tenant,
      status: failed ? 'failed' : 'in_progress',
      createdAt: now,
      batch: {
        id,
        object: 'batch',
        endpoint: endpoint as string,
        errors: failed ? { object: 'list', data: errors.map((e) => ({ ...e })) } : null,
        input_file_id: fileId,
        completion_window: window,
        output_file_id: null,
        error_file_id: null,
        created_at: now,
        in_progress_at: failed ? null : now,
        expires_at: now + WINDOWS[window],
        finalizing_at: null,
        completed_at: null,
        failed_at: failed ? now : null,
        expired_at: null,
        cancelling_at: null,
        cancelled_at: null,
        request_counts: { total: failed ? 0 : parsed.lines.length, completed: 0, failed: 0 },
        metadata,
        [KEY_FIELD]: ctx.principal?.keyId ?? '',
        ...(outputTtl === undefined ? {} : { [OUTPUT_EXPIRES_FIELD]: outputTtl }),
        // The data the creator declared in its headers (validated by the scope): each line's.
        ...(ctx.data === undefined ? {} : { [DATA_FIELD]: keptData(ctx.data) }),
      },
    };
    await stored(() => store.putBatch(b));
    if (failed) publish(events.batchEnd, { endpoint: endpoint as string, status: 'failed' });
    if (!failed) ctx.runtime.batches?.kick();
    sendJson(ctx, 200, batchView(b));
  });
}

async function loadBatch(ctx: RequestContext): Promise<StoredBatch> {
  const id = ctx.params['id'] ?? '';
  const b = await stored(() => batchStoreOf(ctx).getBatch(ctx.principal?.tenant ?? '', id));
  if (b === undefined) throw syError('SY_ERR_BATCH_NOT_FOUND', JSON.stringify(id.slice(0, 200)));
  return b;
}

/** `GET /v1/batches/{id}`: its status, progress (`request_counts`) and files. */
export async function retrieveBatch(ctx: RequestContext): Promise<void> {
  sendJson(ctx, 200, batchView(await loadBatch(ctx)));
}

/** `GET /v1/batches`: the tenant's batches, newest first (`limit` 1-100, default 20; `after`). */
export async function listBatches(ctx: RequestContext): Promise<void> {
  const store = batchStoreOf(ctx);
  const q = new URL(ctx.req.url ?? '/', 'http://x').searchParams;
  const all = await stored(() => store.listBatches(ctx.principal?.tenant ?? ''));
  sendJson(ctx, 200, page(q, all, 100, batchView, 20));
}

/**
 * `POST /v1/batches/{id}/cancel`: `cancelling` now; the runner lets the lines in flight finish,
 * writes the output and error files of what was done and marks it `cancelled`.
 */
export async function cancelBatch(ctx: RequestContext): Promise<void> {
  const store = batchStoreOf(ctx);
  for (let tries = 0; tries < 3; tries++) {
    const b = await loadBatch(ctx);
    if (b.status === 'cancelling' || b.status === 'cancelled') {
      sendJson(ctx, 200, batchView(b));
      return;
    }
    if (b.status !== 'validating' && b.status !== 'in_progress')
      throw syError('SY_ERR_BATCH_NOT_CANCELLABLE', `it is ${b.status}`);
    const next: StoredBatch = {
      ...b,
      status: 'cancelling',
      batch: { ...b.batch, cancelling_at: Math.floor(ctx.clock.wall() / 1000) },
    };
    if (await stored(() => store.updateBatch(next, [b.status]))) {
      ctx.runtime.batches?.kick();
      sendJson(ctx, 200, batchView(next));
      return;
    }
  }
  throw syError('SY_ERR_BATCH_STORE_FAILED', 'the batch kept changing');
}
