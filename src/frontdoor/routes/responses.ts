import { once } from 'node:events';
import type { BackendStream } from '../../contracts/backend.js';
import type { JsonObject, JsonValue } from '../../contracts/json.js';
import type { StoredResponse } from '../../contracts/response-store.js';
import { syError, toSwitchyardError } from '../../core/errors.js';
import { events, publish } from '../../core/events.js';
import { isJsonObject } from '../../core/safe-json.js';
import { eventData } from '../../backends/http/sse.js';
import type { RequestContext } from '../context.js';
import { keepPayload, payloadWanted } from '../payload.js';
import { DATA_HEADERS, withScope } from '../scope.js';
import { errorBody, sendJson, startEventStream } from '../respond.js';
import { chatOutcome } from '../../pipeline/responses-chat.js';
import {
  answerJourneyTurn,
  answerTurn,
  asOurs,
  completionUsage,
  keepResponse,
  loadResponse,
  openTurn,
  passThroughBody,
  speaksResponses,
  type ResponsesKeeping,
  type ResponsesTurn,
} from '../../pipeline/responses-turn.js';
import { ResponsesStreamTranslator } from '../responses-stream.js';
import { journeyCompletion, JOURNEY_MODEL_PREFIX } from './journeys.js';
import { extend } from '../../core/objects.js';

/**
 * `POST /v1/responses` (#16): the OpenAI Responses API over any chat model or journey, translated
 * onto a chat completions call through the model-call pipeline (plain, or streamed as typed
 * Responses events). `store` (default true) keeps the answer for `GET /v1/responses/{id}` and
 * for a follow-up's `previous_response_id`. The non-streamed turn is `pipeline/responses-turn.ts`,
 * which batch lines of `/v1/responses` run too.
 */
export async function createResponse(ctx: RequestContext): Promise<void> {
  const body = await ctx.readJson();
  const model = body['model'];
  if (typeof model === 'string') ctx.model = model;
  const tenant = ctx.principal?.tenant ?? '';
  const header = ctx.req.headers[DATA_HEADERS.user];
  const keeping = keepingOf(ctx);
  const { turn, chat } = await openTurn(body, {
    tenant,
    user: typeof header === 'string' && header !== '' ? header : undefined,
    keeping,
    now: Date.now(),
  });
  if (turn.model.startsWith(JOURNEY_MODEL_PREFIX)) return journeyResponse(ctx, turn, chat);
  const pipeline = ctx.runtime.pipeline;
  pipeline.preflight(tenant, turn.model, 'chat');
  const passThrough = speaksResponses(ctx.runtime.snapshot.config.models[turn.model]);
  await withScope(
    ctx,
    {
      origin: 'direct',
      estimate: pipeline.estimate('chat', chat, turn.model),
      user: turn.user,
    },
    async (scope) => {
      if (body['stream'] === true) {
        ctx.stream = true;
        const r = await pipeline.stream(
          scope,
          passThrough
            ? {
                op: 'responses',
                model: turn.model,
                body: extend(passThroughBody(turn), { stream: true }),
                direct: true,
              }
            : { op: 'chat', model: turn.model, body: extend(chat, { stream: true }), direct: true },
        );
        ctx.model = r.model;
        ctx.release = r.reason;
        if (payloadWanted(ctx)) keepPayload(ctx, loggedRequest(turn));
        await (passThrough ? forwardResponseStream : streamResponse)(ctx, turn, r.stream);
        return;
      }
      const r = await answerTurn(pipeline, scope, {
        turn,
        chat,
        passThrough,
        keeping,
        now: Date.now,
      });
      ctx.model = r.model;
      ctx.release = r.reason;
      if (payloadWanted(ctx)) keepPayload(ctx, loggedRequest(turn), r.answer);
      sendJson(ctx, 200, r.answer);
    },
  );
}

/**
 * The request as the inference log keeps it (#15): the whole context the model saw as `input`
 * (a `previous_response_id` expanded), so the record is exact and replay needs no stored response.
 */
function loggedRequest(turn: ResponsesTurn): JsonObject {
  const { previous_response_id: _p, ...rest } = turn.body;
  return { ...rest, input: turn.context };
}

/**
 * Forwards an upstream's Responses stream event by event, with backpressure. The terminal
 * Response is stored before the block that carries it goes out, so a retrieve right after the
 * stream finds it; a failure after the first byte ends with `response.failed` and `error`.
 */
async function forwardResponseStream(
  ctx: RequestContext,
  turn: ResponsesTurn,
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
async function journeyResponse(
  ctx: RequestContext,
  turn: ResponsesTurn,
  chat: JsonObject,
): Promise<void> {
  const completion = await journeyCompletion(ctx, chat);
  if (completion === undefined) return; // the failure was answered, with the route
  if (turn.body['stream'] !== true) {
    const tenant = ctx.principal?.tenant ?? '';
    sendJson(
      ctx,
      200,
      await answerJourneyTurn(keepingOf(ctx), tenant, turn, completion, Date.now()),
    );
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
  const end = t.finish(completionUsage(completion));
  await keepInStream(ctx, turn, end.response, t, end.events);
}

/**
 * Forwards a chat stream as Responses events, with backpressure. A failure after the first byte
 * ends the stream with `response.failed` and an `error` event (the status is already 200).
 */
async function streamResponse(
  ctx: RequestContext,
  turn: ResponsesTurn,
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
  turn: ResponsesTurn,
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

/** Where this gateway keeps Responses (absent in bare test runtimes: nothing is stored). */
function keepingOf(ctx: RequestContext): ResponsesKeeping {
  return { store: ctx.runtime.responses, ttlS: ctx.runtime.snapshot.config.responses.ttl_s };
}

async function keep(ctx: RequestContext, turn: ResponsesTurn, response: JsonObject): Promise<void> {
  await keepResponse(keepingOf(ctx), ctx.principal?.tenant ?? '', turn, response, Date.now());
}

/** This tenant's stored response, or 404 (unknown, expired, purged, or another tenant's). */
function load(ctx: RequestContext, tenant: string, id: string): Promise<StoredResponse> {
  return loadResponse(ctx.runtime.responses, tenant, id, Date.now());
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
    deleted = (await ctx.runtime.responses?.delete(tenant, id)) === true;
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
