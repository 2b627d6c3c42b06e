import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A SIMULATED model upstream for demos and benchmarks. It is not a model: chat answers echo the
 * prompt, embeddings are hashes, and the KServe model `sum` adds its inputs. It speaks the real
 * wire protocols (OpenAI chat/embeddings with SSE streaming and usage, KServe v2 REST) so the
 * gateway in front of it does exactly what it does in front of a real server.
 */
export interface SimulatorOptions {
  readonly port?: number;
  readonly host?: string;
  /** Delay before answering (and before the first streamed event), ms. */
  readonly latencyMs?: number;
  /** Delay between streamed events, ms. */
  readonly tokenDelayMs?: number;
}

export interface Simulator {
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  close(): Promise<void>;
}

const NOTICE = '[simulated upstream]';

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const raw = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(raw),
  });
  res.end(raw);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

const sleep = (ms: number): Promise<void> =>
  ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();

function lastUserText(body: Record<string, unknown>): string {
  const messages = Array.isArray(body['messages'])
    ? (body['messages'] as Record<string, unknown>[])
    : [];
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m?.['role'] === 'user' && typeof m['content'] === 'string') return m['content'];
  }
  return '';
}

function countTokens(text: string): number {
  return text.split(/\s+/).filter((w) => w !== '').length;
}

/** A deterministic unit vector from text: the same text always embeds the same. */
export function hashEmbedding(text: string, dims: number): number[] {
  const out: number[] = [];
  let block = createHash('sha256').update(text).digest();
  while (out.length < dims) {
    for (let i = 0; i + 1 < block.length && out.length < dims; i += 2)
      out.push(block.readInt16BE(i) / 32768);
    block = createHash('sha256').update(block).digest();
  }
  const norm = Math.sqrt(out.reduce((s, x) => s + x * x, 0)) || 1;
  return out.map((x) => x / norm);
}

async function chat(
  req: IncomingMessage,
  res: ServerResponse,
  body: Record<string, unknown>,
  opts: SimulatorOptions,
): Promise<void> {
  const model = typeof body['model'] === 'string' ? body['model'] : 'simulated';
  const prompt = lastUserText(body);
  const reply = `${NOTICE} You said: ${prompt.slice(0, 200)}`;
  const inputTokens = countTokens(prompt) + 1;
  const words = reply.split(' ');
  const usage = {
    prompt_tokens: inputTokens,
    completion_tokens: words.length,
    total_tokens: inputTokens + words.length,
  };
  const id = `chatcmpl-sim-${Date.now().toString(36)}`;
  const created = Math.floor(Date.now() / 1000);
  await sleep(opts.latencyMs ?? 0);
  if (body['stream'] !== true) {
    sendJson(res, 200, {
      id,
      object: 'chat.completion',
      created,
      model,
      // Every field OpenAI's schema requires (#16 item 9): `refusal` and `logprobs` are null.
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: reply, refusal: null },
          logprobs: null,
          finish_reason: 'stop',
        },
      ],
      usage,
    });
    return;
  }
  const wantUsage =
    (body['stream_options'] as Record<string, unknown> | undefined)?.['include_usage'] === true;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  const chunk = (delta: Record<string, unknown>, finish: string | null): string =>
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }], ...(wantUsage ? { usage: null } : {}) })}\n\n`;
  res.write(chunk({ role: 'assistant', content: '' }, null));
  for (let i = 0; i < words.length; i++) {
    if (res.destroyed) return;
    await sleep(opts.tokenDelayMs ?? 0);
    res.write(chunk({ content: (i === 0 ? '' : ' ') + words[i] }, null));
  }
  res.write(chunk({}, 'stop'));
  if (wantUsage) {
    res.write(
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage })}\n\n`,
    );
  }
  res.end('data: [DONE]\n\n');
}

function embeddings(res: ServerResponse, body: Record<string, unknown>): void {
  const input = body['input'];
  const items: unknown[] = Array.isArray(input) ? input : [input];
  const texts = items.map((x) => (typeof x === 'string' ? x : JSON.stringify(x)));
  const dims = typeof body['dimensions'] === 'number' ? body['dimensions'] : 64;
  const tokens = texts.reduce((s, t) => s + countTokens(t), 0);
  // OpenAI's SDKs ask for base64 (little-endian float32) unless told otherwise.
  const base64 = body['encoding_format'] === 'base64';
  const encode = (v: number[]): number[] | string =>
    base64 ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v;
  sendJson(res, 200, {
    object: 'list',
    model: body['model'] ?? 'simulated',
    data: texts.map((t, index) => ({
      object: 'embedding',
      index,
      embedding: encode(hashEmbedding(t, dims)),
    })),
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  });
}

const SUM_META = {
  name: 'sum',
  versions: ['1'],
  platform: 'simulated',
  inputs: [{ name: 'INPUT0', datatype: 'FP32', shape: [-1, -1] }],
  outputs: [{ name: 'SUM', datatype: 'FP32', shape: [-1, 1] }],
};

function kserveInfer(res: ServerResponse, name: string, body: Record<string, unknown>): void {
  const inputs = Array.isArray(body['inputs']) ? (body['inputs'] as Record<string, unknown>[]) : [];
  const first = inputs[0];
  const shape = Array.isArray(first?.['shape']) ? (first['shape'] as number[]) : [];
  const data = Array.isArray(first?.['data']) ? (first['data'] as unknown[]).flat(Infinity) : [];
  if (first === undefined || shape.length !== 2 || data.some((x) => typeof x !== 'number')) {
    sendJson(res, 400, { error: 'INPUT0 must be an FP32 tensor of shape [rows, cols]' });
    return;
  }
  const [rows = 0, cols = 0] = shape;
  const sums: number[] = [];
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += data[r * cols + c] as number;
    sums.push(s);
  }
  sendJson(res, 200, {
    model_name: name,
    model_version: '1',
    ...(typeof body['id'] === 'string' ? { id: body['id'] } : {}),
    outputs: [{ name: 'SUM', datatype: 'FP32', shape: [rows, 1], data: sums }],
  });
}

async function route(
  req: IncomingMessage,
  res: ServerResponse,
  opts: SimulatorOptions,
): Promise<void> {
  const path = (req.url ?? '/').split('?')[0] ?? '/';
  if (req.method === 'GET' && (path === '/v1/models' || path === '/models')) {
    sendJson(res, 200, {
      object: 'list',
      data: [{ id: 'simulated', object: 'model', created: 0, owned_by: 'simulator' }],
    });
    return;
  }
  if (req.method === 'GET' && (path === '/v2/health/ready' || path === '/v2/health/live')) {
    sendJson(res, 200, {});
    return;
  }
  const kserve = /^\/v2\/models\/([^/]+)(?:\/versions\/([^/]+))?(\/ready|\/infer)?$/.exec(path);
  if (kserve !== null) {
    const name = decodeURIComponent(kserve[1]!);
    if (name !== 'sum' || (kserve[2] !== undefined && kserve[2] !== '1')) {
      sendJson(res, 404, { error: `model ${name} not found` });
      return;
    }
    if (kserve[3] === '/ready') sendJson(res, 200, { name, ready: true });
    else if (kserve[3] === '/infer' && req.method === 'POST') {
      await sleep(opts.latencyMs ?? 0);
      kserveInfer(res, name, JSON.parse(await readBody(req)) as Record<string, unknown>);
    } else sendJson(res, 200, SUM_META);
    return;
  }
  if (req.method !== 'POST') {
    sendJson(res, 404, {
      error: { message: `no route ${req.method} ${path}`, type: 'invalid_request_error' },
    });
    return;
  }
  const body = JSON.parse(await readBody(req)) as Record<string, unknown>;
  if (path.endsWith('/chat/completions')) await chat(req, res, body, opts);
  else if (path.endsWith('/embeddings')) embeddings(res, body);
  else
    sendJson(res, 404, {
      error: { message: `no route POST ${path}`, type: 'invalid_request_error' },
    });
}

export async function startSimulator(opts: SimulatorOptions = {}): Promise<Simulator> {
  const server = createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    route(req, res, opts).catch((err: unknown) => {
      if (!res.headersSent)
        sendJson(res, 400, { error: { message: String(err), type: 'invalid_request_error' } });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${opts.host ?? '127.0.0.1'}:${port}`,
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
