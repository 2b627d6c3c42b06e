import type { Behaviour } from './upstream.js';

interface Item {
  type?: string;
  role?: string;
  content?: string | { type: string; text?: string }[];
}

const text = (i: Item): string =>
  typeof i.content === 'string'
    ? i.content
    : Array.isArray(i.content)
      ? i.content.map((p) => p.text ?? '').join('')
      : '';

/**
 * A small model behind a real OpenAI Responses API endpoint (`POST /v1/responses`, plain and
 * streamed with the typed events), for pass-through tests. It answers
 * `items <n>: <user texts joined by " | ">`; usage: 1 input token per item, 1 output per word.
 */
export const responsesModel: Behaviour = (_req, res, call) => {
  const body = JSON.parse(call.body) as { input: string | Item[]; stream?: boolean; model: string };
  const items: Item[] =
    typeof body.input === 'string' ? [{ role: 'user', content: body.input }] : body.input;
  const answer = `items ${items.length}: ${items
    .filter((i) => i.role === 'user')
    .map(text)
    .join(' | ')}`;
  const usage = {
    input_tokens: items.length,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: answer.split(' ').length,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: items.length + answer.split(' ').length,
  };
  const id = `resp_up${call.at.toFixed(0)}`;
  const message = {
    id: 'msg_up',
    type: 'message',
    status: 'completed',
    role: 'assistant',
    content: [{ type: 'output_text', text: answer, annotations: [] }],
  };
  const response = (status: string, output: unknown[], u: unknown) => ({
    id,
    object: 'response',
    created_at: 1,
    status,
    error: null,
    incomplete_details: null,
    model: body.model,
    output,
    usage: u,
    store: false,
  });
  if (body.stream !== true) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(response('completed', [message], usage)));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  let seq = 0;
  const ev = (type: string, fields: object): void => {
    res.write(
      `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...fields })}\n\n`,
    );
  };
  ev('response.created', { response: response('in_progress', [], null) });
  ev('response.in_progress', { response: response('in_progress', [], null) });
  ev('response.output_item.added', {
    output_index: 0,
    item: { ...message, status: 'in_progress', content: [] },
  });
  ev('response.content_part.added', {
    item_id: 'msg_up',
    output_index: 0,
    content_index: 0,
    part: { type: 'output_text', text: '', annotations: [] },
  });
  for (const piece of answer.split(/(?= )/))
    ev('response.output_text.delta', {
      item_id: 'msg_up',
      output_index: 0,
      content_index: 0,
      delta: piece,
    });
  ev('response.output_text.done', {
    item_id: 'msg_up',
    output_index: 0,
    content_index: 0,
    text: answer,
  });
  ev('response.content_part.done', {
    item_id: 'msg_up',
    output_index: 0,
    content_index: 0,
    part: message.content[0],
  });
  ev('response.output_item.done', { output_index: 0, item: message });
  ev('response.completed', { response: response('completed', [message], usage) });
  res.end();
};
