import { randomBytes } from 'node:crypto';
import type { JsonObject, JsonValue } from '../contracts/json.js';
import { syError } from '../core/errors.js';
import { isJsonObject } from '../core/safe-json.js';
import { extend } from '../core/objects.js';

/**
 * The OpenAI Responses API translated onto chat completions, both ways (#16 item 1), for
 * upstreams, journeys and in-process models that speak only chat. Pure functions: the route
 * validates, this module maps, the pipeline calls.
 *
 * Mapping (OpenAI API reference, "Responses" and "Chat Completions"):
 * - `instructions` → a leading `system` message (it is not carried to a follow-up response);
 * - message items → chat messages (`developer` becomes `system`, `input_text`/`output_text`
 *   parts become text, `input_image` an `image_url` part);
 * - `function_call` items → an assistant message's `tool_calls`; `function_call_output` → a
 *   `tool` message;
 * - function `tools` and `tool_choice` → their chat forms; `text.format` → `response_format`;
 * - `max_output_tokens` → `max_tokens`; `temperature`, `top_p`, `user`, `parallel_tool_calls` as is.
 */

/** A new id with OpenAI's prefix for its kind (`resp_`, `msg_`, `fc_`). */
export function newId(prefix: 'resp' | 'msg' | 'fc'): string {
  return `${prefix}_${randomBytes(16).toString('hex')}`;
}

function bad(detail: string, param: string): never {
  throw syError('SY_ERR_INVALID_REQUEST', detail, { param });
}

const ROLES = new Set(['user', 'assistant', 'system', 'developer']);
const REQUEST_KEYS = new Set([
  'model',
  'input',
  'instructions',
  'tools',
  'tool_choice',
  'text',
  'max_output_tokens',
  'temperature',
  'top_p',
  'stream',
  'store',
  'previous_response_id',
  'metadata',
  'user',
  'parallel_tool_calls',
  'truncation',
  'include',
  'reasoning',
  'service_tier',
  'safety_identifier',
  'prompt_cache_key',
  'stream_options',
  'background',
]);

/**
 * Checks a Responses request's fields against the reference: a bad one is a 400 naming it in
 * `param`. Returns the input as a list of items (a string input is one user message).
 */
export function validateResponsesRequest(body: JsonObject): JsonObject[] {
  for (const k of Object.keys(body))
    if (!REQUEST_KEYS.has(k)) bad(`unknown field "${k.slice(0, 100)}"`, k);
  if (typeof body['model'] !== 'string' || body['model'] === '')
    bad('"model" must be a non-empty string', 'model');
  const opt = (k: string, ok: (v: JsonValue) => boolean, what: string): void => {
    const v = body[k];
    if (v !== undefined && v !== null && !ok(v)) bad(`"${k}" must be ${what}`, k);
  };
  opt('instructions', (v) => typeof v === 'string', 'a string');
  opt(
    'max_output_tokens',
    (v) => typeof v === 'number' && Number.isInteger(v) && v >= 16,
    'an integer >= 16',
  );
  opt('temperature', (v) => typeof v === 'number' && v >= 0 && v <= 2, 'a number from 0 to 2');
  opt('top_p', (v) => typeof v === 'number' && v >= 0 && v <= 1, 'a number from 0 to 1');
  for (const k of ['stream', 'store', 'parallel_tool_calls', 'background'])
    opt(k, (v) => typeof v === 'boolean', 'a boolean');
  opt('background', (v) => v === false, 'false (background responses are not supported)');
  opt('user', (v) => typeof v === 'string', 'a string');
  opt('previous_response_id', (v) => typeof v === 'string' && v.length <= 200, 'a response id');
  opt('truncation', (v) => v === 'disabled' || v === 'auto', 'one of disabled, auto');
  opt(
    'metadata',
    (v) => isJsonObject(v) && Object.keys(v).length <= 16,
    'an object of up to 16 keys',
  );
  opt('include', (v) => Array.isArray(v), 'an array');
  const tools = body['tools'];
  if (tools !== undefined && tools !== null) {
    if (!Array.isArray(tools)) bad('"tools" must be an array', 'tools');
    tools.forEach((t, i) => {
      const p = `tools[${i}]`;
      if (!isJsonObject(t)) bad(`"${p}" must be an object`, p);
      if (t['type'] !== 'function')
        bad(
          `"${p}.type" ${JSON.stringify(t['type'])} is not supported; use "function"`,
          `${p}.type`,
        );
      if (typeof t['name'] !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(t['name']))
        bad(`"${p}.name" must be 1-64 letters, digits, _ or -`, `${p}.name`);
      if (
        t['parameters'] !== undefined &&
        t['parameters'] !== null &&
        !isJsonObject(t['parameters'])
      )
        bad(`"${p}.parameters" must be a JSON schema object`, `${p}.parameters`);
    });
  }
  const choice = body['tool_choice'];
  if (
    choice !== undefined &&
    !(typeof choice === 'string' && ['auto', 'none', 'required'].includes(choice)) &&
    !(isJsonObject(choice) && choice['type'] === 'function' && typeof choice['name'] === 'string')
  )
    bad(
      '"tool_choice" must be auto, none, required or {"type":"function","name":...}',
      'tool_choice',
    );
  const text = body['text'];
  if (text !== undefined && text !== null) {
    if (!isJsonObject(text)) bad('"text" must be an object', 'text');
    const f = text['format'];
    if (f !== undefined) {
      if (!isJsonObject(f)) bad('"text.format" must be an object', 'text.format');
      const type = f['type'];
      if (type === 'json_schema') {
        if (typeof f['name'] !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(f['name']))
          bad('"text.format.name" must be 1-64 letters, digits, _ or -', 'text.format.name');
        if (!isJsonObject(f['schema']))
          bad('"text.format.schema" must be an object', 'text.format.schema');
      } else if (type !== 'text' && type !== 'json_object')
        bad('"text.format.type" must be one of text, json_object, json_schema', 'text.format.type');
    }
  }
  return inputItems(body['input']);
}

function inputItems(input: JsonValue | undefined): JsonObject[] {
  if (typeof input === 'string') return [{ type: 'message', role: 'user', content: input }];
  if (!Array.isArray(input) || input.length === 0)
    bad('"input" must be a string or a non-empty array of items', 'input');
  return input.map((item, i) => {
    const p = `input[${i}]`;
    if (!isJsonObject(item)) bad(`"${p}" must be an object`, p);
    const type = item['type'] ?? 'message';
    if (type === 'message') {
      if (typeof item['role'] !== 'string' || !ROLES.has(item['role']))
        bad(`"${p}.role" must be one of user, assistant, system, developer`, `${p}.role`);
      const c = item['content'];
      if (typeof c !== 'string' && !Array.isArray(c))
        bad(`"${p}.content" must be a string or an array of parts`, `${p}.content`);
      if (Array.isArray(c))
        c.forEach((part, j) => {
          const q = `${p}.content[${j}]`;
          if (!isJsonObject(part)) bad(`"${q}" must be an object`, q);
          const t = part['type'];
          if (t === 'input_text' || t === 'output_text') {
            if (typeof part['text'] !== 'string') bad(`"${q}.text" must be a string`, `${q}.text`);
          } else if (t === 'input_image') {
            if (typeof part['image_url'] !== 'string')
              bad(`"${q}.image_url" must be a string (file_id images are not supported)`, q);
          } else if (t !== 'refusal')
            bad(`"${q}.type" must be input_text, output_text, input_image or refusal`, `${q}.type`);
        });
      return extend(item, { type: 'message' });
    }
    if (type === 'function_call') {
      for (const k of ['call_id', 'name', 'arguments'])
        if (typeof item[k] !== 'string') bad(`"${p}.${k}" must be a string`, `${p}.${k}`);
      return item;
    }
    if (type === 'function_call_output') {
      if (typeof item['call_id'] !== 'string')
        bad(`"${p}.call_id" must be a string`, `${p}.call_id`);
      if (typeof item['output'] !== 'string') bad(`"${p}.output" must be a string`, `${p}.output`);
      return item;
    }
    if (type === 'reasoning') return item; // a prior answer's reasoning: kept, not sent to chat
    return bad(`"${p}.type" ${JSON.stringify(type)} is not supported`, `${p}.type`);
  });
}

/** Gives every item an id (`msg_`, `fc_`), as the stored input items list them. */
export function withIds(items: readonly JsonObject[]): JsonObject[] {
  return items.map((item) => {
    if (typeof item['id'] === 'string') return item;
    const id = newId(item['type'] === 'message' ? 'msg' : 'fc');
    if (item['type'] !== 'message') return { id, ...item };
    const c = item['content'];
    const content: JsonValue[] =
      typeof c === 'string'
        ? [{ type: item['role'] === 'assistant' ? 'output_text' : 'input_text', text: c }]
        : (c as JsonValue[]);
    return { id, type: 'message', role: item['role'] ?? 'user', status: 'completed', content };
  });
}

function partsToChat(c: JsonValue | undefined): JsonValue {
  if (typeof c === 'string') return c;
  const parts = (c as JsonObject[]) ?? [];
  if (parts.every((p) => p['type'] !== 'input_image'))
    return parts
      .map((p) =>
        typeof p['text'] === 'string'
          ? p['text']
          : typeof p['refusal'] === 'string'
            ? p['refusal']
            : '',
      )
      .join('');
  return parts.map((p) =>
    p['type'] === 'input_image'
      ? {
          type: 'image_url',
          image_url: {
            url: p['image_url'] as string,
            ...(p['detail'] ? { detail: p['detail'] } : {}),
          },
        }
      : { type: 'text', text: (p['text'] as string | undefined) ?? '' },
  );
}

/** Responses items (the previous responses' context, then this input) as chat messages. */
export function itemsToMessages(
  instructions: string | undefined,
  items: readonly JsonObject[],
): JsonObject[] {
  const messages: JsonObject[] = [];
  if (instructions !== undefined && instructions !== '')
    messages.push({ role: 'system', content: instructions });
  for (const item of items) {
    const type = item['type'];
    if (type === 'message') {
      const role = item['role'] === 'developer' ? 'system' : (item['role'] as string);
      messages.push({ role, content: partsToChat(item['content']) });
    } else if (type === 'function_call') {
      const call = {
        id: item['call_id'] as string,
        type: 'function',
        function: { name: item['name'] as string, arguments: item['arguments'] as string },
      };
      const last = messages[messages.length - 1];
      // Consecutive calls (parallel tool calls) are one assistant turn.
      if (last?.['role'] === 'assistant' && Array.isArray(last['tool_calls']))
        last['tool_calls'].push(call);
      else if (last?.['role'] === 'assistant' && last['tool_calls'] === undefined)
        last['tool_calls'] = [call];
      else messages.push({ role: 'assistant', content: null, tool_calls: [call] });
    } else if (type === 'function_call_output') {
      messages.push({
        role: 'tool',
        tool_call_id: item['call_id'] as string,
        content: item['output'] as string,
      });
    }
  }
  return messages;
}

/** The chat completions request for a validated Responses request and its full context. */
export function toChatRequest(body: JsonObject, context: readonly JsonObject[]): JsonObject {
  const instructions = typeof body['instructions'] === 'string' ? body['instructions'] : undefined;
  const chat: JsonObject = {
    model: body['model']!,
    messages: itemsToMessages(instructions, context),
  };
  for (const k of ['temperature', 'top_p', 'user', 'parallel_tool_calls'] as const)
    if (body[k] !== undefined && body[k] !== null) chat[k] = body[k];
  if (typeof body['max_output_tokens'] === 'number') chat['max_tokens'] = body['max_output_tokens'];
  const tools = body['tools'];
  if (Array.isArray(tools) && tools.length > 0)
    chat['tools'] = (tools as JsonObject[]).map((t) => ({
      type: 'function',
      function: {
        name: t['name']!,
        ...(typeof t['description'] === 'string' ? { description: t['description'] } : {}),
        ...(isJsonObject(t['parameters']) ? { parameters: t['parameters'] } : {}),
        ...(typeof t['strict'] === 'boolean' ? { strict: t['strict'] } : {}),
      },
    }));
  const choice = body['tool_choice'];
  if (typeof choice === 'string') chat['tool_choice'] = choice;
  else if (isJsonObject(choice))
    chat['tool_choice'] = { type: 'function', function: { name: choice['name']! } };
  const format = isJsonObject(body['text']) ? body['text']['format'] : undefined;
  if (isJsonObject(format)) {
    if (format['type'] === 'json_object') chat['response_format'] = { type: 'json_object' };
    else if (format['type'] === 'json_schema')
      chat['response_format'] = {
        type: 'json_schema',
        json_schema: {
          name: format['name']!,
          schema: format['schema']!,
          ...(typeof format['description'] === 'string'
            ? { description: format['description'] }
            : {}),
          ...(typeof format['strict'] === 'boolean' ? { strict: format['strict'] } : {}),
        },
      };
  }
  return chat;
}

export interface ResponseUsage {
  readonly inputTokens: number;
  readonly outputTokens: number;
}

/** What the translated answer is made of: a message's text or refusal, and function calls. */
export interface ChatOutcome {
  readonly text: string | undefined;
  readonly refusal: string | undefined;
  readonly calls: readonly { id: string; name: string; arguments: string }[];
  readonly finishReason: string | null;
}

const str = (v: JsonValue | undefined): string => (typeof v === 'string' ? v : '');

/** The first choice of a chat.completion, read defensively (an upstream's answer). */
export function chatOutcome(completion: JsonObject): ChatOutcome {
  const choices = completion['choices'];
  const choice = Array.isArray(choices) && isJsonObject(choices[0]) ? choices[0] : {};
  const message = isJsonObject(choice['message']) ? choice['message'] : {};
  const calls: { id: string; name: string; arguments: string }[] = [];
  if (Array.isArray(message['tool_calls']))
    for (const c of message['tool_calls']) {
      if (!isJsonObject(c) || !isJsonObject(c['function'])) continue;
      calls.push({
        id: typeof c['id'] === 'string' ? c['id'] : newId('fc'),
        name: str(c['function']['name']),
        arguments: str(c['function']['arguments']),
      });
    }
  return {
    text: typeof message['content'] === 'string' ? message['content'] : undefined,
    refusal: typeof message['refusal'] === 'string' ? message['refusal'] : undefined,
    calls,
    finishReason: typeof choice['finish_reason'] === 'string' ? choice['finish_reason'] : null,
  };
}

/** The output items of a chat outcome: a message (text or refusal), then each function call. */
export function outputItems(o: ChatOutcome, messageId = newId('msg')): JsonObject[] {
  const out: JsonObject[] = [];
  if (o.refusal !== undefined)
    out.push({
      id: messageId,
      type: 'message',
      status: 'completed',
      role: 'assistant',
      content: [{ type: 'refusal', refusal: o.refusal }],
    });
  else if (o.text !== undefined && (o.text !== '' || o.calls.length === 0))
    out.push({
      id: messageId,
      type: 'message',
      status: 'completed',
      role: 'assistant',
      content: [outputText(o.text)],
    });
  for (const c of o.calls) out.push(functionCallItem(c.id, c.name, c.arguments, 'completed'));
  return out;
}

export function outputText(text: string): JsonObject {
  return { type: 'output_text', text, annotations: [], logprobs: [] };
}

export function functionCallItem(
  callId: string,
  name: string,
  args: string,
  status: 'in_progress' | 'completed',
  id = `fc_${callId.replace(/^call_/, '')}`,
): JsonObject {
  return { id, type: 'function_call', status, arguments: args, call_id: callId, name };
}

/** A Response object (`object: "response"`), as the API reference lists its fields. */
export function responseObject(o: {
  readonly id: string;
  readonly createdAt: number;
  readonly body: JsonObject;
  readonly model: string;
  readonly status: 'in_progress' | 'completed' | 'incomplete' | 'failed';
  readonly output: JsonObject[];
  readonly usage?: ResponseUsage | undefined;
  readonly finishReason?: string | null;
  readonly error?: JsonObject | null;
  readonly store: boolean;
}): JsonObject {
  const b = o.body;
  const incomplete =
    o.status === 'incomplete'
      ? { reason: o.finishReason === 'content_filter' ? 'content_filter' : 'max_output_tokens' }
      : null;
  const format =
    isJsonObject(b['text']) && isJsonObject(b['text']['format'])
      ? b['text']['format']
      : { type: 'text' };
  return {
    id: o.id,
    object: 'response',
    created_at: o.createdAt,
    status: o.status,
    background: false,
    error: o.error ?? null,
    incomplete_details: incomplete,
    instructions: typeof b['instructions'] === 'string' ? b['instructions'] : null,
    max_output_tokens: typeof b['max_output_tokens'] === 'number' ? b['max_output_tokens'] : null,
    metadata: isJsonObject(b['metadata']) ? b['metadata'] : {},
    model: o.model,
    output: o.output,
    parallel_tool_calls: b['parallel_tool_calls'] !== false,
    previous_response_id:
      typeof b['previous_response_id'] === 'string' ? b['previous_response_id'] : null,
    reasoning: { effort: null, summary: null },
    service_tier: 'default',
    store: o.store,
    temperature: typeof b['temperature'] === 'number' ? b['temperature'] : 1,
    text: { format },
    tool_choice: b['tool_choice'] ?? 'auto',
    tools: Array.isArray(b['tools']) ? b['tools'] : [],
    top_p: typeof b['top_p'] === 'number' ? b['top_p'] : 1,
    truncation: b['truncation'] === 'auto' ? 'auto' : 'disabled',
    usage:
      o.usage === undefined
        ? null
        : {
            input_tokens: o.usage.inputTokens,
            input_tokens_details: { cached_tokens: 0 },
            output_tokens: o.usage.outputTokens,
            output_tokens_details: { reasoning_tokens: 0 },
            total_tokens: o.usage.inputTokens + o.usage.outputTokens,
          },
    user: typeof b['user'] === 'string' ? b['user'] : null,
  };
}

/** A chat finish_reason as a Response status. */
export function statusOf(finishReason: string | null): 'completed' | 'incomplete' {
  return finishReason === 'length' || finishReason === 'content_filter'
    ? 'incomplete'
    : 'completed';
}
