import type { JsonObject } from '../contracts/json.js';
import { isJsonObject } from '../core/safe-json.js';
import { eventData } from '../backends/http/sse.js';
import {
  functionCallItem,
  newId,
  outputText,
  responseObject,
  statusOf,
  type ResponseUsage,
} from '../pipeline/responses-chat.js';
import { extend } from '../core/objects.js';

interface Base {
  readonly id: string;
  readonly createdAt: number;
  readonly body: JsonObject;
  readonly model: string;
  readonly store: boolean;
}

interface CallState {
  readonly outputIndex: number;
  readonly callId: string;
  readonly itemId: string;
  name: string;
  args: string;
}

/**
 * Turns a chat completions stream (SSE `chat.completion.chunk` events, as upstreams send them)
 * into the typed events of a streamed Response, in the order the API reference documents and the
 * SDKs accumulate: `response.created`, `response.in_progress`, then per output item
 * `output_item.added` → (`content_part.added` → `output_text.delta`… → `output_text.done` →
 * `content_part.done` | `function_call_arguments.delta`… → `function_call_arguments.done`) →
 * `output_item.done`, and `response.completed` (or `response.incomplete`) with the whole
 * Response and its usage. Every event carries a `sequence_number`.
 */
export class ResponsesStreamTranslator {
  private seq = 0;
  private readonly output: JsonObject[] = [];
  private text: { outputIndex: number; itemId: string; value: string } | undefined;
  private readonly calls = new Map<number, CallState>();
  private finishReason: string | null = null;
  private usage: ResponseUsage | undefined;

  constructor(private readonly base: Base) {}

  private event(type: string, fields: JsonObject): string {
    const data = { type, sequence_number: this.seq++, ...fields };
    return `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;
  }

  private snapshot(
    status: 'in_progress' | 'completed' | 'incomplete' | 'failed',
    error?: JsonObject,
  ): JsonObject {
    return responseObject(
      extend(this.base, {
        status,
        output: status === 'in_progress' ? [] : this.output,
        usage: status === 'in_progress' ? undefined : this.usage,
        finishReason: this.finishReason,
        error: error ?? null,
      }),
    );
  }

  /** The two opening events. */
  start(): string {
    const r = this.snapshot('in_progress');
    return (
      this.event('response.created', { response: r }) +
      this.event('response.in_progress', { response: r })
    );
  }

  /** Events for one block of chat SSE events. */
  push(block: Buffer): string {
    let out = '';
    for (const data of eventData(block)) {
      if (data === '[DONE]') continue;
      let chunk: unknown;
      try {
        chunk = JSON.parse(data);
      } catch {
        continue; // not JSON: nothing a Response could carry
      }
      if (!isJsonObject(chunk)) continue;
      const u = chunk['usage'];
      if (isJsonObject(u) && typeof u['prompt_tokens'] === 'number')
        this.usage = {
          inputTokens: u['prompt_tokens'],
          outputTokens: typeof u['completion_tokens'] === 'number' ? u['completion_tokens'] : 0,
        };
      const choices = chunk['choices'];
      const choice = Array.isArray(choices)
        ? choices.find((c) => isJsonObject(c) && (c['index'] ?? 0) === 0)
        : undefined;
      if (!isJsonObject(choice)) continue;
      const delta = isJsonObject(choice['delta']) ? choice['delta'] : {};
      if (typeof delta['content'] === 'string' && delta['content'] !== '')
        out += this.textDelta(delta['content']);
      if (Array.isArray(delta['tool_calls']))
        for (const tc of delta['tool_calls']) if (isJsonObject(tc)) out += this.callDelta(tc);
      if (typeof choice['finish_reason'] === 'string') this.finishReason = choice['finish_reason'];
    }
    return out;
  }

  private textDelta(delta: string): string {
    let out = '';
    if (this.text === undefined) {
      const itemId = newId('msg');
      this.text = { outputIndex: this.output.length, itemId, value: '' };
      const item = {
        id: itemId,
        type: 'message',
        status: 'in_progress',
        role: 'assistant',
        content: [],
      };
      this.output.push(item);
      out += this.event('response.output_item.added', {
        output_index: this.text.outputIndex,
        item,
      });
      out += this.event('response.content_part.added', {
        item_id: itemId,
        output_index: this.text.outputIndex,
        content_index: 0,
        part: outputText(''),
      });
    }
    this.text.value += delta;
    return (
      out +
      this.event('response.output_text.delta', {
        item_id: this.text.itemId,
        output_index: this.text.outputIndex,
        content_index: 0,
        delta,
        logprobs: [],
      })
    );
  }

  private callDelta(tc: JsonObject): string {
    let out = '';
    const index = typeof tc['index'] === 'number' ? tc['index'] : 0;
    const fn = isJsonObject(tc['function']) ? tc['function'] : {};
    let call = this.calls.get(index);
    if (call === undefined) {
      const callId = typeof tc['id'] === 'string' ? tc['id'] : `call_${newId('fc').slice(3)}`;
      const item = functionCallItem(
        callId,
        typeof fn['name'] === 'string' ? fn['name'] : '',
        '',
        'in_progress',
      );
      call = {
        outputIndex: this.output.length,
        callId,
        itemId: item['id'] as string,
        name: item['name'] as string,
        args: '',
      };
      this.calls.set(index, call);
      this.output.push(item);
      out += this.event('response.output_item.added', { output_index: call.outputIndex, item });
    } else if (typeof fn['name'] === 'string' && call.name === '') call.name = fn['name'];
    if (typeof fn['arguments'] === 'string' && fn['arguments'] !== '') {
      call.args += fn['arguments'];
      out += this.event('response.function_call_arguments.delta', {
        item_id: call.itemId,
        output_index: call.outputIndex,
        delta: fn['arguments'],
      });
    }
    return out;
  }

  /** The closing events, once the chat stream ended whole; `usage` when the pipeline has it. */
  finish(usage: ResponseUsage | undefined): { events: string; response: JsonObject } {
    if (usage !== undefined) this.usage = usage;
    let out = '';
    if (this.text !== undefined) {
      const { outputIndex, itemId, value } = this.text;
      const part = outputText(value);
      out += this.event('response.output_text.done', {
        item_id: itemId,
        output_index: outputIndex,
        content_index: 0,
        text: value,
        logprobs: [],
      });
      out += this.event('response.content_part.done', {
        item_id: itemId,
        output_index: outputIndex,
        content_index: 0,
        part,
      });
      const item = {
        id: itemId,
        type: 'message',
        status: 'completed',
        role: 'assistant',
        content: [part],
      };
      this.output[outputIndex] = item;
      out += this.event('response.output_item.done', { output_index: outputIndex, item });
    }
    for (const call of this.calls.values()) {
      out += this.event('response.function_call_arguments.done', {
        item_id: call.itemId,
        output_index: call.outputIndex,
        name: call.name,
        arguments: call.args,
      });
      const item = functionCallItem(call.callId, call.name, call.args, 'completed', call.itemId);
      this.output[call.outputIndex] = item;
      out += this.event('response.output_item.done', { output_index: call.outputIndex, item });
    }
    const status = statusOf(this.finishReason);
    const response = this.snapshot(status);
    out += this.event(status === 'completed' ? 'response.completed' : 'response.incomplete', {
      response,
    });
    return { events: out, response };
  }

  /**
   * A stream that failed after its first byte: `response.failed` with the error in the Response,
   * then an `error` event. The error event also carries the error as `error`, the field the
   * OpenAI SDKs raise an APIError on, so a client never takes a cut answer for a whole one.
   */
  fail(error: JsonObject): string {
    const inner = isJsonObject(error['error']) ? error['error'] : error;
    const response = this.snapshot('failed', {
      code: inner['code'] ?? 'server_error',
      message: inner['message'] ?? '',
    });
    return (
      this.event('response.failed', { response }) +
      this.event('error', {
        code: inner['code'] ?? null,
        message: inner['message'] ?? '',
        param: inner['param'] ?? null,
        error: inner,
      })
    );
  }
}
