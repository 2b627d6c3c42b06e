import type { JsonObject, JsonValue } from '../../contracts/json.js';
import { syError, toSwitchyardError, type SwitchyardError } from '../../core/errors.js';
import { events, publish } from '../../core/events.js';
import { isJsonObject } from '../../core/safe-json.js';
import { estimateTokens } from '../../core/cost.js';
import { compactRoute, type JourneyOutcome, type JourneyRoute } from '../../orchestrator/runner.js';
import type { RequestContext } from '../context.js';
import { keepPayload, payloadWanted } from '../payload.js';
import { withScope } from '../scope.js';
import { DEGRADED_HEADER, errorBody, ROUTE_HEADER } from '../respond.js';

export const JOURNEY_MODEL_PREFIX = 'journey:';

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
  const out = await execute(ctx, name, input, attributes);
  if (payloadWanted(ctx, name))
    keepPayload(ctx, { input, attributes }, out.ok ? { output: out.body } : undefined);
  if (out.ok) send(ctx, 200, { journey: name, output: out.body, route: routeJson(out.route) });
  else sendFailure(ctx, out.error, out.route);
}

/**
 * `model: "journey:<name>"` on `/v1/chat/completions`: the last user message is the journey's
 * `input.text` (the messages are `input.messages`, `user` is `attr.user`). The answer is a
 * chat.completion, with the route beside the usual fields; `stream: true` sends it as chunks.
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
  const name = (body['model'] as string).slice(JOURNEY_MODEL_PREFIX.length);
  const messages = body['messages'] as JsonValue[];
  let text = '';
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i] as JsonObject;
    if (m['role'] === 'user') {
      text = contentText(m['content']);
      break;
    }
  }
  const input: JsonObject = { text, messages };
  for (const k of ['max_tokens', 'temperature'] as const)
    if (body[k] !== undefined) input[k] = body[k]!;
  const attributes: JsonObject = typeof body['user'] === 'string' ? { user: body['user'] } : {};
  const out = await execute(ctx, name, input, attributes);
  if (payloadWanted(ctx, name))
    keepPayload(ctx, { input, attributes }, out.ok ? { output: out.body } : undefined);
  if (!out.ok) {
    sendFailure(ctx, out.error, out.route);
    return undefined;
  }
  const completion = toCompletion(ctx, body['model'] as string, out.body, out.used);
  completion['route'] = routeJson(out.route);
  return completion;
}

/** What a journey's model calls used, summed over every call its stages made. */
interface Used {
  readonly inputTokens: number;
  readonly outputTokens: number;
}

async function execute(
  ctx: RequestContext,
  name: string,
  input: JsonObject,
  attributes: JsonObject,
): Promise<JourneyOutcome & { readonly used: Used }> {
  const journeys = ctx.runtime.journeys;
  const journey = journeys?.compiled.get(name);
  const shown = JSON.stringify(name.slice(0, 200));
  if (journeys === undefined || journey === undefined)
    throw syError('SY_ERR_JOURNEY_NOT_FOUND', shown);
  const tenant = ctx.principal?.tenant ?? '';
  const model = `${JOURNEY_MODEL_PREFIX}${name}`;
  if (!ctx.runtime.keys.mayUse(tenant, model)) throw syError('SY_ERR_JOURNEY_FORBIDDEN', shown);
  ctx.model = model;
  if (ctx.runtime.admission?.switches().journeys_disabled.includes(name) === true)
    throw syError('SY_ERR_SHED', `journey ${name} is off in the current mode`, { retryAfterS: 1 });
  const tokens = estimateTokens(JSON.stringify(input));
  let used: Used = { inputTokens: 0, outputTokens: 0 };
  // One scope for the whole journey: every model call its stages make goes through the
  // pipeline bound to it, and the quota ticket settles to what those calls used.
  const outcome = await withScope(
    ctx,
    {
      origin: 'journey',
      trafficClass: journey.trafficClass,
      estimate: { tokens, spend: 0 },
      attributes,
    },
    (scope) => {
      used = scope.used;
      return journeys.runner.run(journey, {
        requestId: ctx.requestId,
        tenant,
        trafficClass: ctx.trafficClass,
        input,
        attributes,
        signal: scope.signal,
        deadlineAt: scope.deadlineAt,
        models: ctx.runtime.catalog.invoker(scope),
        ...(scope.span === undefined ? {} : { span: scope.span }),
        cacheTtlScale: ctx.runtime.admission?.switches().cache_ttl_scale ?? 1,
      });
    },
  );
  const degraded = outcome.route.decisions.filter((d) => DEGRADED_DECISIONS.has(d));
  // Stale features degrade the answer the way an unreachable parent does (#17): counted alike.
  if (degraded.includes('stale_features'))
    publish(events.degradedAnswer, { model, reason: 'stale_features' });
  ctx.journey = {
    name,
    compact: compactRoute(outcome.route),
    route: routeJson(outcome.route),
    degraded,
    ...(outcome.reads === undefined ? {} : { reads: outcome.reads }),
  };
  return { ...outcome, used: { inputTokens: used.inputTokens, outputTokens: used.outputTokens } };
}

/** The decisions that make a journey's answer degraded: logged as such, and in the header. */
const DEGRADED_DECISIONS = new Set(['fallback', 'downgrade', 'stale_served', 'stale_features']);

function routeJson(route: JourneyRoute): JsonObject {
  return JSON.parse(JSON.stringify(route)) as JsonObject;
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

/** The finish reasons OpenAI's schema allows; anything else a journey model said is `stop`. */
const FINISH_REASONS = new Set(['stop', 'length', 'tool_calls', 'content_filter', 'function_call']);

function finishReason(choice: JsonObject): string {
  const f = choice['finish_reason'];
  return typeof f === 'string' && FINISH_REASONS.has(f) ? f : 'stop';
}

function contentText(content: JsonValue | undefined): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content))
    return content
      .map((p) => (isJsonObject(p) && typeof p['text'] === 'string' ? p['text'] : ''))
      .join('');
  return '';
}

/**
 * A journey's answer as a chat.completion with every field OpenAI's schema requires (#16 item 9):
 * a chat model's own completion (its choices made whole), or the output as text. `usage` is what
 * the journey's model calls used, summed.
 */
function toCompletion(
  ctx: RequestContext,
  model: string,
  output: JsonValue,
  used: Used,
): JsonObject {
  const usage = {
    prompt_tokens: used.inputTokens,
    completion_tokens: used.outputTokens,
    total_tokens: used.inputTokens + used.outputTokens,
  };
  const base = {
    id: `chatcmpl-${ctx.requestId}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
  };
  if (isJsonObject(output) && isJsonObject(output['completion'])) {
    const c = output['completion'];
    if (c['object'] === 'chat.completion' && Array.isArray(c['choices']))
      return {
        ...base,
        ...c,
        model,
        choices: c['choices'].map((choice, index) => wholeChoice(choice, index)),
        usage,
      };
  }
  let content: string;
  if (typeof output === 'string') content = output;
  else if (isJsonObject(output) && typeof output['text'] === 'string') content = output['text'];
  else if (isJsonObject(output) && typeof output['answer'] === 'string') content = output['answer'];
  else content = JSON.stringify(output);
  return {
    ...base,
    model,
    choices: [wholeChoice({ message: { role: 'assistant', content }, finish_reason: 'stop' }, 0)],
    usage,
  };
}

/** A choice with the fields the schema requires: index, message (role, content, refusal), logprobs, finish_reason. */
function wholeChoice(choice: JsonValue, index: number): JsonObject {
  const c = isJsonObject(choice) ? choice : {};
  const m = isJsonObject(c['message']) ? c['message'] : {};
  return {
    ...c,
    index: typeof c['index'] === 'number' ? c['index'] : index,
    message: {
      ...m,
      role: 'assistant',
      content: typeof m['content'] === 'string' ? m['content'] : null,
      refusal: typeof m['refusal'] === 'string' ? m['refusal'] : null,
    },
    logprobs: c['logprobs'] ?? null,
    finish_reason: finishReason(c),
  };
}
