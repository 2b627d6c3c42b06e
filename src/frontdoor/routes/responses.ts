import { once } from 'node:events';
import type { BackendStream } from '../../contracts/backend.js';
import type { JsonObject, JsonValue } from '../../contracts/json.js';
import type { ResponseStore, StoredResponse } from '../../contracts/response-store.js';
import { syError, toSwitchyardError } from '../../core/errors.js';
import { events, publish } from '../../core/events.js';
import { isJsonObject } from '../../core/safe-json.js';
import { eventData } from '../../backends/http/sse.js';
import type { RequestContext } from '../context.js';
import { keepPayload, payloadWanted } from '../payload.js';
import { DATA_HEADERS, withScope } from '../scope.js';
import { errorBody, sendJson, startEventStream } from '../respond.js';
import {
  chatOutcome,
  newId,
  outputItems,
  responseObject,
  statusOf,
  toChatRequest,
  validateResponsesRequest,
  withIds,
  type ResponseUsage,
} from '../responses-chat.js';
import { ResponsesStreamTranslator } from '../responses-stream.js';
import { journeyCompletion, JOURNEY_MODEL_PREFIX } from './journeys.js';

/** What one `POST /v1/responses` is made of, once parsed. */
interface Turn {
  readonly id: string;
  readonly createdAt: number;
  readonly body: JsonObject;
  readonly model: string;
  readonly store: boolean;
  /** This request's input items, with ids. */
  readonly input: JsonObject[];
  /** The conversation the model sees: the previous response's context and output, then `input`. */
  readonly context: JsonObject[];
  readonly user: string | undefined;
}

/**
 * `POST /v1/responses` (#16): the OpenAI Responses API over any chat model or journey, translated
 * onto a chat completions call through the model-call pipeline (plain, or streamed as typed
 * Responses events). `store` (default true) keeps the answer for `GET /v1/responses/{id}` and
 * for a follow-up's `previous_response_id`.
 */
export async function createResponse(ctx: RequestContext): Promise<void> {
  const body = await ctx.readJson();
  const items = validateResponsesRequest(body);
  const model = body['model'] as string;
  ctx.model = model;
  const tenant = ctx.principal?.tenant ?? '';
  const store = body['store'] !== false && ctx.runtime.responses !== undefined;
  const input = withIds(items);
  let context = input;
  const previous = body['previous_response_id'];
  if (typeof previous === 'string') {
    const prior = await load(ctx, tenant, previous, 'previous_response_id');
    context = [...prior.context, ...outputOf(prior.response), ...input];
  }
  const header = ctx.req.headers[DATA_HEADERS.user];
  const turn: Turn = {
    id: newId('resp'),
    createdAt: Math.floor(Date.now() / 1000),
    body,
    model,
    store,
    input,
    context,
    user:
      typeof header === 'string' && header !== ''
        ? header
        : typeof body['user'] === 'string'
          ? body['user']
          : undefined,
  };
  const chat = toChatRequest(body, context);
  if (model.startsWith(JOURNEY_MODEL_PREFIX)) return journeyResponse(ctx, turn, chat);
  const pipeline = ctx.runtime.pipeline;
  pipeline.preflight(tenant, model, 'chat');
  const mc = ctx.runtime.snapshot.config.models[model];
  if (mc?.backend === 'openai' && mc.responses) return passThrough(ctx, turn, chat);
  await withScope(
    ctx,
    { origin: 'direct', estimate: pipeline.estimate('chat', chat, model), user: turn.user },
    async (scope) => {
      if (body['stream'] === true) {
        ctx.stream = true;
        const r = await pipeline.stream(scope, {
          op: 'chat',
          model,
          body: { ...chat, stream: true },
          direct: true,
        });
        ctx.model = r.model;
        ctx.release = r.reason;
        if (payloadWanted(ctx)) keepPayload(ctx, loggedRequest(turn));
        await streamResponse(ctx, turn, r.stream);
        return;
      }
      const r = await pipeline.call(scope, { op: 'chat', model, body: chat, direct: true });
      ctx.model = r.model;
      ctx.release = r.reason;
      const usage = r.response.usage;
      const answer = finished(turn, r.response.json, usage);
      await keep(ctx, turn, answer);
      if (payloadWanted(ctx)) keepPayload(ctx, loggedRequest(turn), answer);
      sendJson(ctx, 200, answer);
    },
  );
}

/**
 * An upstream that speaks the Responses API gets the request as it came, through the same
 * pipeline, streams included. Switchyard keeps the conversation (so tenants, consent and
 * retention apply to it): `previous_response_id` is expanded into the input here, and the
 * upstream is asked not to store (`store: false`; a streamed answer's events show that).
 */
async function passThrough(ctx: RequestContext, turn: Turn, chat: JsonObject): Promise<void> {
  const pipeline = ctx.runtime.pipeline;
  const body: JsonObject = { ...turn.body, input: turn.context, store: false };
  delete body['previous_response_id'];
  await withScope(
    ctx,
    { origin: 'direct', estimate: pipeline.estimate('chat', chat, turn.model), user: turn.user },
    async (scope) => {
      if (turn.body['stream'] === true) {
        ctx.stream = true;
        const r = await pipeline.stream(scope, {
          op: 'responses',
          model: turn.model,
          body: { ...body, stream: true },
          direct: true,
        });
        ctx.model = r.model;
        ctx.release = r.reason;
        if (payloadWanted(ctx)) keepPayload(ctx, loggedRequest(turn));
        await forwardResponseStream(ctx, turn, r.stream);
        return;
      }
      const r = await pipeline.call(scope, {
        op: 'responses',
        model: turn.model,
        body,
        direct: true,
      });
      ctx.model = r.model;
      ctx.release = r.reason;
      const answer = asOurs(turn, r.response.json);
      await keep(ctx, { ...turn, id: answer['id'] as string }, answer);
      if (payloadWanted(ctx)) keepPayload(ctx, loggedRequest(turn), answer);
      sendJson(ctx, 200, answer);
    },
  );
}

/**
 * The request as the inference log keeps it (#15): the whole context the model saw as `input`
 * (a `previous_response_id` expanded), so the record is exact and replay needs no stored response.
 */
function loggedRequest(turn: Turn): JsonObject {
  const { previous_response_id: _p, ...rest } = turn.body;
  return { ...rest, input: turn.context };
}

/** The upstream's Response as the client asked for it: its own `store` and `previous_response_id` (the id always a string). */
function asOurs(turn: Turn, response: JsonObject): JsonObject {
  return {
    ...response,
    id: typeof response['id'] === 'string' ? response['id'] : turn.id,
    store: turn.store,
    previous_response_id:
      typeof turn.body['previous_response_id'] === 'string'
        ? turn.body['previous_response_id']
        : null,
  };
}

/**
 * Forwards an upstream's Responses stream event by event, with backpressure. The terminal
 * Response is stored before the block that carries it goes out, so a retrieve right after the
 * stream finds it; a failure after the first byte ends with `response.failed` and `error`.
 */
async function forwardResponseStream(
  ctx: RequestContext,
  turn: Turn,
  stream: BackendStream,
): Promise<void> {
  const res = ctx.res;
  const signal = ctx.deadline!.signal;
  startEventStream(ctx);
  publish(events.firstToken, { model: ctx.model, ms: stream.firstEventMs });
  try {
    for await (const chunk of stream.chunks) {
      const final = terminalResponse(chunk);
      if (final !== undefined) {
        const answer = asOurs(turn, final);
        await keep(ctx, { ...turn, id: answer['id'] as string }, answer);
      }
      if (!res.write(chunk)) await once(res, 'drain', { signal });
    }
    res.end();
  } catch (err) {
    const e = toSwitchyardError(signal.aborted ? (signal.reason as unknown) : err);
    ctx.fail(e);
    if (!res.destroyed && e.code !== 'SY_ERR_CLIENT_CLOSED')
      res.end(new ResponsesStreamTranslator(turn).fail(errorBody(e, ctx.requestId, 'openai')));
  } finally {
    stream.cancel();
  }
}

/** The Response of a `response.completed` or `response.incomplete` event in the block, if any. */
function terminalResponse(block: Buffer): JsonObject | undefined {
  const text = block.toString('utf8');
  if (!text.includes('response.completed') && !text.includes('response.incomplete'))
    return undefined;
  for (const data of eventData(block)) {
    let e: unknown;
    try {
      e = JSON.parse(data);
    } catch {
      continue;
    }
    if (
      isJsonObject(e) &&
      (e['type'] === 'response.completed' || e['type'] === 'response.incomplete') &&
      isJsonObject(e['response'])
    )
      return e['response'];
  }
  return undefined;
}

/** A journey answers a Responses request: its chat completion, usage summed over its calls. */
async function journeyResponse(ctx: RequestContext, turn: Turn, chat: JsonObject): Promise<void> {
  const completion = await journeyCompletion(ctx, chat);
  if (completion === undefined) return; // the failure was answered, with the route
  const u = isJsonObject(completion['usage']) ? completion['usage'] : {};
  const usage = {
    inputTokens: Number(u['prompt_tokens'] ?? 0),
    outputTokens: Number(u['completion_tokens'] ?? 0),
  };
  if (turn.body['stream'] !== true) {
    const answer = finished(turn, completion, usage);
    await keep(ctx, turn, answer);
    sendJson(ctx, 200, answer);
    return;
  }
  ctx.stream = true;
  // The whole answer is in hand: it goes out as one chat chunk through the same translator.
  const o = chatOutcome(completion);
  const delta: JsonObject = { role: 'assistant' };
  if (o.text !== undefined) delta['content'] = o.text;
  if (o.calls.length > 0)
    delta['tool_calls'] = o.calls.map((c, index) => ({
      index,
      id: c.id,
      type: 'function',
      function: { name: c.name, arguments: c.arguments },
    }));
  const chunk = { choices: [{ index: 0, delta, finish_reason: o.finishReason ?? 'stop' }] };
  const t = new ResponsesStreamTranslator(turn);
  startEventStream(ctx);
  ctx.res.write(t.start() + t.push(Buffer.from(`data: ${JSON.stringify(chunk)}\n\n`)));
  const end = t.finish(usage);
  await keepInStream(ctx, turn, end.response, t, end.events);
}

/** The Response of a finished chat completion. */
function finished(
  turn: Turn,
  completion: JsonObject,
  usage: ResponseUsage | undefined,
): JsonObject {
  const o = chatOutcome(completion);
  return responseObject({
    ...turn,
    status: statusOf(o.finishReason),
    output: outputItems(o),
    usage,
    finishReason: o.finishReason,
  });
}

/**
 * Forwards a chat stream as Responses events, with backpressure. A failure after the first byte
 * ends the stream with `response.failed` and an `error` event (the status is already 200).
 */
async function streamResponse(
  ctx: RequestContext,
  turn: Turn,
  stream: BackendStream,
): Promise<void> {
  const res = ctx.res;
  const signal = ctx.deadline!.signal;
  const t = new ResponsesStreamTranslator(turn);
  startEventStream(ctx);
  publish(events.firstToken, { model: ctx.model, ms: stream.firstEventMs });
  try {
    if (!res.write(t.start())) await once(res, 'drain', { signal });
    for await (const chunk of stream.chunks) {
      const out = t.push(chunk);
      if (out !== '' && !res.write(out)) await once(res, 'drain', { signal });
    }
  } catch (err) {
    const e = toSwitchyardError(signal.aborted ? (signal.reason as unknown) : err);
    ctx.fail(e);
    if (!res.destroyed && e.code !== 'SY_ERR_CLIENT_CLOSED')
      res.end(t.fail(errorBody(e, ctx.requestId, 'openai')));
    stream.cancel();
    return;
  }
  stream.cancel(); // settles and records the call, from the usage the chunks carried
  const end = t.finish(stream.usage());
  await keepInStream(ctx, turn, end.response, t, end.events);
}

/** Stores a streamed answer before its last event goes out, so a retrieve right after finds it. */
async function keepInStream(
  ctx: RequestContext,
  turn: Turn,
  response: JsonObject,
  t: ResponsesStreamTranslator,
  closing: string,
): Promise<void> {
  try {
    await keep(ctx, turn, response);
  } catch (err) {
    const e = toSwitchyardError(err);
    ctx.fail(e);
    ctx.res.end(t.fail(errorBody(e, ctx.requestId, 'openai')));
    return;
  }
  ctx.res.end(closing);
}

async function keep(ctx: RequestContext, turn: Turn, response: JsonObject): Promise<void> {
  const store = ctx.runtime.responses;
  if (!turn.store || store === undefined) return;
  const ttl = ctx.runtime.snapshot.config.responses.ttl_s * 1000;
  const now = Date.now();
  const record: StoredResponse = {
    id: turn.id,
    tenant: ctx.principal?.tenant ?? '',
    user: turn.user,
    createdAt: now,
    expiresAt: now + ttl,
    response,
    input: turn.input,
    context: turn.context,
  };
  try {
    await store.put(record);
  } catch (err) {
    throw syError('SY_ERR_RESPONSE_STORE_FAILED', String(err).slice(0, 200), { cause: err });
  }
}

function outputOf(response: JsonObject): JsonObject[] {
  const out = response['output'];
  return Array.isArray(out) ? out.filter(isJsonObject) : [];
}

function storeOf(ctx: RequestContext): ResponseStore | undefined {
  return ctx.runtime.responses;
}

/** This tenant's stored response, or 404 (unknown, expired, purged, or another tenant's). */
async function load(
  ctx: RequestContext,
  tenant: string,
  id: string,
  param?: string,
): Promise<StoredResponse> {
  const store = storeOf(ctx);
  let found: StoredResponse | undefined;
  try {
    found = await store?.get(tenant, id, Date.now());
  } catch (err) {
    throw syError('SY_ERR_RESPONSE_STORE_FAILED', String(err).slice(0, 200), { cause: err });
  }
  if (found === undefined)
    throw syError('SY_ERR_RESPONSE_NOT_FOUND', JSON.stringify(id.slice(0, 200)), {
      ...(param === undefined ? {} : { param }),
    });
  return found;
}

/** `GET /v1/responses/{id}`. */
export async function retrieveResponse(ctx: RequestContext): Promise<void> {
  const r = await load(ctx, ctx.principal?.tenant ?? '', ctx.params['id'] ?? '');
  sendJson(ctx, 200, r.response);
}

/** `DELETE /v1/responses/{id}`. */
export async function deleteResponse(ctx: RequestContext): Promise<void> {
  const id = ctx.params['id'] ?? '';
  const tenant = ctx.principal?.tenant ?? '';
  let deleted = false;
  try {
    deleted = (await storeOf(ctx)?.delete(tenant, id)) === true;
  } catch (err) {
    throw syError('SY_ERR_RESPONSE_STORE_FAILED', String(err).slice(0, 200), { cause: err });
  }
  if (!deleted) throw syError('SY_ERR_RESPONSE_NOT_FOUND', JSON.stringify(id.slice(0, 200)));
  sendJson(ctx, 200, { id, object: 'response', deleted: true });
}

/**
 * `GET /v1/responses/{id}/input_items`: the request's input items, a cursor page
 * (`limit` 1-100, default 20; `order` desc by default; `after` an item id).
 */
export async function listInputItems(ctx: RequestContext): Promise<void> {
  const r = await load(ctx, ctx.principal?.tenant ?? '', ctx.params['id'] ?? '');
  const q = new URL(ctx.req.url ?? '/', 'http://x').searchParams;
  const limitRaw = q.get('limit') ?? '20';
  const limit = Number(limitRaw);
  if (!/^\d{1,3}$/.test(limitRaw) || limit < 1 || limit > 100)
    throw syError('SY_ERR_INVALID_REQUEST', '"limit" must be an integer from 1 to 100', {
      param: 'limit',
    });
  const order = q.get('order') ?? 'desc';
  if (order !== 'asc' && order !== 'desc')
    throw syError('SY_ERR_INVALID_REQUEST', '"order" must be asc or desc', { param: 'order' });
  let items: JsonValue[] = order === 'asc' ? [...r.input] : [...r.input].reverse();
  const after = q.get('after');
  if (after !== null) {
    const i = items.findIndex((x) => isJsonObject(x) && x['id'] === after);
    if (i < 0)
      throw syError('SY_ERR_INVALID_REQUEST', '"after" is not an item of this response', {
        param: 'after',
      });
    items = items.slice(i + 1);
  }
  const data = items.slice(0, limit) as JsonObject[];
  sendJson(ctx, 200, {
    object: 'list',
    data,
    first_id: (data[0]?.['id'] as string | undefined) ?? null,
    last_id: (data[data.length - 1]?.['id'] as string | undefined) ?? null,
    has_more: items.length > limit,
  });
}
