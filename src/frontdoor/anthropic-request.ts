import type { JsonObject, JsonValue } from '../contracts/json.js';
import { syError } from '../core/errors.js';
import { isJsonObject } from '../core/safe-json.js';

/**
 * An Anthropic Messages request (https://docs.anthropic.com/en/api/messages) checked and turned
 * into the chat form every backend takes (#16). What the chat form cannot carry is refused with
 * a 400 naming the field, never dropped silently; fields Switchyard does not translate
 * (`thinking`, `service_tier`, `container`, `mcp_servers`, `cache_control` marks) are ignored,
 * as docs/api.md says.
 */

function invalid(detail: string, param: string): never {
  throw syError('SY_ERR_INVALID_REQUEST', detail, { param });
}

function str(v: JsonValue | undefined, param: string): string {
  if (typeof v !== 'string') invalid(`"${param}" must be a string`, param);
  return v;
}

function num(v: JsonValue | undefined, param: string, min: number, max: number): number {
  if (typeof v !== 'number' || v < min || v > max)
    invalid(`"${param}" must be a number from ${min} to ${max}`, param);
  return v;
}

/** The text of a block list (`system`, a tool result's content): text blocks only. */
function blocksText(v: JsonValue | undefined, param: string): string {
  if (typeof v === 'string') return v;
  if (!Array.isArray(v)) invalid(`"${param}" must be a string or an array of text blocks`, param);
  return v
    .map((b, i) => {
      if (!isJsonObject(b) || b['type'] !== 'text')
        invalid('only text blocks are allowed here', `${param}[${i}]`);
      return str(b['text'], `${param}[${i}].text`);
    })
    .join('\n');
}

/** An image block's source as an OpenAI `image_url` part. */
function imagePart(b: JsonObject, param: string): JsonObject {
  const src = b['source'];
  if (!isJsonObject(src)) invalid('an image block needs a "source"', `${param}.source`);
  if (src['type'] === 'base64') {
    const media = str(src['media_type'], `${param}.source.media_type`);
    const data = str(src['data'], `${param}.source.data`);
    return { type: 'image_url', image_url: { url: `data:${media};base64,${data}` } };
  }
  if (src['type'] === 'url')
    return { type: 'image_url', image_url: { url: str(src['url'], `${param}.source.url`) } };
  return invalid('an image source must be of type base64 or url', `${param}.source.type`);
}

/** One Anthropic message as chat messages (a user turn's tool results become `tool` messages). */
function chatMessages(m: JsonValue, param: string): JsonObject[] {
  if (!isJsonObject(m)) invalid('each message must be an object', param);
  const role = m['role'];
  // A system turn inside the conversation (the 2026 Messages API's SystemMessageParam).
  if (role === 'system') return [{ role, content: blocksText(m['content'], `${param}.content`) }];
  if (role !== 'user' && role !== 'assistant')
    invalid('"role" must be user, assistant or system', `${param}.role`);
  const content = m['content'];
  if (typeof content === 'string') return [{ role, content }];
  if (!Array.isArray(content))
    invalid('"content" must be a string or an array of content blocks', `${param}.content`);
  const out: JsonObject[] = [];
  const parts: JsonObject[] = [];
  const calls: JsonObject[] = [];
  content.forEach((b, i) => {
    const at = `${param}.content[${i}]`;
    if (!isJsonObject(b) || typeof b['type'] !== 'string')
      invalid('each content block must be an object with a "type"', at);
    switch (b['type']) {
      case 'text':
        parts.push({ type: 'text', text: str(b['text'], `${at}.text`) });
        return;
      case 'image':
        if (role !== 'user') invalid('only user messages may carry images', at);
        parts.push(imagePart(b, at));
        return;
      case 'tool_use':
        if (role !== 'assistant') invalid('tool_use blocks belong to assistant messages', at);
        if (!isJsonObject(b['input'])) invalid('"input" must be an object', `${at}.input`);
        calls.push({
          id: str(b['id'], `${at}.id`),
          type: 'function',
          function: { name: str(b['name'], `${at}.name`), arguments: JSON.stringify(b['input']) },
        });
        return;
      case 'tool_result': {
        if (role !== 'user') invalid('tool_result blocks belong to user messages', at);
        const text = b['content'] === undefined ? '' : blocksText(b['content'], `${at}.content`);
        // Chat has no error flag on a tool result: the text says so, as Anthropic's models read it.
        out.push({
          role: 'tool',
          tool_call_id: str(b['tool_use_id'], `${at}.tool_use_id`),
          content: b['is_error'] === true ? `Error: ${text}` : text,
        });
        return;
      }
      case 'thinking':
      case 'redacted_thinking':
        return; // Reasoning is the model's own; no chat upstream takes it back.
      default:
        invalid(`content blocks of type ${b['type'].slice(0, 40)} are not supported`, at);
    }
  });
  if (role === 'assistant') {
    const text = parts.map((p) => p['text'] as string).join('');
    if (text !== '' || calls.length === 0)
      out.push({ role, content: text, ...(calls.length > 0 ? { tool_calls: calls } : {}) });
    else out.push({ role, content: null, tool_calls: calls });
    return out;
  }
  if (parts.length > 0) {
    const onlyText = parts.length === 1 && parts[0]!['type'] === 'text';
    out.push({ role, content: onlyText ? (parts[0]!['text'] as string) : parts });
  }
  return out;
}

function chatTools(v: JsonValue): JsonObject[] {
  if (!Array.isArray(v)) invalid('"tools" must be an array', 'tools');
  return v.map((t, i) => {
    const at = `tools[${i}]`;
    if (!isJsonObject(t)) invalid('each tool must be an object', at);
    if (t['type'] !== undefined && t['type'] !== 'custom')
      invalid(
        `server tools (${JSON.stringify(t['type']).slice(0, 40)}) are not supported: give custom tools with an input_schema`,
        `${at}.type`,
      );
    const schema = t['input_schema'];
    if (!isJsonObject(schema))
      invalid('a tool needs an "input_schema" object', `${at}.input_schema`);
    const fn: JsonObject = { name: str(t['name'], `${at}.name`), parameters: schema };
    if (t['description'] !== undefined)
      fn['description'] = str(t['description'], `${at}.description`);
    return { type: 'function', function: fn };
  });
}

/** Anthropic `tool_choice` as the chat `tool_choice` and `parallel_tool_calls`. */
function chatToolChoice(v: JsonValue): JsonObject {
  if (!isJsonObject(v)) invalid('"tool_choice" must be an object', 'tool_choice');
  const parallel = v['disable_parallel_tool_use'] === true ? { parallel_tool_calls: false } : {};
  switch (v['type']) {
    case 'auto':
      return { tool_choice: 'auto', ...parallel };
    case 'any':
      return { tool_choice: 'required', ...parallel };
    case 'none':
      return { tool_choice: 'none' };
    case 'tool':
      return {
        tool_choice: { type: 'function', function: { name: str(v['name'], 'tool_choice.name') } },
        ...parallel,
      };
    default:
      return invalid('"tool_choice.type" must be auto, any, tool or none', 'tool_choice.type');
  }
}

/** Checks an Anthropic Messages request and returns it in the chat form, ready for the pipeline. */
export function messagesToChat(body: JsonObject): JsonObject {
  const model = body['model'];
  if (typeof model !== 'string' || model === '')
    invalid('"model" must be a non-empty string', 'model');
  const max = body['max_tokens'];
  if (typeof max !== 'number' || !Number.isInteger(max) || max < 1)
    invalid('"max_tokens" is required: an integer >= 1', 'max_tokens');
  const list = body['messages'];
  if (!Array.isArray(list) || list.length === 0)
    invalid('"messages" must be a non-empty array', 'messages');
  const messages: JsonObject[] = [];
  const system = body['system'];
  if (system !== undefined)
    messages.push({ role: 'system', content: blocksText(system, 'system') });
  list.forEach((m, i) => messages.push(...chatMessages(m, `messages[${i}]`)));
  const chat: JsonObject = { model, messages, max_tokens: max };
  if (body['temperature'] !== undefined)
    chat['temperature'] = num(body['temperature'], 'temperature', 0, 1);
  if (body['top_p'] !== undefined) chat['top_p'] = num(body['top_p'], 'top_p', 0, 1);
  if (body['top_k'] !== undefined) {
    const k = body['top_k'];
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 0)
      invalid('"top_k" must be an integer >= 0', 'top_k');
    chat['top_k'] = k;
  }
  const stops = body['stop_sequences'];
  if (stops !== undefined) {
    if (!Array.isArray(stops) || !stops.every((s) => typeof s === 'string'))
      invalid('"stop_sequences" must be an array of strings', 'stop_sequences');
    if (stops.length > 0) chat['stop'] = stops;
  }
  if (body['tools'] !== undefined) {
    const tools = chatTools(body['tools']);
    if (tools.length > 0) chat['tools'] = tools;
  }
  if (body['tool_choice'] !== undefined) Object.assign(chat, chatToolChoice(body['tool_choice']));
  if (chat['tools'] === undefined) delete chat['parallel_tool_calls'];
  const output = body['output_config'];
  if (output !== undefined && output !== null) {
    if (!isJsonObject(output)) invalid('"output_config" must be an object', 'output_config');
    const format = output['format'];
    if (format !== undefined && format !== null) {
      if (
        !isJsonObject(format) ||
        format['type'] !== 'json_schema' ||
        !isJsonObject(format['schema'])
      )
        invalid(
          '"output_config.format" must be {"type": "json_schema", "schema": {...}}',
          'output_config.format',
        );
      // Structured output: the chat form's strict JSON schema.
      chat['response_format'] = {
        type: 'json_schema',
        json_schema: { name: 'output', schema: format['schema'], strict: true },
      };
    }
  }
  const meta = body['metadata'];
  if (meta !== undefined) {
    if (!isJsonObject(meta)) invalid('"metadata" must be an object', 'metadata');
    if (meta['user_id'] !== undefined && meta['user_id'] !== null)
      chat['user'] = str(meta['user_id'], 'metadata.user_id');
  }
  const stream = body['stream'];
  if (stream !== undefined && typeof stream !== 'boolean')
    invalid('"stream" must be a boolean', 'stream');
  if (stream === true) {
    chat['stream'] = true;
    chat['stream_options'] = { include_usage: true };
  }
  return chat;
}
