import type { Behaviour } from './upstream.js';

/**
 * An OpenAI chat upstream with a little behaviour of its own, for translation tests (#16): it
 * answers `echo: <last user text>`; with tools offered (and tool_choice not `none`) it calls the
 * first tool with `{"city":"Paris"}`; after a tool result it answers `tool said: <result>`. A
 * stop sequence found in the answer cuts it there (`stop_reason` names it, as vLLM does);
 * `max_tokens` below 5 cuts the answer with `length`. Streams when asked, usage included.
 */
export const chatEcho: Behaviour = async (_req, res, call) => {
  const body = JSON.parse(call.body) as {
    messages: { role: string; content: unknown }[];
    tools?: { function: { name: string } }[];
    tool_choice?: unknown;
    stop?: string[];
    max_tokens?: number;
    stream?: boolean;
    stream_options?: { include_usage?: boolean };
  };
  const last = body.messages[body.messages.length - 1]!;
  const text = (c: unknown): string =>
    typeof c === 'string'
      ? c
      : Array.isArray(c)
        ? (c as { text?: string }[]).map((p) => p.text ?? '[image]').join(' ')
        : '';
  const tool = body.tools?.[0]?.function.name;
  const callTool = last.role === 'user' && tool !== undefined && body.tool_choice !== 'none';
  let content =
    last.role === 'tool' ? `tool said: ${text(last.content)}` : `echo: ${text(last.content)}`;
  let finish = callTool ? 'tool_calls' : 'stop';
  let stopReason: string | null = null;
  for (const s of body.stop ?? []) {
    const at = content.indexOf(s);
    if (at >= 0) {
      content = content.slice(0, at);
      stopReason = s;
    }
  }
  if (!callTool && (body.max_tokens ?? 100) < 5) {
    content = content.slice(0, 4);
    finish = 'length';
  }
  const prompt = body.messages.reduce((n, m) => n + text(m.content).split(/\s+/).length, 0);
  const usage = { prompt_tokens: prompt, completion_tokens: 5, total_tokens: prompt + 5 };
  const toolCall = {
    id: 'call_1',
    type: 'function',
    function: { name: tool, arguments: '{"city":"Paris"}' },
  };
  if (body.stream !== true) {
    const raw = JSON.stringify({
      id: 'chatcmpl-echo',
      object: 'chat.completion',
      created: 1,
      model: 'echo-1',
      choices: [
        {
          index: 0,
          message: callTool
            ? { role: 'assistant', content: null, tool_calls: [toolCall] }
            : { role: 'assistant', content },
          finish_reason: finish,
          stop_reason: stopReason,
        },
      ],
      usage,
    });
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(raw),
    });
    res.end(raw);
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  const chunk = (delta: object, finishReason: string | null = null, extra: object = {}): string =>
    `data: ${JSON.stringify({ id: 'chatcmpl-echo', object: 'chat.completion.chunk', created: 1, model: 'echo-1', choices: [{ index: 0, delta, finish_reason: finishReason, ...extra }] })}\n\n`;
  res.write(chunk({ role: 'assistant', content: '' }));
  if (callTool) {
    res.write(
      chunk({ tool_calls: [{ index: 0, ...toolCall, function: { name: tool, arguments: '' } }] }),
    );
    for (const part of ['{"city":', '"Paris"}'])
      res.write(chunk({ tool_calls: [{ index: 0, function: { arguments: part } }] }));
  } else {
    for (const word of content.match(/\S+\s*/g) ?? []) {
      res.write(chunk({ content: word }));
      await new Promise((r) => setTimeout(r, 2));
    }
  }
  res.write(chunk({}, finish, { stop_reason: stopReason }));
  if (body.stream_options?.include_usage === true)
    res.write(
      `data: ${JSON.stringify({ id: 'chatcmpl-echo', object: 'chat.completion.chunk', created: 1, model: 'echo-1', choices: [], usage })}\n\n`,
    );
  res.end('data: [DONE]\n\n');
};
