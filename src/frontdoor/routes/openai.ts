import type { JsonObject } from '../../contracts/json.js';
import { syError } from '../../core/errors.js';
import type { RequestContext } from '../context.js';
import { keepPayload, payloadWanted } from '../payload.js';
import { withScope } from '../scope.js';
import { sendJson, sendStream } from '../respond.js';
import { journeyChat, JOURNEY_MODEL_PREFIX } from './journeys.js';
import { validateChat, validateEmbeddings } from '../openai-fields.js';
import { extendForStream, streamLimits } from '../stream-limits.js';

/** `POST /v1/chat/completions`, streamed (SSE) or not: one call through the model-call pipeline. */
export async function chatCompletions(ctx: RequestContext): Promise<void> {
  const body = await ctx.readJson();
  validateChat(body);
  const name = body['model'] as string;
  if (name.startsWith(JOURNEY_MODEL_PREFIX)) return journeyChat(ctx, body);
  const pipeline = ctx.runtime.pipeline;
  ctx.model = name;
  pipeline.preflight(ctx.principal?.tenant ?? '', name, 'chat');
  const user = typeof body['user'] === 'string' ? body['user'] : undefined;
  const limits = body['stream'] === true ? streamLimits(ctx) : undefined;
  await withScope(
    ctx,
    { origin: 'direct', estimate: pipeline.estimate('chat', body, name), user },
    async (scope) => {
      if (limits !== undefined) {
        ctx.stream = true;
        const r = await pipeline.stream(scope, {
          op: 'chat',
          model: name,
          body,
          direct: true,
          streamLimits: limits,
        });
        // From here the stream's own bounds apply, not the unary deadline (#16).
        extendForStream(ctx, limits);
        // A stream's answer is never buffered: its record keeps the request only.
        if (payloadWanted(ctx)) keepPayload(ctx, body);
        ctx.model = r.model;
        ctx.release = r.reason;
        await sendStream(ctx, r.stream);
        return;
      }
      const r = await pipeline.call(scope, { op: 'chat', model: name, body, direct: true });
      ctx.model = r.model;
      ctx.release = r.reason;
      if (payloadWanted(ctx)) keepPayload(ctx, body, r.response.json);
      ctx.upstreamHeaders = r.response.headers;
      sendJson(ctx, 200, r.response.raw ?? r.response.json);
    },
  );
}

/** `POST /v1/embeddings`: one call through the model-call pipeline. */
export async function embeddings(ctx: RequestContext): Promise<void> {
  const body = await ctx.readJson();
  validateEmbeddings(body);
  const name = body['model'] as string;
  const pipeline = ctx.runtime.pipeline;
  ctx.model = name;
  pipeline.preflight(ctx.principal?.tenant ?? '', name, 'embeddings');
  const user = typeof body['user'] === 'string' ? body['user'] : undefined;
  await withScope(
    ctx,
    { origin: 'direct', estimate: pipeline.estimate('embeddings', body, name), user },
    async (scope) => {
      const r = await pipeline.call(scope, { op: 'embeddings', model: name, body, direct: true });
      ctx.model = r.model;
      ctx.release = r.reason;
      if (payloadWanted(ctx)) keepPayload(ctx, body, r.response.json);
      ctx.upstreamHeaders = r.response.headers;
      sendJson(ctx, 200, r.response.raw ?? r.response.json);
    },
  );
}

/** `GET /v1/models`: the models this tenant may call through the OpenAI API. */
export function listModels(ctx: RequestContext): Promise<void> {
  const tenant = ctx.principal?.tenant ?? '';
  const data: JsonObject[] = [];
  for (const model of ctx.runtime.models.values()) {
    if (!model.operations.has('chat') && !model.operations.has('embeddings')) continue;
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
