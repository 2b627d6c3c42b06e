import { once } from 'node:events';
import type { BackendStream, Usage } from '../../contracts/backend.js';
import type { JsonObject } from '../../contracts/json.js';
import { syError, toSwitchyardError } from '../../core/errors.js';
import { events, publish } from '../../core/events.js';
import type { Ticket } from '../../admission/admission-controller.js';
import {
  admit,
  chatEstimate,
  embeddingsEstimate,
  settleUsage,
  substituteModel,
} from '../admission-gate.js';
import type { RequestContext } from '../context.js';
import { errorBody, ROUTE_HEADER, sendJson } from '../respond.js';
import { journeyChat, JOURNEY_MODEL_PREFIX } from './journeys.js';
import { resolveModel } from './models.js';
import { validateChat, validateEmbeddings } from '../openai-fields.js';

/** `POST /v1/chat/completions`, streamed (SSE) or not. */
export async function chatCompletions(ctx: RequestContext): Promise<void> {
  const body = await ctx.readJson();
  validateChat(body);
  if ((body['model'] as string).startsWith(JOURNEY_MODEL_PREFIX)) return journeyChat(ctx, body);
  const model = resolveModel(ctx, substituteModel(ctx, body['model'] as string), 'chat');
  const { call, ticket } = await admit(ctx, {
    model: model.name,
    estimate: chatEstimate(ctx, body, model.name),
  });
  if (body['stream'] === true) {
    ctx.stream = true;
    const stream = await model.call.stream({ op: 'chat', body }, call);
    await pipeStream(ctx, stream, ticket);
    return;
  }
  const result = await model.call.call({ op: 'chat', body }, call);
  reportUsage(ctx, 'chat', result.usage);
  settleUsage(ctx, ticket, model.name, result.usage);
  sendJson(ctx, 200, result.raw ?? result.json);
}

/** `POST /v1/embeddings`. */
export async function embeddings(ctx: RequestContext): Promise<void> {
  const body = await ctx.readJson();
  validateEmbeddings(body);
  const model = resolveModel(ctx, substituteModel(ctx, body['model'] as string), 'embeddings');
  const { call, ticket } = await admit(ctx, {
    model: model.name,
    estimate: embeddingsEstimate(ctx, body, model.name),
  });
  const result = await model.call.call({ op: 'embeddings', body }, call);
  reportUsage(ctx, 'embeddings', result.usage);
  settleUsage(ctx, ticket, model.name, result.usage);
  sendJson(ctx, 200, result.raw ?? result.json);
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
async function pipeStream(
  ctx: RequestContext,
  stream: BackendStream,
  ticket: Ticket,
): Promise<void> {
  const res = ctx.res;
  const signal = ctx.deadline!.signal;
  res.writeHead(200, {
    'content-type': stream.contentType,
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
    'x-request-id': ctx.requestId,
    [ROUTE_HEADER]: ctx.pathTaken(),
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
    stream.cancel();
    reportUsage(ctx, 'chat', stream.usage());
    // Streams settle too: the reservation becomes what the stream's usage chunk said.
    settleUsage(ctx, ticket, ctx.model, stream.usage());
  }
}

function reportUsage(ctx: RequestContext, operation: string, usage: Usage | undefined): void {
  if (usage === undefined) return;
  publish(events.tokenUsage, {
    model: ctx.model,
    operation,
    inputTokens: usage.inputTokens,
    outputTokens: usage.outputTokens,
  });
}
