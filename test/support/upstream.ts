import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A programmable upstream for tests: a real HTTP server on port 0 whose behaviour each test
 * sets, recording every call it receives (and whether the caller went away mid-call).
 */
export interface RecordedCall {
  readonly method: string;
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
  readonly at: number;
  /** Set when the client closed the connection before the answer was complete. */
  aborted: boolean;
}

export type Behaviour = (
  req: IncomingMessage,
  res: ServerResponse,
  call: RecordedCall,
) => void | Promise<void>;

export interface TestUpstream {
  readonly url: string;
  readonly port: number;
  readonly calls: RecordedCall[];
  behave(b: Behaviour): void;
  close(): Promise<void>;
}

/** `host`: the address to listen on (a multi-node test's own network, else loopback). */
export async function startUpstream(
  initial: Behaviour = json(200, {}),
  host = '127.0.0.1',
): Promise<TestUpstream> {
  let behaviour = initial;
  const calls: RecordedCall[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const call: RecordedCall = {
        method: req.method ?? '',
        path: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        at: performance.now(),
        aborted: false,
      };
      calls.push(call);
      res.on('close', () => {
        if (!res.writableFinished) call.aborted = true;
      });
      Promise.resolve(behaviour(req, res, call)).catch(() => res.destroy());
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, host, () => resolve()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${port}`,
    port,
    calls,
    behave: (b) => {
      behaviour = b;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export function json(
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): Behaviour {
  return (_req, res) => {
    const raw = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(raw),
      ...headers,
    });
    res.end(raw);
  };
}

/** Sends raw bytes as the body with the given status and content type. */
export function raw(
  status: number,
  body: string | Buffer,
  contentType = 'application/json',
): Behaviour {
  return (_req, res) => {
    res.writeHead(status, { 'content-type': contentType });
    res.end(body);
  };
}

/** Never answers (until the client gives up). */
export const hang: Behaviour = () => new Promise(() => undefined);

/** Answers after `ms`, unless the client is gone by then. */
export function delayed(ms: number, then: Behaviour): Behaviour {
  return (req, res, call) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        if (!res.destroyed) void Promise.resolve(then(req, res, call)).then(resolve);
        else resolve();
      }, ms);
      res.on('close', () => {
        clearTimeout(t);
        resolve();
      });
    });
}

/** Destroys the socket without any answer (a reset before the response). */
export const reset: Behaviour = (req) => {
  req.socket.destroy();
};

/** Promises a JSON body, sends half of it, then drops the connection. */
export function truncated(body: unknown): Behaviour {
  return (_req, res) => {
    const text = JSON.stringify(body);
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
    });
    res.write(text.slice(0, Math.floor(text.length / 2)));
    setTimeout(() => res.socket?.destroy(), 5);
  };
}

/** An OpenAI chat.completion answer with usage. */
export function chatCompletion(
  content = 'hello',
  usage = { prompt_tokens: 7, completion_tokens: 3 },
): unknown {
  return {
    id: 'chatcmpl-test',
    object: 'chat.completion',
    created: 1,
    model: 'upstream-model',
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
    usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens },
  };
}

export function sseChunk(content: string, finish: string | null = null): string {
  return `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: finish }] })}\n\n`;
}

export function sseUsage(prompt: number, completion: number): string {
  return `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [], usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } })}\n\n`;
}

export interface SseOptions {
  readonly delayMs?: number;
  /** Destroy the socket after this many events (a reset mid-stream). */
  readonly resetAfter?: number;
  /** Add a usage chunk when the request asked for include_usage. */
  readonly usage?: { prompt: number; completion: number };
}

/** Streams the given contents as chat.completion.chunk events, then [DONE]. */
export function sse(contents: readonly string[], opts: SseOptions = {}): Behaviour {
  return async (_req, res, call) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const wantsUsage = (
      JSON.parse(call.body || '{}') as { stream_options?: { include_usage?: boolean } }
    ).stream_options?.include_usage;
    for (let i = 0; i < contents.length; i++) {
      if (opts.resetAfter !== undefined && i === opts.resetAfter) {
        res.socket?.destroy();
        return;
      }
      if (res.destroyed) return;
      res.write(sseChunk(contents[i]!));
      if (opts.delayMs !== undefined) await new Promise((r) => setTimeout(r, opts.delayMs));
    }
    if (opts.usage !== undefined && wantsUsage === true)
      res.write(sseUsage(opts.usage.prompt, opts.usage.completion));
    res.end('data: [DONE]\n\n');
  };
}

/**
 * Streams the contents as chat.completion.chunk events with no finish_reason, then the raw
 * `tail` events, then ends the body cleanly without `data: [DONE]`: a stream cut short upstream
 * unless the tail ends it (#13).
 */
export function sseCut(contents: readonly string[], tail: readonly string[] = []): Behaviour {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    for (const c of contents) res.write(sseChunk(c));
    for (const t of tail) res.write(t);
    res.end();
  };
}

/** The port of a server that was started and stopped: connecting to it is refused. */
export async function refusedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** An OpenAI embeddings answer with one vector and usage. */
export function embeddingList(embedding: readonly number[] = [0.1, 0.2]): unknown {
  return {
    object: 'list',
    data: [{ object: 'embedding', index: 0, embedding }],
    model: 'embed',
    usage: { prompt_tokens: 1, total_tokens: 1 },
  };
}

/** An OpenAI upstream answering embeddings on `/embeddings` and chat completions elsewhere. */
export const chatAndEmbeddings: Behaviour = (req, res, call) =>
  call.path.endsWith('/embeddings')
    ? json(200, embeddingList())(req, res, call)
    : json(200, chatCompletion())(req, res, call);
