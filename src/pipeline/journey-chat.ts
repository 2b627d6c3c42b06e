import type { AdmissionController } from '../admission/admission-controller.js';
import type { Estimate } from '../admission/quotas.js';
import type { JsonObject, JsonValue } from '../contracts/json.js';
import { estimateTokens } from '../core/cost.js';
import { syError } from '../core/errors.js';
import { events, publish } from '../core/events.js';
import { isJsonObject } from '../core/safe-json.js';
import type { CompiledJourney } from '../orchestrator/compile.js';
import type { JourneyOutcome, JourneyRoute, JourneyRunner } from '../orchestrator/runner.js';
import type { ModelCatalog } from './journey-invoker.js';
import type { CallScope } from './model-pipeline.js';
import { extend } from '../core/objects.js';

/** A journey asked for as a chat model (#16 item 8): `journey:<name>`. */
export const JOURNEY_MODEL_PREFIX = 'journey:';

/**
 * What running a journey needs of the current runtime. The front door's routes and the batch
 * runner pass their runtime, so a journey runs the same way whoever asked for it.
 */
export interface JourneyHost {
  readonly journeys?:
    | {
        readonly compiled: ReadonlyMap<string, CompiledJourney>;
        readonly runner: JourneyRunner;
      }
    | undefined;
  readonly catalog: ModelCatalog;
  readonly keys: { mayUse(tenant: string, model: string): boolean };
  readonly admission?: AdmissionController | undefined;
}

/** What a journey's model calls used, summed over every call its stages made. */
export interface JourneyUsed {
  readonly inputTokens: number;
  readonly outputTokens: number;
}

/** A journey's outcome, with what its calls used and the degraded decisions it took. */
export type JourneyRun = JourneyOutcome & {
  readonly used: JourneyUsed;
  readonly degraded: readonly string[];
};

/** The decisions that make a journey's answer degraded: logged as such, and in the header. */
const DEGRADED_DECISIONS = new Set(['fallback', 'downgrade', 'stale_served', 'stale_features']);

/**
 * The journey a tenant asked for by name, checked before any quota is taken: it exists (404),
 * the tenant may call `journey:<name>` (403; then `permitted` hears of it: the request is the
 * journey's from here, in its record), and the mode has not switched it off (503).
 */
export function journeyFor(
  host: JourneyHost,
  tenant: string,
  name: string,
  permitted?: (model: string) => void,
): CompiledJourney {
  const journey = host.journeys?.compiled.get(name);
  const shown = JSON.stringify(name.slice(0, 200));
  const model = `${JOURNEY_MODEL_PREFIX}${name}`;
  if (journey === undefined) throw syError('SY_ERR_JOURNEY_NOT_FOUND', shown);
  if (!host.keys.mayUse(tenant, model)) throw syError('SY_ERR_JOURNEY_FORBIDDEN', shown);
  permitted?.(model);
  if (host.admission?.switches().journeys_disabled.includes(name) === true)
    throw syError('SY_ERR_SHED', `journey ${name} is off in the current mode`, { retryAfterS: 1 });
  return journey;
}

/** What a journey request reserves when its scope opens: its input's tokens. */
export function journeyEstimate(input: JsonObject): Estimate {
  return { tokens: estimateTokens(JSON.stringify(input)), spend: 0 };
}

/**
 * Runs a journey in an open scope: under its class, deadline and signal, every model call its
 * stages make goes through the pipeline bound to it, and the quota ticket settles to what those
 * calls used.
 */
export async function runJourneyIn(
  host: JourneyHost,
  journey: CompiledJourney,
  scope: CallScope,
  input: JsonObject,
  attributes: JsonObject,
): Promise<JourneyRun> {
  const outcome = await host.journeys!.runner.run(journey, {
    requestId: scope.requestId,
    tenant: scope.tenant,
    trafficClass: scope.trafficClass,
    input,
    attributes,
    signal: scope.signal,
    deadlineAt: scope.deadlineAt,
    models: host.catalog.invoker(scope),
    ...(scope.span === undefined ? {} : { span: scope.span }),
    cacheTtlScale: host.admission?.switches().cache_ttl_scale ?? 1,
  });
  const degraded = outcome.route.decisions.filter((d) => DEGRADED_DECISIONS.has(d));
  // Stale features degrade the answer the way an unreachable parent does (#17): counted alike.
  if (degraded.includes('stale_features'))
    publish(events.degradedAnswer, {
      model: `${JOURNEY_MODEL_PREFIX}${journey.name}`,
      reason: 'stale_features',
    });
  const { inputTokens, outputTokens } = scope.used;
  return extend(outcome, { used: { inputTokens, outputTokens }, degraded });
}

/** A journey's route as JSON: in the answer's body, and in the request's record. */
export function routeJson(route: JourneyRoute): JsonObject {
  return JSON.parse(JSON.stringify(route)) as JsonObject;
}

/** A chat request to `journey:<name>`, checked and turned into the journey's input. */
export interface JourneyChat {
  /** `journey:<name>`. */
  readonly model: string;
  readonly journey: CompiledJourney;
  readonly input: JsonObject;
  readonly attributes: JsonObject;
  readonly estimate: Estimate;
}

/**
 * A chat completions request whose model is `journey:<name>` (the chat route, a Responses turn,
 * a batch line): the last user message is the journey's `input.text` (the messages are
 * `input.messages`, `max_tokens` and `temperature` pass, `user` is `attr.user`). The journey is
 * checked here (`journeyFor`), before any quota is taken.
 */
export function openJourneyChat(
  host: JourneyHost,
  tenant: string,
  body: JsonObject,
  permitted?: (model: string) => void,
): JourneyChat {
  const model = body['model'] as string;
  const journey = journeyFor(host, tenant, model.slice(JOURNEY_MODEL_PREFIX.length), permitted);
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
  return { model, journey, input, attributes, estimate: journeyEstimate(input) };
}

/**
 * A journey's answer as a chat.completion with every field OpenAI's schema requires (#16 item 9):
 * a chat model's own completion (its choices made whole), or the output as text; `usage` is what
 * the journey's model calls used, summed, and `route` the journey's route.
 */
export function journeyChatCompletion(
  requestId: string,
  model: string,
  output: JsonValue,
  used: JourneyUsed,
  route: JourneyRoute,
): JsonObject {
  const completion = toCompletion(requestId, model, output, used);
  completion['route'] = routeJson(route);
  return completion;
}

function toCompletion(
  requestId: string,
  model: string,
  output: JsonValue,
  used: JourneyUsed,
): JsonObject {
  const usage = {
    prompt_tokens: used.inputTokens,
    completion_tokens: used.outputTokens,
    total_tokens: used.inputTokens + used.outputTokens,
  };
  const base = {
    id: `chatcmpl-${requestId}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
  };
  if (isJsonObject(output) && isJsonObject(output['completion'])) {
    const c = output['completion'];
    if (c['object'] === 'chat.completion' && Array.isArray(c['choices']))
      return extend(extend(base, c), {
        model,
        choices: c['choices'].map((choice, index) => wholeChoice(choice, index)),
        usage,
      });
  }
  let content: string;
  if (typeof output === 'string') content = output;
  else if (isJsonObject(output) && typeof output['text'] === 'string') content = output['text'];
  else if (isJsonObject(output) && typeof output['answer'] === 'string') content = output['answer'];
  else content = JSON.stringify(output);
  return extend(base, {
    model,
    choices: [wholeChoice({ message: { role: 'assistant', content }, finish_reason: 'stop' }, 0)],
    usage,
  });
}

/** The finish reasons OpenAI's schema allows; anything else a journey model said is `stop`. */
const FINISH_REASONS = new Set(['stop', 'length', 'tool_calls', 'content_filter', 'function_call']);

export function finishReason(choice: JsonObject): string {
  const f = choice['finish_reason'];
  return typeof f === 'string' && FINISH_REASONS.has(f) ? f : 'stop';
}

/** A choice with the fields the schema requires: index, message (role, content, refusal), logprobs, finish_reason. */
function wholeChoice(choice: JsonValue, index: number): JsonObject {
  const c = isJsonObject(choice) ? choice : {};
  const m = isJsonObject(c['message']) ? c['message'] : {};
  return extend(c, {
    index: typeof c['index'] === 'number' ? c['index'] : index,
    message: extend(m, {
      role: 'assistant',
      content: typeof m['content'] === 'string' ? m['content'] : null,
      refusal: typeof m['refusal'] === 'string' ? m['refusal'] : null,
    }),
    logprobs: c['logprobs'] ?? null,
    finish_reason: finishReason(c),
  });
}

function contentText(content: JsonValue | undefined): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content))
    return content
      .map((p) => (isJsonObject(p) && typeof p['text'] === 'string' ? p['text'] : ''))
      .join('');
  return '';
}
