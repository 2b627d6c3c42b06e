import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The bench upstream: an OpenAI-compatible chat endpoint that answers at once with precomputed
 * bytes, so that what a benchmark in front of it measures is the proxy, not the model. A bench
 * tool, not a feature. It still speaks the real protocol: it parses the request, answers
 * `chat.completion` JSON, or for `stream: true` a chunked `text/event-stream` of
 * `chat.completion.chunk` events with a usage chunk when `stream_options.include_usage` is true,
 * ended by `data: [DONE]`. The whole stream goes out in one write (an instant model).
 *
 * Prints `READY <url>` on stdout once listening.
 */
const MODEL = 'bench-upstream';
/** `DELAY_MS`: a model that takes this long per answer (the 200-connection admission case). */
const DELAY_MS = Number(process.env['DELAY_MS'] ?? 0);
const CREATED = Math.floor(Date.now() / 1000);
const ID = 'chatcmpl-bench-0001';
const USAGE = { prompt_tokens: 14, completion_tokens: 9, total_tokens: 23 };
const PIECES = ['Hello!', ' This is', ' a benchmark', ' answer.'];

const COMPLETION = Buffer.from(
  JSON.stringify({
    id: ID,
    object: 'chat.completion',
    created: CREATED,
    model: MODEL,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: PIECES.join(''), refusal: null },
        logprobs: null,
        finish_reason: 'stop',
      },
    ],
    usage: USAGE,
  }),
);

function sseBody(withUsage: boolean): Buffer {
  const base = { id: ID, object: 'chat.completion.chunk', created: CREATED, model: MODEL };
  const chunk = (delta: object, finish: string | null): object => ({
    ...base,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    // OpenAI: with include_usage every chunk carries `usage: null` but the last.
    ...(withUsage ? { usage: null } : {}),
  });
  const events: object[] = [
    chunk({ role: 'assistant', content: '' }, null),
    ...PIECES.map((content) => chunk({ content }, null)),
    chunk({}, 'stop'),
  ];
  if (withUsage) events.push({ ...base, choices: [], usage: USAGE });
  return Buffer.from(
    events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('') + 'data: [DONE]\n\n',
  );
}

const SSE = sseBody(false);
const SSE_USAGE = sseBody(true);
const MODELS = Buffer.from(
  JSON.stringify({
    object: 'list',
    data: [{ id: MODEL, object: 'model', created: CREATED, owned_by: 'bench' }],
  }),
);

function json(res: ServerResponse, status: number, body: Buffer): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
}

function error(res: ServerResponse, status: number, message: string): void {
  json(
    res,
    status,
    Buffer.from(JSON.stringify({ error: { message, type: 'invalid_request_error', code: null } })),
  );
}

function chat(res: ServerResponse, raw: Buffer): void {
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch {
    error(res, 400, 'the body is not JSON');
    return;
  }
  const b = body as Record<string, unknown> | null;
  if (b === null || typeof b !== 'object' || typeof b['model'] !== 'string') {
    error(res, 400, '"model" is required');
    return;
  }
  if (!Array.isArray(b['messages']) || b['messages'].length === 0) {
    error(res, 400, '"messages" must be a non-empty array');
    return;
  }
  if (b['stream'] !== true) {
    json(res, 200, COMPLETION);
    return;
  }
  const opts = b['stream_options'] as Record<string, unknown> | null | undefined;
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    'transfer-encoding': 'chunked',
  });
  res.end(opts?.['include_usage'] === true ? SSE_USAGE : SSE);
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  const url = req.url ?? '/';
  if (req.method === 'GET' && url === '/v1/models') {
    json(res, 200, MODELS);
    return;
  }
  if (req.method !== 'POST' || url !== '/v1/chat/completions') {
    req.resume();
    error(res, 404, `no route ${req.method} ${url}`);
    return;
  }
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const raw = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    if (DELAY_MS > 0) setTimeout(() => chat(res, raw), DELAY_MS);
    else chat(res, raw);
  });
}

const server = createServer({ keepAliveTimeout: 60_000 }, handle);
server.listen(Number(process.env['PORT'] ?? 0), '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.stdout.write(`READY http://127.0.0.1:${port}\n`);
});
process.once('SIGTERM', () => process.exit(0));
