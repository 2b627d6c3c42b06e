import type { ServerResponse } from 'node:http';
import type { Behaviour } from './upstream.js';

/**
 * An upstream that speaks the Anthropic Messages protocol (#16), for the `anthropic` backend's
 * tests: `POST /v1/messages`, checked like the real API checks it (x-api-key, anthropic-version,
 * max_tokens required, user and assistant turns alternating, every tool_result answering a
 * tool_use of the turn before), answered whole or as the real SSE event sequence.
 *
 * What it says: `echo: <last user text>`; with tools offered (tool_choice not `none`) a tool_use
 * of the first tool with `{"city":"Paris"}`; after a tool result `tool said: <result>`. A stop
 * sequence in the answer cuts it (stop_reason `stop_sequence`); max_tokens below 5 cuts it with
 * `max_tokens`. Usage: input tokens are the words of the turns, the system prompt's words are
 * read from the cache; 5 output tokens. Model `overloaded` answers 529; a prompt containing
 * FAIL_MID_STREAM streams a little, then an `error` event.
 */
export const ANTHROPIC_KEY = 'sk-ant-test-upstream-key';

interface Block {
  type: string;
  text?: string;
  id?: string;
  name?: string;
  input?: unknown;
  tool_use_id?: string;
  content?: unknown;
}
interface Turn {
  role: string;
  content: string | Block[];
}
interface MessagesBody {
  model?: unknown;
  max_tokens?: unknown;
  system?: unknown;
  messages?: Turn[];
  tools?: { name: string; input_schema?: unknown }[];
  tool_choice?: { type: string };
  stop_sequences?: string[];
  stream?: boolean;
}

function error(res: ServerResponse, status: number, type: string, message: string): void {
  const raw = JSON.stringify({ type: 'error', error: { type, message }, request_id: 'req_up' });
  res.writeHead(status, { 'content-type': 'application/json', 'request-id': 'req_up' });
  res.end(raw);
}

const words = (s: string): number => (s.trim() === '' ? 0 : s.trim().split(/\s+/).length);
const textOf = (c: unknown): string =>
  typeof c === 'string'
    ? c
    : Array.isArray(c)
      ? (c as Block[]).map((b) => (b.type === 'text' ? (b.text ?? '') : '')).join(' ')
      : '';

/** Why the conversation is not one the Messages API accepts, or undefined. */
function problem(body: MessagesBody): string | undefined {
  if (typeof body.model !== 'string') return 'model: Field required';
  if (typeof body.max_tokens !== 'number') return 'max_tokens: Field required';
  const turns = body.messages ?? [];
  if (turns.length === 0) return 'messages: at least one message is required';
  let prev = '';
  let lastToolUses = new Set<string>();
  for (const [i, t] of turns.entries()) {
    if (t.role !== 'user' && t.role !== 'assistant') return `messages.${i}.role: invalid`;
    if (t.role === prev) return `messages: roles must alternate between "user" and "assistant"`;
    prev = t.role;
    const blocks = typeof t.content === 'string' ? [] : t.content;
    for (const b of blocks) {
      if (b.type === 'tool_result' && !lastToolUses.has(b.tool_use_id ?? ''))
        return `messages.${i}: tool_result ${b.tool_use_id} has no tool_use in the turn before`;
    }
    lastToolUses = new Set(blocks.filter((b) => b.type === 'tool_use').map((b) => b.id ?? ''));
  }
  if (turns[0]!.role !== 'user') return 'messages: the first message must use the "user" role';
  return undefined;
}

export function anthropicMessages(opts: { key?: string } = {}): Behaviour {
  const key = opts.key ?? ANTHROPIC_KEY;
  return async (req, res, call) => {
    if (req.method !== 'POST' || !call.path.endsWith('/v1/messages'))
      return error(res, 404, 'not_found_error', `no route ${call.path}`);
    if (req.headers['x-api-key'] !== key)
      return error(res, 401, 'authentication_error', 'invalid x-api-key');
    if (typeof req.headers['anthropic-version'] !== 'string')
      return error(res, 400, 'invalid_request_error', 'anthropic-version: header is required');
    const body = JSON.parse(call.body) as MessagesBody;
    const bad = problem(body);
    if (bad !== undefined) return error(res, 400, 'invalid_request_error', bad);
    if (body.model === 'overloaded') return error(res, 529, 'overloaded_error', 'Overloaded');
    const turns = body.messages!;
    const last = turns[turns.length - 1]!;
    const blocks = typeof last.content === 'string' ? [] : last.content;
    const result = blocks.find((b) => b.type === 'tool_result');
    const tool = body.tools?.[0]?.name;
    const useTool = result === undefined && tool !== undefined && body.tool_choice?.type !== 'none';
    let text =
      result !== undefined
        ? `tool said: ${textOf(result.content)}`
        : `echo: ${textOf(last.content)}`;
    let stop = useTool ? 'tool_use' : 'end_turn';
    let sequence: string | null = null;
    for (const s of body.stop_sequences ?? []) {
      const at = text.indexOf(s);
      if (at >= 0) {
        text = text.slice(0, at);
        stop = 'stop_sequence';
        sequence = s;
      }
    }
    if (!useTool && (body.max_tokens as number) < 5) {
      text = text.slice(0, 4);
      stop = 'max_tokens';
    }
    const system = textOf(body.system);
    const usage = {
      input_tokens: turns.reduce((n, t) => n + words(textOf(t.content)), 0),
      output_tokens: 5,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: words(system),
    };
    const toolUse = { type: 'tool_use', id: 'toolu_01', name: tool, input: { city: 'Paris' } };
    const content = useTool ? [toolUse] : [{ type: 'text', text }];
    const message = {
      id: 'msg_01upstream',
      type: 'message',
      role: 'assistant',
      model: `${body.model as string}-20260101`,
      content,
      stop_reason: stop,
      stop_sequence: sequence,
      usage,
    };
    if (body.stream !== true) {
      const raw = JSON.stringify(message);
      res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_up' });
      res.end(raw);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
    const send = async (type: string, data: object): Promise<void> => {
      res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
      await new Promise((r) => setTimeout(r, 2));
    };
    await send('message_start', {
      message: {
        ...message,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { ...usage, output_tokens: 1 },
      },
    });
    await send('ping', {});
    if (useTool) {
      await send('content_block_start', { index: 0, content_block: { ...toolUse, input: {} } });
      for (const part of ['{"city":', ' "Paris"}'])
        await send('content_block_delta', {
          index: 0,
          delta: { type: 'input_json_delta', partial_json: part },
        });
      await send('content_block_stop', { index: 0 });
    } else {
      await send('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
      for (const w of text.match(/\S+\s*/g) ?? []) {
        await send('content_block_delta', { index: 0, delta: { type: 'text_delta', text: w } });
        if (text.includes('FAIL_MID_STREAM')) {
          await send('error', { error: { type: 'overloaded_error', message: 'Overloaded' } });
          res.end();
          return;
        }
      }
      await send('content_block_stop', { index: 0 });
    }
    await send('message_delta', {
      delta: { stop_reason: stop, stop_sequence: sequence },
      usage: { output_tokens: 5 },
    });
    await send('message_stop', {});
    res.end();
  };
}
