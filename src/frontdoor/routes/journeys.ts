import type { JsonObject, JsonValue } from '../../contracts/json.js';
import { syError, toSwitchyardError, type SwitchyardError } from '../../core/errors.js';
import { isJsonObject } from '../../core/safe-json.js';
import type { CompiledJourney } from '../../orchestrator/compile.js';
import { compactRoute, type JourneyRoute } from '../../orchestrator/runner.js';
import {
  finishReason,
  journeyChatCompletion,
  journeyEstimate,
  journeyFor,
  openJourneyChat,
  routeJson,
  runJourneyIn,
  type JourneyRun,
} from '../../pipeline/journey-chat.js';
import type { RequestContext } from '../context.js';
import { keepPayload, payloadWanted } from '../payload.js';
import { withScope } from '../scope.js';
import { DEGRADED_HEADER, errorBody, ROUTE_HEADER } from '../respond.js';

export { JOURNEY_MODEL_PREFIX } from '../../pipeline/journey-chat.js';

/**
 * `POST /v1/journeys/{name}`: runs a journey graph. Body: `{ "input": string | object,
 * "attributes"?: object }` (a string input becomes `{ "text": ... }`). The answer carries the
 * route in the `x-switchyard-route` header (compact) and in the body (every stage's outcome,
 * reason, tier, model, version, cost and time); the request log line records the same route.
 */
export async function runJourney(ctx: RequestContext): Promise<void> {
  const name = ctx.params['name'] ?? '';
  const body = await ctx.readJson();
  const raw = body['input'];
  let input: JsonObject;
  if (typeof raw === 'string') input = { text: raw };
  else if (isJsonObject(raw)) input = raw;
  else
    throw syError('SY_ERR_INVALID_REQUEST', '"input" must be a string or an object', {
      param: 'input',
    });
  const attributes = body['attributes'] ?? {};
  if (!isJsonObject(attributes))
    throw syError('SY_ERR_INVALID_REQUEST', '"attributes" must be an object', {
      param: 'attributes',
    });
  const journey = journeyFor(ctx.runtime, ctx.principal?.tenant ?? '', name, permitted(ctx));
  const out = await execute(ctx, journey, input, attributes);
  if (payloadWanted(ctx, name))
    keepPayload(ctx, { input, attributes }, out.ok ? { output: out.body } : undefined);
  if (out.ok) send(ctx, 200, { journey: name, output: out.body, route: routeJson(out.route) });
  else sendFailure(ctx, out.error, out.route);
}

/**
 * `model: "journey:<name>"` on `/v1/chat/completions`: the journey's chat.completion
 * (`pipeline/journey-chat.ts`, which batch lines run too), with the route beside the usual
 * fields; `stream: true` sends it as chunks.
 */
export async function journeyChat(ctx: RequestContext, body: JsonObject): Promise<void> {
  const completion = await journeyCompletion(ctx, body);
  if (completion === undefined) return;
  if (body['stream'] === true) {
    ctx.stream = true;
    const options = body['stream_options'];
    sendStream(ctx, completion, isJsonObject(options) && options['include_usage'] === true);
    return;
  }
  send(ctx, 200, completion);
}

/**
 * Runs a journey for a chat request and shapes its answer as a chat.completion whose `usage` is
 * the summed tokens of the journey's model calls (#16 item 8). A failure is answered here, with
 * the route; it then returns undefined.
 */
export async function journeyCompletion(
  ctx: RequestContext,
  body: JsonObject,
): Promise<JsonObject | undefined> {
  const chat = openJourneyChat(ctx.runtime, ctx.principal?.tenant ?? '', body, permitted(ctx));
  const { input, attributes } = chat;
  const out = await execute(ctx, chat.journey, input, attributes);
  if (payloadWanted(ctx, chat.journey.name))
    keepPayload(ctx, { input, attributes }, out.ok ? { output: out.body } : undefined);
  if (!out.ok) {
    sendFailure(ctx, out.error, out.route);
    return undefined;
  }
  return journeyChatCompletion(ctx.requestId, chat.model, out.body, out.used, out.route);
}

/** Once the tenant may call the journey, the request is the journey's (its record's model). */
function permitted(ctx: RequestContext): (model: string) => void {
  return (model) => (ctx.model = model);
}

/** Runs a checked journey in the request's scope, and keeps its route for the record. */
async function execute(
  ctx: RequestContext,
  journey: CompiledJourney,
  input: JsonObject,
  attributes: JsonObject,
): Promise<JourneyRun> {
  // One scope for the whole journey, in the class the journey declares.
  const out = await withScope(
    ctx,
    {
      origin: 'journey',
      trafficClass: journey.trafficClass,
      estimate: journeyEstimate(input),
      attributes,
    },
    (scope) => runJourneyIn(ctx.runtime, journey, scope, input, attributes),
  );
  ctx.journey = {
    name: journey.name,
    compact: compactRoute(out.route),
    route: routeJson(out.route),
    degraded: out.degraded,
    ...(out.reads === undefined ? {} : { reads: out.reads }),
  };
  return out;
}

function headers(
  ctx: RequestContext,
  type: string,
  length?: number,
): Record<string, string | number> {
  const h: Record<string, string | number> = {
    'content-type': type,
    'x-request-id': ctx.requestId,
  };
  if (length !== undefined) h['content-length'] = length;
  if (ctx.journey !== undefined) {
    h[ROUTE_HEADER] = ctx.journey.compact;
    // A degraded answer says so, as a degraded model call does (`x-switchyard-degraded`).
    if (ctx.journey.degraded.length > 0)
      h[DEGRADED_HEADER] = [...new Set(ctx.journey.degraded)].join(',');
  }
  return h;
}

function send(ctx: RequestContext, status: number, body: JsonObject, retryAfterS?: number): void {
  if (ctx.res.headersSent || ctx.res.destroyed) return;
  const raw = Buffer.from(JSON.stringify(body));
  const h = headers(ctx, 'application/json', raw.length);
  if (retryAfterS !== undefined) h['retry-after'] = String(retryAfterS);
  ctx.res.writeHead(status, h);
  ctx.res.end(raw);
}

/** The one error body, plus the route of what ran before the journey failed. */
function sendFailure(ctx: RequestContext, thrown: SwitchyardError, route: JourneyRoute): void {
  const err = toSwitchyardError(thrown);
  ctx.fail(err);
  const body = errorBody(err, ctx.requestId, 'openai');
  body['route'] = routeJson(route);
  send(ctx, err.status, body, err.retryAfterS);
}

/**
 * A journey's chat.completion as a chat.completion.chunk stream: the message, then an empty
 * delta with the finish_reason, then (when asked) the usage chunk, as OpenAI streams them.
 */
function sendStream(ctx: RequestContext, completion: JsonObject, includeUsage: boolean): void {
  const res = ctx.res;
  const h = headers(ctx, 'text/event-stream');
  h['cache-control'] = 'no-cache';
  res.writeHead(200, h);
  const choice = (completion['choices'] as JsonObject[])[0]!;
  const message = isJsonObject(choice['message']) ? choice['message'] : {};
  const delta: JsonObject = { role: 'assistant', content: message['content'] ?? null };
  if (typeof message['refusal'] === 'string') delta['refusal'] = message['refusal'];
  if (Array.isArray(message['tool_calls']))
    delta['tool_calls'] = message['tool_calls'].map((c, index) =>
      isJsonObject(c) ? { index, ...c } : c,
    );
  const chunk = (choices: JsonValue[], extra: JsonObject = {}): string =>
    `data: ${JSON.stringify({
      id: completion['id'] ?? null,
      object: 'chat.completion.chunk',
      created: completion['created'] ?? null,
      model: completion['model'] ?? null,
      choices,
      ...extra,
    })}\n\n`;
  res.write(chunk([{ index: 0, delta, logprobs: null, finish_reason: null }]));
  res.write(
    chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: finishReason(choice) }], {
      route: completion['route'] ?? null,
    }),
  );
  if (includeUsage) res.write(chunk([], { usage: completion['usage'] ?? null }));
  res.end('data: [DONE]\n\n');
}
