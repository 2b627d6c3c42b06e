import type { Behaviour } from './upstream.js';

interface ChatMessage {
  role: string;
  content: string | null | { type: string; text?: string }[];
  tool_calls?: { id: string; function: { name: string; arguments: string } }[];
  tool_call_id?: string;
}

interface ChatBody {
  messages: ChatMessage[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  tools?: { type: string; function: { name: string } }[];
  response_format?: { type: string; json_schema?: { name: string } };
  max_tokens?: number;
}

const text = (c: ChatMessage['content']): string =>
  typeof c === 'string' ? c : Array.isArray(c) ? c.map((p) => p.text ?? '').join('') : '';

/**
 * A small, deterministic chat model behind a real OpenAI chat completions endpoint (plain and
 * streamed, usage included), for tests of what the gateway makes of its answers:
 * - with `tools` and no tool result yet, it calls the first tool with `{"city":"Paris"}`;
 * - after a `tool` message, it answers `tool said: <result>`;
 * - with a `json_schema` response format, it answers `{"city":"Paris","temp_c":21}`;
 * - otherwise `seen <n>: <every user text, joined by " | ">` (so a test sees the context);
 * - `max_tokens` below 20 cuts the answer with finish_reason `length`.
 * Usage: 1 prompt token per message, 1 completion token per word.
 */
export const chatModel: Behaviour = (_req, res, call) => {
  const body = JSON.parse(call.body) as ChatBody;
  const last = body.messages[body.messages.length - 1];
  let content: string | null = null;
  let calls: { id: string; name: string; arguments: string }[] = [];
  if (body.tools !== undefined && body.tools.length > 0 && last?.role !== 'tool') {
    calls = [
      { id: 'call_abc123', name: body.tools[0]!.function.name, arguments: '{"city":"Paris"}' },
    ];
  } else if (last?.role === 'tool') content = `tool said: ${text(last.content)}`;
  else if (body.response_format?.type === 'json_schema') content = '{"city":"Paris","temp_c":21}';
  else
    content = `seen ${body.messages.length}: ${body.messages
      .filter((m) => m.role === 'user')
      .map((m) => text(m.content))
      .join(' | ')}`;
  let finish = calls.length > 0 ? 'tool_calls' : 'stop';
  if (content !== null && body.max_tokens !== undefined && body.max_tokens < 20) {
    content = content.split(' ').slice(0, 2).join(' ');
    finish = 'length';
  }
  const usage = {
    prompt_tokens: body.messages.length,
    completion_tokens: content === null ? 5 : content.split(' ').length,
  };
  const total = { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens };
  const head = { id: 'chatcmpl-up', created: 1, model: 'up-model' };
  if (body.stream !== true) {
    const message = {
      role: 'assistant',
      content,
      refusal: null,
      ...(calls.length > 0
        ? {
            tool_calls: calls.map((c) => ({
              id: c.id,
              type: 'function',
              function: { name: c.name, arguments: c.arguments },
            })),
          }
        : {}),
    };
    const raw = JSON.stringify({
      ...head,
      object: 'chat.completion',
      choices: [{ index: 0, message, logprobs: null, finish_reason: finish }],
      usage: total,
    });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(raw);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  const chunk = (delta: object, finishReason: string | null = null): string =>
    `data: ${JSON.stringify({ ...head, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finishReason }] })}\n\n`;
  res.write(chunk({ role: 'assistant', content: '' }));
  if (content !== null)
    content.split(/(?= )/).forEach((piece) => res.write(chunk({ content: piece })));
  for (const [index, c] of calls.entries()) {
    res.write(
      chunk({
        tool_calls: [
          { index, id: c.id, type: 'function', function: { name: c.name, arguments: '' } },
        ],
      }),
    );
    for (const piece of [c.arguments.slice(0, 5), c.arguments.slice(5)])
      res.write(chunk({ tool_calls: [{ index, function: { arguments: piece } }] }));
  }
  res.write(chunk({}, finish));
  if (body.stream_options?.include_usage === true)
    res.write(
      `data: ${JSON.stringify({ ...head, object: 'chat.completion.chunk', choices: [], usage: total })}\n\n`,
    );
  res.end('data: [DONE]\n\n');
};
