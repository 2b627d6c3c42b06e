import type { JsonObject } from '../contracts/json.js';
import type { ResponseStore, StoredResponse } from '../contracts/response-store.js';
import { syError } from '../core/errors.js';
import { isJsonObject } from '../core/safe-json.js';
import type { CallScope, ModelPipeline } from './model-pipeline.js';
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
} from './responses-chat.js';
import { extend } from '../core/objects.js';

/** What one Responses request (`POST /v1/responses`, or a batch line of it) is made of, once parsed. */
export interface ResponsesTurn {
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

/** Where stored Responses go, and for how long (`responses.ttl_s`). */
export interface ResponsesKeeping {
  /** Absent: nothing is stored (`store` is answered false) and `previous_response_id` is a 404. */
  readonly store: ResponseStore | undefined;
  readonly ttlS: number;
}

/**
 * A Responses request parsed into its turn and the chat completions request it becomes (#16):
 * checked, its input items given ids, a `previous_response_id` expanded from the tenant's stored
 * responses. `store` (default true) holds only where there is a store. Shared by the route and
 * the batch runner, so a batch line is answered exactly as the route would answer it.
 */
export async function openTurn(
  body: JsonObject,
  o: {
    readonly tenant: string;
    readonly user: string | undefined;
    readonly keeping: ResponsesKeeping;
    /** Wall ms. */
    readonly now: number;
  },
): Promise<{ turn: ResponsesTurn; chat: JsonObject }> {
  const items = validateResponsesRequest(body);
  const input = withIds(items);
  let context = input;
  const previous = body['previous_response_id'];
  if (typeof previous === 'string') {
    const prior = await loadResponse(
      o.keeping.store,
      o.tenant,
      previous,
      o.now,
      'previous_response_id',
    );
    context = [...prior.context, ...outputOf(prior.response), ...input];
  }
  const turn: ResponsesTurn = {
    id: newId('resp'),
    createdAt: Math.floor(o.now / 1000),
    body,
    model: body['model'] as string,
    store: body['store'] !== false && o.keeping.store !== undefined,
    input,
    context,
    user: o.user ?? (typeof body['user'] === 'string' ? body['user'] : undefined),
  };
  return { turn, chat: toChatRequest(body, context) };
}

/**
 * The Responses request an upstream that speaks the Responses API gets: as it came, with the
 * conversation expanded here (Switchyard keeps it, so tenants, consent and retention apply) and
 * `store: false` (the upstream keeps nothing).
 */
export function passThroughBody(turn: ResponsesTurn): JsonObject {
  const body: JsonObject = extend(turn.body, { input: turn.context, store: false });
  delete body['previous_response_id'];
  return body;
}

/**
 * A non-streamed turn (#16): one pipeline call in `scope`, translated to chat completions or, for
 * an upstream that speaks the Responses API (`passThrough`), passed through; answered as a
 * Response object and kept when `store` says so. The turn returned carries the answer's id (a
 * passed-through answer keeps the upstream's).
 */
export async function answerTurn(
  pipeline: ModelPipeline,
  scope: CallScope,
  o: {
    readonly turn: ResponsesTurn;
    readonly chat: JsonObject;
    readonly passThrough: boolean;
    readonly keeping: ResponsesKeeping;
    readonly now: () => number;
  },
): Promise<{ answer: JsonObject; turn: ResponsesTurn; model: string; reason: string }> {
  let { turn } = o;
  let answer: JsonObject;
  const r = o.passThrough
    ? await pipeline.call(scope, {
        op: 'responses',
        model: turn.model,
        body: passThroughBody(turn),
        direct: true,
      })
    : await pipeline.call(scope, { op: 'chat', model: turn.model, body: o.chat, direct: true });
  if (o.passThrough) {
    answer = asOurs(turn, r.response.json);
    turn = { ...turn, id: answer['id'] as string };
  } else answer = finishedResponse(turn, r.response.json, r.response.usage);
  await keepResponse(o.keeping, scope.tenant, turn, answer, o.now());
  return { answer, turn, model: r.model, reason: r.reason };
}

/**
 * A turn a journey answered (`model: "journey:<name>"`): its chat completion as the Response,
 * usage summed over the journey's calls, kept when `store` says so. The route and batch lines
 * share it.
 */
export async function answerJourneyTurn(
  keeping: ResponsesKeeping,
  tenant: string,
  turn: ResponsesTurn,
  completion: JsonObject,
  now: number,
): Promise<JsonObject> {
  const answer = finishedResponse(turn, completion, completionUsage(completion));
  await keepResponse(keeping, tenant, turn, answer, now);
  return answer;
}

/** The usage a chat completion reports, as a Response counts it. */
export function completionUsage(completion: JsonObject): ResponseUsage {
  const u = isJsonObject(completion['usage']) ? completion['usage'] : {};
  return {
    inputTokens: Number(u['prompt_tokens'] ?? 0),
    outputTokens: Number(u['completion_tokens'] ?? 0),
  };
}

/** The upstream's Response as the client asked for it: its own `store` and `previous_response_id` (the id always a string). */
export function asOurs(turn: ResponsesTurn, response: JsonObject): JsonObject {
  return extend(response, {
    id: typeof response['id'] === 'string' ? response['id'] : turn.id,
    store: turn.store,
    previous_response_id:
      typeof turn.body['previous_response_id'] === 'string'
        ? turn.body['previous_response_id']
        : null,
  });
}

/** The Response of a finished chat completion. */
export function finishedResponse(
  turn: ResponsesTurn,
  completion: JsonObject,
  usage: ResponseUsage | undefined,
): JsonObject {
  const o = chatOutcome(completion);
  return responseObject(
    extend(turn, {
      status: statusOf(o.finishReason),
      output: outputItems(o),
      usage,
      finishReason: o.finishReason,
    }),
  );
}

/** Keeps an answer for `GET /v1/responses/{id}` and follow-ups, when the turn is stored. */
export async function keepResponse(
  keeping: ResponsesKeeping,
  tenant: string,
  turn: ResponsesTurn,
  response: JsonObject,
  now: number,
): Promise<void> {
  const store = keeping.store;
  if (!turn.store || store === undefined) return;
  const record: StoredResponse = {
    id: turn.id,
    tenant,
    user: turn.user,
    createdAt: now,
    expiresAt: now + keeping.ttlS * 1000,
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

/** This tenant's stored response, or 404 (unknown, expired, purged, another tenant's, or no store). */
export async function loadResponse(
  store: ResponseStore | undefined,
  tenant: string,
  id: string,
  now: number,
  param?: string,
): Promise<StoredResponse> {
  let found: StoredResponse | undefined;
  try {
    found = await store?.get(tenant, id, now);
  } catch (err) {
    throw syError('SY_ERR_RESPONSE_STORE_FAILED', String(err).slice(0, 200), { cause: err });
  }
  if (found === undefined)
    throw syError('SY_ERR_RESPONSE_NOT_FOUND', JSON.stringify(id.slice(0, 200)), {
      ...(param === undefined ? {} : { param }),
    });
  return found;
}

function outputOf(response: JsonObject): JsonObject[] {
  const out = response['output'];
  return Array.isArray(out) ? out.filter(isJsonObject) : [];
}

/** The model's upstream speaks the Responses API (`responses: true` on an `openai` model): passed through. */
export function speaksResponses(
  model: { readonly backend: string; readonly responses?: boolean } | undefined,
): boolean {
  return model?.backend === 'openai' && model.responses === true;
}
