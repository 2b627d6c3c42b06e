import type { Operation, UploadBody } from '../../contracts/backend.js';
import type { JsonObject } from '../../contracts/json.js';
import { syError } from '../../core/errors.js';
import type { RequestContext } from '../context.js';
import { keepPayload, payloadWanted } from '../payload.js';
import { withScope } from '../scope.js';
import { sendBytes, sendJson, sendStream } from '../respond.js';
import { journeyChat, JOURNEY_MODEL_PREFIX } from './journeys.js';
import { validateChat, validateEmbeddings } from '../openai-fields.js';
import { extendForStream, streamLimits } from '../stream-limits.js';
import { extend } from '../../core/objects.js';

/** `POST /v1/chat/completions`, streamed (SSE) or not: one call through the model-call pipeline. */
export async function chatCompletions(ctx: RequestContext): Promise<void> {
  const body = await ctx.readJson();
  validateChat(body);
  const name = body['model'] as string;
  if (name.startsWith(JOURNEY_MODEL_PREFIX)) return journeyChat(ctx, body);
  return serveDirect(ctx, 'chat', name, body, body['stream'] === true);
}

/** `POST /v1/embeddings`: one call through the model-call pipeline. */
export async function embeddings(ctx: RequestContext): Promise<void> {
  const body = await ctx.readJson();
  validateEmbeddings(body);
  return serveDirect(ctx, 'embeddings', body['model'] as string, body, false);
}

/**
 * One direct call of an OpenAI route through the pipeline (chat, embeddings, and the
 * pass-through operations of #16 part 4): preflight (the model exists, the tenant may use it,
 * it serves the operation) before any quota is taken, then the scope (class, deadline, quotas),
 * then the call, streamed or not, and the answer as the upstream sent it.
 */
export async function serveDirect(
  ctx: RequestContext,
  op: Operation,
  name: string,
  body: JsonObject,
  streamed: boolean,
  upload?: UploadBody,
): Promise<void> {
  const pipeline = ctx.runtime.pipeline;
  ctx.model = name;
  pipeline.preflight(ctx.principal?.tenant ?? '', name, op);
  const user = typeof body['user'] === 'string' ? body['user'] : undefined;
  const limits = streamed ? streamLimits(ctx) : undefined;
  const spec = { op, model: name, body, direct: true, ...(upload === undefined ? {} : { upload }) };
  await withScope(
    ctx,
    { origin: 'direct', estimate: pipeline.estimate(op, body, name), user },
    async (scope) => {
      if (limits !== undefined) {
        ctx.stream = true;
        const r = await pipeline.stream(scope, extend(spec, { streamLimits: limits }));
        // From here the stream's own bounds apply, not the unary deadline (#16).
        extendForStream(ctx, limits);
        // A stream's answer is never buffered: its record keeps the request only.
        if (payloadWanted(ctx)) keepPayload(ctx, body);
        ctx.model = r.model;
        ctx.release = r.reason;
        await sendStream(ctx, r.stream);
        return;
      }
      const r = await pipeline.call(scope, spec);
      ctx.model = r.model;
      ctx.release = r.reason;
      const res = r.response;
      if (payloadWanted(ctx)) keepPayload(ctx, body, res.json);
      ctx.upstreamHeaders = res.headers;
      // A transcription in text, srt or vtt is forwarded in its own media type.
      if (res.contentType !== undefined && res.raw !== undefined)
        sendBytes(ctx, 200, res.contentType, res.raw);
      else sendJson(ctx, 200, res.raw ?? res.json);
    },
  );
}

/** The operations that make a model one of the OpenAI API's (KServe-only models are not). */
const LISTED: readonly Operation[] = [
  'chat',
  'embeddings',
  'completions',
  'moderations',
  'images',
  'speech',
  'transcriptions',
];

/** `GET /v1/models`: the models this tenant may call through the OpenAI API. */
export function listModels(ctx: RequestContext): Promise<void> {
  const tenant = ctx.principal?.tenant ?? '';
  const data: JsonObject[] = [];
  for (const model of ctx.runtime.models.values()) {
    if (!LISTED.some((op) => model.operations.has(op))) continue;
    if (!ctx.runtime.keys.mayUse(tenant, model.name)) continue;
    data.push(modelObject(ctx, model.name));
  }
  // Journeys are models too (#16 item 8): `journey:<name>` for tenants allowed to call them.
  for (const name of ctx.runtime.journeys?.compiled.keys() ?? []) {
    const id = `${JOURNEY_MODEL_PREFIX}${name}`;
    if (ctx.runtime.keys.mayUse(tenant, id)) data.push(modelObject(ctx, id));
  }
  sendJson(ctx, 200, { object: 'list', data });
  return Promise.resolve();
}

/** `GET /v1/models/{model}`. */
export function retrieveModel(ctx: RequestContext): Promise<void> {
  const name = ctx.params['model'] ?? '';
  const tenant = ctx.principal?.tenant ?? '';
  const known = name.startsWith(JOURNEY_MODEL_PREFIX)
    ? ctx.runtime.journeys?.compiled.has(name.slice(JOURNEY_MODEL_PREFIX.length)) === true
    : ctx.runtime.models.has(name);
  if (!known || !ctx.runtime.keys.mayUse(tenant, name)) {
    throw syError('SY_ERR_MODEL_NOT_FOUND', JSON.stringify(name.slice(0, 200)));
  }
  ctx.model = name;
  sendJson(ctx, 200, modelObject(ctx, name));
  return Promise.resolve();
}

function modelObject(ctx: RequestContext, id: string): JsonObject {
  return { id, object: 'model', created: ctx.runtime.createdAt, owned_by: 'switchyard' };
}
