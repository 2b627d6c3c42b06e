import type { JsonObject, JsonValue } from '../contracts/json.js';
import { syError } from '../core/errors.js';
import { isJsonObject } from '../core/safe-json.js';
import { eventData } from '../backends/http/sse.js';

/**
 * A chat-form answer (a chat.completion, or a stream of chat.completion.chunk events) as an
 * Anthropic Messages answer (#16): content blocks, stop reasons and usage. A stop sequence is
 * known when the chat form names it in the choice's `stop_reason` (vLLM's field, which the
 * `anthropic` backend fills too); without it a `stop` finish is `end_turn`.
 */

/** Chat `finish_reason` → Anthropic `stop_reason`. */
export function stopReason(
  finish: JsonValue | undefined,
  matched: JsonValue | undefined,
): { stop_reason: string; stop_sequence: string | null } {
  switch (finish) {
    case 'length':
      return { stop_reason: 'max_tokens', stop_sequence: null };
    case 'tool_calls':
    case 'function_call':
      return { stop_reason: 'tool_use', stop_sequence: null };
    case 'content_filter':
      return { stop_reason: 'refusal', stop_sequence: null };
    default:
      return typeof matched === 'string'
        ? { stop_reason: 'stop_sequence', stop_sequence: matched }
        : { stop_reason: 'end_turn', stop_sequence: null };
  }
}

/** Chat usage → Anthropic usage (cached prompt tokens are read from the cache, not input). */
export function messageUsage(usage: JsonValue | undefined): JsonObject {
  const u = isJsonObject(usage) ? usage : {};
  const prompt = typeof u['prompt_tokens'] === 'number' ? u['prompt_tokens'] : 0;
  const details = u['prompt_tokens_details'];
  const cached =
    isJsonObject(details) && typeof details['cached_tokens'] === 'number'
      ? details['cached_tokens']
      : 0;
  return {
    input_tokens: Math.max(0, prompt - cached),
    output_tokens: typeof u['completion_tokens'] === 'number' ? u['completion_tokens'] : 0,
    cache_creation_input_tokens: null,
    cache_read_input_tokens: cached > 0 ? cached : null,
  };
}

export function messageId(id: JsonValue | undefined, requestId: string): string {
  if (typeof id === 'string' && id.startsWith('msg_')) return id;
  return `msg_${typeof id === 'string' && id !== '' ? id : requestId}`;
}

function toolInput(args: JsonValue | undefined, name: string): JsonObject {
  if (args === undefined || args === '') return {};
  if (isJsonObject(args)) return args;
  try {
    const v = JSON.parse(typeof args === 'string' ? args : '') as unknown;
    if (isJsonObject(v)) return v;
  } catch {
    // Falls through: a tool call whose arguments are not a JSON object cannot be a tool_use.
  }
  throw syError(
    'SY_ERR_UPSTREAM_BAD_RESPONSE',
    `the model called ${name} with arguments that are not a JSON object`,
  );
}

/** A chat.completion as an Anthropic `message`. */
export function chatToMessage(json: JsonObject, model: string, requestId: string): JsonObject {
  const choices = json['choices'];
  const choice = Array.isArray(choices) ? choices[0] : undefined;
  if (!isJsonObject(choice) || !isJsonObject(choice['message']))
    throw syError('SY_ERR_UPSTREAM_BAD_RESPONSE', 'the answer has no choice');
  const msg = choice['message'];
  const content: JsonObject[] = [];
  if (typeof msg['content'] === 'string' && msg['content'] !== '')
    content.push({ type: 'text', text: msg['content'] });
  const calls = msg['tool_calls'];
  if (Array.isArray(calls))
    for (const c of calls) {
      if (!isJsonObject(c) || !isJsonObject(c['function'])) continue;
      const fname = c['function']['name'];
      const name = typeof fname === 'string' ? fname : '';
      content.push({
        type: 'tool_use',
        id: typeof c['id'] === 'string' ? c['id'] : `toolu_${content.length}`,
        name,
        input: toolInput(c['function']['arguments'], name),
      });
    }
  return {
    id: messageId(json['id'], requestId),
    type: 'message',
    role: 'assistant',
    model: typeof json['model'] === 'string' ? json['model'] : model,
    content,
    ...stopReason(choice['finish_reason'], choice['stop_reason']),
    usage: messageUsage(json['usage']),
  };
}

/** One Anthropic SSE event. */
export function sseEvent(type: string, data: JsonObject): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
}

/**
 * Turns a chat.completion.chunk stream into the Anthropic event sequence: message_start, ping,
 * then per block content_block_start / content_block_delta (text_delta, input_json_delta) /
 * content_block_stop, then message_delta (stop reason, usage) and message_stop. Blocks are
 * sequential, as Anthropic's are: a tool call opens a new block and closes the one before.
 */
export class MessageEvents {
  private started = false;
  private open: { index: number; kind: 'text' | 'tool'; call?: number } | undefined;
  private next = 0;
  private readonly toolBlocks = new Map<number, number>();
  private finish: JsonValue | undefined;
  private matched: JsonValue | undefined;
  private usage: JsonValue | undefined;

  constructor(
    private readonly model: string,
    private readonly requestId: string,
    /** Input tokens expected before the upstream counts them (message_start must say a number). */
    private readonly inputEstimate: number,
  ) {}

  /** The Anthropic events for a block of whole chat SSE events. */
  push(block: Buffer): string {
    let out = '';
    for (const data of eventData(block)) {
      if (data === '[DONE]') continue;
      let chunk: unknown;
      try {
        chunk = JSON.parse(data);
      } catch {
        throw syError('SY_ERR_UPSTREAM_BAD_RESPONSE', 'a stream event is not JSON');
      }
      if (!isJsonObject(chunk)) continue;
      if (!this.started) out += this.start(chunk);
      if (chunk['usage'] !== undefined && chunk['usage'] !== null) this.usage = chunk['usage'];
      const choices = chunk['choices'];
      const choice = Array.isArray(choices) ? choices[0] : undefined;
      if (!isJsonObject(choice)) continue;
      const delta = isJsonObject(choice['delta']) ? choice['delta'] : {};
      if (typeof delta['content'] === 'string' && delta['content'] !== '')
        out += this.text(delta['content']);
      if (Array.isArray(delta['tool_calls']))
        for (const tc of delta['tool_calls']) if (isJsonObject(tc)) out += this.tool(tc);
      if (typeof choice['finish_reason'] === 'string') {
        this.finish = choice['finish_reason'];
        this.matched = choice['stop_reason'];
      }
    }
    return out;
  }

  /** The closing events, once the chat stream ended whole. */
  end(): string {
    let out = this.started ? '' : this.start({});
    out += this.close();
    const usage = messageUsage(this.usage);
    out += sseEvent('message_delta', {
      delta: stopReason(this.finish, this.matched),
      usage: {
        output_tokens: usage['output_tokens']!,
        ...(this.usage === undefined ? {} : { input_tokens: usage['input_tokens']! }),
        ...(usage['cache_read_input_tokens'] === null
          ? {}
          : { cache_read_input_tokens: usage['cache_read_input_tokens']! }),
      },
    });
    return out + sseEvent('message_stop', {});
  }

  private start(chunk: JsonObject): string {
    this.started = true;
    const message: JsonObject = {
      id: messageId(chunk['id'], this.requestId),
      type: 'message',
      role: 'assistant',
      model: typeof chunk['model'] === 'string' ? chunk['model'] : this.model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: {
        input_tokens: this.inputEstimate,
        output_tokens: 0,
        cache_creation_input_tokens: null,
        cache_read_input_tokens: null,
      },
    };
    return sseEvent('message_start', { message }) + sseEvent('ping', {});
  }

  private close(): string {
    if (this.open === undefined) return '';
    const index = this.open.index;
    this.open = undefined;
    return sseEvent('content_block_stop', { index });
  }

  private text(text: string): string {
    let out = '';
    if (this.open?.kind !== 'text') {
      out += this.close();
      this.open = { index: this.next++, kind: 'text' };
      out += sseEvent('content_block_start', {
        index: this.open.index,
        content_block: { type: 'text', text: '' },
      });
    }
    return (
      out +
      sseEvent('content_block_delta', {
        index: this.open.index,
        delta: { type: 'text_delta', text },
      })
    );
  }

  private tool(tc: JsonObject): string {
    let out = '';
    const call = typeof tc['index'] === 'number' ? tc['index'] : 0;
    const fn = isJsonObject(tc['function']) ? tc['function'] : {};
    let index = this.toolBlocks.get(call);
    if (index === undefined) {
      out += this.close();
      index = this.next++;
      this.toolBlocks.set(call, index);
      this.open = { index, kind: 'tool', call };
      out += sseEvent('content_block_start', {
        index,
        content_block: {
          type: 'tool_use',
          id: typeof tc['id'] === 'string' ? tc['id'] : `toolu_${this.requestId}_${call}`,
          name: typeof fn['name'] === 'string' ? fn['name'] : '',
          input: {},
        },
      });
    }
    const args = fn['arguments'];
    if (typeof args === 'string' && args !== '')
      out += sseEvent('content_block_delta', {
        index,
        delta: { type: 'input_json_delta', partial_json: args },
      });
    return out;
  }
}
