import { once } from 'node:events';
import type { BackendStream } from '../../contracts/backend.js';
import type { JsonObject } from '../../contracts/json.js';
import { syError, toSwitchyardError } from '../../core/errors.js';
import { events, publish } from '../../core/events.js';
import type { RequestContext } from '../context.js';
import { withScope } from '../scope.js';
import { DEGRADED_HEADER, errorBody, RELEASE_HEADER, ROUTE_HEADER, sendJson } from '../respond.js';
import { journeyChat, JOURNEY_MODEL_PREFIX } from './journeys.js';
import { validateChat, validateEmbeddings } from '../openai-fields.js';

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
  await withScope(
    ctx,
    { origin: 'direct', estimate: pipeline.estimate('chat', body, name), user },
    async (scope) => {
      if (body['stream'] === true) {
        ctx.stream = true;
        const r = await pipeline.stream(scope, { op: 'chat', model: name, body, direct: true });
        ctx.model = r.model;
        ctx.release = r.reason;
        await pipeStream(ctx, r.stream);
        return;
      }
      const r = await pipeline.call(scope, { op: 'chat', model: name, body, direct: true });
      ctx.model = r.model;
      ctx.release = r.reason;
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
  sendJson(ctx, 200, { object: 'list', data });
  return Promise.resolve();
}

/** `GET /v1/models/{model}`. */
export function retrieveModel(ctx: RequestContext): Promise<void> {
  const name = ctx.params['model'] ?? '';
  const model = ctx.runtime.models.get(name);
  const tenant = ctx.principal?.tenant ?? '';
  if (model === undefined || !ctx.runtime.keys.mayUse(tenant, name)) {
    throw syError('SY_ERR_MODEL_NOT_FOUND', JSON.stringify(name.slice(0, 200)));
  }
  ctx.model = name;
  sendJson(ctx, 200, modelObject(ctx, name));
  return Promise.resolve();
}

function modelObject(ctx: RequestContext, id: string): JsonObject {
  return { id, object: 'model', created: ctx.runtime.createdAt, owned_by: 'switchyard' };
}

/**
 * Forwards a stream event by event with backpressure. Headers are sent only now, when the
 * first event is in hand; an upstream failure after that ends the stream with an SSE error
 * event in OpenAI's shape (the status is already 200 and nothing is retried).
 */
async function pipeStream(ctx: RequestContext, stream: BackendStream): Promise<void> {
  const res = ctx.res;
  const signal = ctx.deadline!.signal;
  res.writeHead(200, {
    'content-type': stream.contentType,
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
    'x-request-id': ctx.requestId,
    [ROUTE_HEADER]: ctx.pathTaken(),
    ...(ctx.degraded() === undefined ? {} : { [DEGRADED_HEADER]: ctx.degraded() }),
    ...(ctx.release === undefined || ctx.release === 'default'
      ? {}
      : { [RELEASE_HEADER]: ctx.release }),
  });
  publish(events.firstToken, { model: ctx.model, ms: stream.firstEventMs });
  try {
    for await (const chunk of stream.chunks) {
      if (!res.write(chunk)) await once(res, 'drain', { signal });
    }
    res.end();
  } catch (err) {
    const e = toSwitchyardError(signal.aborted ? (signal.reason as unknown) : err);
    ctx.fail(e);
    if (!res.destroyed && e.code !== 'SY_ERR_CLIENT_CLOSED') {
      res.end(`data: ${JSON.stringify(errorBody(e, ctx.requestId, 'openai'))}\n\n`);
    }
  } finally {
    // Settles and records the stream in the pipeline, from the usage its chunks carried.
    stream.cancel();
  }
}
