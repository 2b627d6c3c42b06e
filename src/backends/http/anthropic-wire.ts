import type { Usage } from '../../contracts/backend.js';
import type { JsonObject, JsonValue } from '../../contracts/json.js';
import { syError, type SwitchyardError } from '../../core/errors.js';
import { isJsonObject } from '../../core/safe-json.js';

/**
 * The chat form every backend takes, as an Anthropic Messages request, and Anthropic's answers
 * (whole or streamed) back as chat completions (#16). Kept apart from the HTTP exchange so the
 * backend reads like its OpenAI sibling: exchange, status, body.
 */

/** A string field, or '' when absent or not a string. */
function s(v: JsonValue | undefined): string {
  return typeof v === 'string' ? v : '';
}

function invalid(detail: string, param: string): never {
  throw syError('SY_ERR_INVALID_REQUEST', detail, { param });
}

/** Chat message content (a string or parts) as Anthropic content blocks. */
function blocks(content: JsonValue | undefined, param: string): JsonObject[] {
  if (content === undefined || content === null) return [];
  if (typeof content === 'string') return content === '' ? [] : [{ type: 'text', text: content }];
  if (!Array.isArray(content)) return invalid('"content" must be a string or parts', param);
  // The Messages API refuses empty text blocks.
  return content.flatMap((p, i): JsonObject[] => {
    if (!isJsonObject(p)) invalid('each content part must be an object', `${param}[${i}]`);
    if (p['type'] === 'text')
      return s(p['text']) === '' ? [] : [{ type: 'text', text: s(p['text']) }];
    if (p['type'] === 'image_url') {
      const img = p['image_url'];
      const url = isJsonObject(img) && typeof img['url'] === 'string' ? img['url'] : '';
      const m = /^data:([^;,]+);base64,(.*)$/s.exec(url);
      return m === null
        ? [{ type: 'image', source: { type: 'url', url } }]
        : [{ type: 'image', source: { type: 'base64', media_type: m[1]!, data: m[2]! } }];
    }
    return invalid(
      `content parts of type ${JSON.stringify(p['type']).slice(0, 40)} cannot go to an Anthropic model`,
      `${param}[${i}].type`,
    );
  });
}

function text(content: JsonValue | undefined): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((p) => (isJsonObject(p) && typeof p['text'] === 'string' ? p['text'] : ''))
    .join('');
}

/** Appends a turn, merging it into the last one of the same role (Anthropic alternates turns). */
function push(out: JsonObject[], role: 'user' | 'assistant', content: JsonObject[]): void {
  if (content.length === 0) return;
  const last = out[out.length - 1];
  if (last !== undefined && last['role'] === role)
    (last['content'] as JsonObject[]).push(...content);
  else out.push({ role, content });
}

function toolUse(call: JsonValue, param: string): JsonObject {
  if (!isJsonObject(call) || !isJsonObject(call['function']))
    return invalid('each tool call needs a "function"', param);
  const fn = call['function'];
  let input: unknown = {};
  const args = fn['arguments'];
  if (typeof args === 'string' && args !== '') {
    try {
      input = JSON.parse(args);
    } catch {
      input = undefined;
    }
  }
  if (!isJsonObject(input))
    invalid('tool call arguments must be a JSON object', `${param}.function.arguments`);
  return {
    type: 'tool_use',
    id: s(call['id']),
    name: s(fn['name']),
    input,
  };
}

function toolChoice(
  v: JsonValue | undefined,
  parallel: JsonValue | undefined,
): JsonObject | undefined {
  const noParallel = parallel === false ? { disable_parallel_tool_use: true } : {};
  if (v === undefined || v === 'auto')
    return parallel === false ? { type: 'auto', ...noParallel } : undefined;
  if (v === 'none') return { type: 'none' };
  if (v === 'required') return { type: 'any', ...noParallel };
  if (isJsonObject(v) && isJsonObject(v['function']) && typeof v['function']['name'] === 'string')
    return { type: 'tool', name: v['function']['name'], ...noParallel };
  return invalid('"tool_choice" cannot be given to an Anthropic model', 'tool_choice');
}

export interface AnthropicRequestOptions {
  readonly upstreamModel: string;
  /** max_tokens when the chat request sets none (Anthropic requires it). */
  readonly defaultMaxTokens: number;
  readonly stream: boolean;
}

/** A chat request as an Anthropic Messages request. */
export function chatToAnthropic(body: JsonObject, o: AnthropicRequestOptions): JsonObject {
  const n = body['n'];
  if (typeof n === 'number' && n > 1)
    invalid('an Anthropic model answers one choice: "n" must be 1', 'n');
  const system: string[] = [];
  const messages: JsonObject[] = [];
  const list = Array.isArray(body['messages']) ? body['messages'] : [];
  list.forEach((m, i) => {
    const at = `messages[${i}]`;
    if (!isJsonObject(m)) return;
    switch (m['role']) {
      case 'system':
      case 'developer':
        system.push(text(m['content']));
        return;
      case 'user':
        push(messages, 'user', blocks(m['content'], `${at}.content`));
        return;
      case 'assistant': {
        const calls = Array.isArray(m['tool_calls']) ? m['tool_calls'] : [];
        push(messages, 'assistant', [
          ...blocks(m['content'], `${at}.content`),
          ...calls.map((c, j) => toolUse(c, `${at}.tool_calls[${j}]`)),
        ]);
        return;
      }
      case 'tool':
        push(messages, 'user', [
          {
            type: 'tool_result',
            tool_use_id: s(m['tool_call_id']),
            content: text(m['content']),
          },
        ]);
        return;
      default:
        invalid('an Anthropic model takes system, user, assistant and tool messages', `${at}.role`);
    }
  });
  const max = body['max_completion_tokens'] ?? body['max_tokens'];
  const out: JsonObject = {
    model: o.upstreamModel,
    max_tokens: typeof max === 'number' ? max : o.defaultMaxTokens,
    messages,
  };
  if (system.length > 0) out['system'] = system.join('\n\n');
  for (const k of ['temperature', 'top_p', 'top_k'] as const)
    if (typeof body[k] === 'number') out[k] = body[k];
  const stop = body['stop'];
  if (typeof stop === 'string') out['stop_sequences'] = [stop];
  else if (Array.isArray(stop) && stop.length > 0) out['stop_sequences'] = stop;
  const tools = body['tools'];
  if (Array.isArray(tools) && tools.length > 0)
    out['tools'] = tools.map((t, i) => {
      const fn = isJsonObject(t) ? t['function'] : undefined;
      if (!isJsonObject(t) || t['type'] !== 'function' || !isJsonObject(fn))
        return invalid('an Anthropic model takes function tools only', `tools[${i}]`);
      return {
        name: s(fn['name']),
        ...(typeof fn['description'] === 'string' ? { description: fn['description'] } : {}),
        input_schema: isJsonObject(fn['parameters']) ? fn['parameters'] : { type: 'object' },
      };
    });
  const choice = toolChoice(body['tool_choice'], body['parallel_tool_calls']);
  if (choice !== undefined && out['tools'] !== undefined) out['tool_choice'] = choice;
  const format = body['response_format'];
  if (isJsonObject(format) && format['type'] !== 'text') {
    const js = format['json_schema'];
    if (format['type'] !== 'json_schema' || !isJsonObject(js) || !isJsonObject(js['schema']))
      invalid('an Anthropic model takes a json_schema response_format only', 'response_format');
    out['output_config'] = { format: { type: 'json_schema', schema: js['schema'] } };
  }
  if (typeof body['user'] === 'string') out['metadata'] = { user_id: body['user'] };
  if (o.stream) out['stream'] = true;
  return out;
}

/** Anthropic `stop_reason` → chat `finish_reason`. */
export function finishReason(stop: JsonValue | undefined): string {
  switch (stop) {
    case 'max_tokens':
    case 'model_context_window_exceeded':
      return 'length';
    case 'tool_use':
      return 'tool_calls';
    case 'refusal':
      return 'content_filter';
    default:
      return 'stop';
  }
}

/** Anthropic usage as Usage: cache reads and writes are input tokens too. */
export function anthropicUsage(u: JsonValue | undefined): Usage | undefined {
  if (!isJsonObject(u) || typeof u['input_tokens'] !== 'number') return undefined;
  const n = (k: string): number => (typeof u[k] === 'number' ? u[k] : 0);
  return {
    inputTokens:
      n('input_tokens') + n('cache_read_input_tokens') + n('cache_creation_input_tokens'),
    outputTokens: n('output_tokens'),
  };
}

function chatUsage(usage: Usage, cached: number): JsonObject {
  return {
    prompt_tokens: usage.inputTokens,
    completion_tokens: usage.outputTokens,
    total_tokens: usage.inputTokens + usage.outputTokens,
    prompt_tokens_details: { cached_tokens: cached },
  };
}

function cachedOf(u: JsonValue | undefined): number {
  return isJsonObject(u) && typeof u['cache_read_input_tokens'] === 'number'
    ? u['cache_read_input_tokens']
    : 0;
}

/** An Anthropic `message` as a chat.completion (the stop sequence in `stop_reason`, as vLLM). */
export function messageToChat(msg: JsonObject, name: string, now: number): JsonObject {
  if (msg['type'] !== 'message' || !Array.isArray(msg['content']))
    throw syError('SY_ERR_UPSTREAM_BAD_RESPONSE', `${name}: the answer is not a message`);
  let content = '';
  const calls: JsonObject[] = [];
  for (const b of msg['content']) {
    if (!isJsonObject(b)) continue;
    if (b['type'] === 'text' && typeof b['text'] === 'string') content += b['text'];
    if (b['type'] === 'tool_use')
      calls.push({
        id: s(b['id']),
        type: 'function',
        function: { name: s(b['name']), arguments: JSON.stringify(b['input'] ?? {}) },
      });
  }
  const usage = anthropicUsage(msg['usage']) ?? { inputTokens: 0, outputTokens: 0 };
  const message: JsonObject = {
    role: 'assistant',
    content: content === '' && calls.length > 0 ? null : content,
    refusal: null,
  };
  if (calls.length > 0) message['tool_calls'] = calls;
  return {
    id: s(msg['id']),
    object: 'chat.completion',
    created: Math.floor(now / 1000),
    model: s(msg['model']),
    choices: [
      {
        index: 0,
        message,
        logprobs: null,
        finish_reason: finishReason(msg['stop_reason']),
        stop_reason: typeof msg['stop_sequence'] === 'string' ? msg['stop_sequence'] : null,
      },
    ],
    usage: chatUsage(usage, cachedOf(msg['usage'])),
  };
}

/** Anthropic's error `type` in a stream's `error` event, as a registry error. */
function streamError(data: JsonObject, name: string): SwitchyardError {
  const e = isJsonObject(data['error']) ? data['error'] : {};
  const type = typeof e['type'] === 'string' ? e['type'] : 'api_error';
  const detail = `${name} sent an error event: ${type}${typeof e['message'] === 'string' ? `: ${e['message']}` : ''}`;
  if (type === 'rate_limit_error') return syError('SY_ERR_UPSTREAM_RATE_LIMITED', detail);
  if (type === 'invalid_request_error') return syError('SY_ERR_UPSTREAM_REJECTED', detail);
  return syError('SY_ERR_UPSTREAM_ERROR', detail);
}

/**
 * Anthropic stream events as chat.completion.chunk events: message_start gives the role chunk,
 * text_delta content, tool_use blocks and their input_json_delta the tool_calls deltas,
 * message_delta the finish chunk, message_stop the usage chunk (when the client asked) and
 * `[DONE]`. An `error` event throws; so does a body that ends before message_stop.
 */
export class ChatChunks {
  usage: Usage | undefined;
  /** message_stop came: the answer is whole. */
  done = false;
  /** The chat finish reason of message_delta's stop_reason, once it came. */
  readonly finishReasons: string[] = [];
  private id = '';
  private model = '';
  private cached = 0;
  private readonly toolIndex = new Map<number, number>();

  constructor(
    private readonly name: string,
    private readonly created: number,
    private readonly includeUsage: boolean,
  ) {}

  /** The chat SSE text for one Anthropic event's data. */
  push(data: string): string {
    let ev: unknown;
    try {
      ev = JSON.parse(data);
    } catch {
      throw syError('SY_ERR_UPSTREAM_BAD_RESPONSE', `${this.name}: a stream event is not JSON`);
    }
    if (!isJsonObject(ev)) return '';
    switch (ev['type']) {
      case 'message_start': {
        const m = isJsonObject(ev['message']) ? ev['message'] : {};
        this.id = s(m['id']);
        this.model = s(m['model']);
        this.usage = anthropicUsage(m['usage']) ?? this.usage;
        this.cached = cachedOf(m['usage']);
        return this.chunk({ role: 'assistant', content: '' });
      }
      case 'content_block_start': {
        const b = isJsonObject(ev['content_block']) ? ev['content_block'] : {};
        if (b['type'] === 'text' && typeof b['text'] === 'string' && b['text'] !== '')
          return this.chunk({ content: b['text'] });
        if (b['type'] !== 'tool_use') return '';
        const call = this.toolIndex.size;
        this.toolIndex.set(Number(ev['index']), call);
        return this.chunk({
          tool_calls: [
            {
              index: call,
              id: s(b['id']),
              type: 'function',
              function: { name: s(b['name']), arguments: '' },
            },
          ],
        });
      }
      case 'content_block_delta': {
        const d = isJsonObject(ev['delta']) ? ev['delta'] : {};
        if (d['type'] === 'text_delta' && typeof d['text'] === 'string')
          return this.chunk({ content: d['text'] });
        const call = this.toolIndex.get(Number(ev['index']));
        if (d['type'] === 'input_json_delta' && call !== undefined)
          return this.chunk({
            tool_calls: [{ index: call, function: { arguments: s(d['partial_json']) } }],
          });
        return '';
      }
      case 'message_delta': {
        const d = isJsonObject(ev['delta']) ? ev['delta'] : {};
        const u = isJsonObject(ev['usage']) ? ev['usage'] : {};
        const output = typeof u['output_tokens'] === 'number' ? u['output_tokens'] : 0;
        const input = anthropicUsage(u)?.inputTokens ?? this.usage?.inputTokens ?? 0;
        if (typeof u['cache_read_input_tokens'] === 'number')
          this.cached = u['cache_read_input_tokens'];
        this.usage = { inputTokens: input, outputTokens: output };
        const reason = finishReason(d['stop_reason']);
        this.finishReasons.push(reason);
        return this.chunk({}, reason, {
          stop_reason: typeof d['stop_sequence'] === 'string' ? d['stop_sequence'] : null,
        });
      }
      case 'message_stop': {
        this.done = true;
        const usage =
          this.includeUsage && this.usage !== undefined
            ? this.data({ choices: [], usage: chatUsage(this.usage, this.cached) })
            : '';
        return `${usage}data: [DONE]\n\n`;
      }
      case 'error':
        throw streamError(ev, this.name);
      default:
        return ''; // ping, content_block_stop, thinking and what Anthropic adds later
    }
  }

  private data(o: JsonObject): string {
    return `data: ${JSON.stringify({
      id: this.id,
      object: 'chat.completion.chunk',
      created: this.created,
      model: this.model,
      ...o,
    })}\n\n`;
  }

  private chunk(delta: JsonObject, finish: string | null = null, extra: JsonObject = {}): string {
    return this.data({
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish, ...extra }],
    });
  }
}
