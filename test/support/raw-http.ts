import { connect } from 'node:net';

/** The first HTTP response read off a raw socket, and how the exchange ended. */
export interface RawAnswer {
  readonly status: number | undefined;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
  /** The server closed the connection (after answering, or without a word). */
  readonly closed: boolean;
  /** The socket saw an error (such as ECONNRESET) before the answer was complete. */
  readonly error: string | undefined;
  /** Milliseconds from the first byte written to the end of the exchange. */
  readonly ms: number;
}

export interface RawOptions {
  /** Give up after this long (the answer is then whatever arrived). */
  readonly timeoutMs?: number;
  /**
   * Further writes after the first, each after `everyMs`: a slow client. Writing stops once an
   * answer is complete or the socket is closed.
   */
  readonly drip?: { readonly chunks: readonly (string | Buffer)[]; readonly everyMs: number };
  /** Keep reading after a complete answer until the server closes (or the timeout). */
  readonly untilClose?: boolean;
}

/**
 * Writes raw bytes to a server and reads its first response: what a client with a broken or
 * malicious HTTP implementation sees. Resolves once the first response is complete (by
 * content-length), the connection closes, or the timeout passes.
 */
export async function rawRequest(
  port: number,
  bytes: string | Buffer,
  opts: RawOptions = {},
): Promise<RawAnswer> {
  const t0 = performance.now();
  const x = await exchange(port, bytes, {
    ...opts,
    enough: (buf) => opts.untilClose !== true && parse(buf).complete,
  });
  return { ...parse(x.bytes), closed: x.closed, error: x.error, ms: performance.now() - t0 };
}

interface ExchangeOptions extends Pick<RawOptions, 'timeoutMs' | 'drip'> {
  /** Half-close once the first bytes are written. */
  readonly halfClose?: boolean;
  /** End the exchange this long after writing, whatever was read. */
  readonly hangUpAfterMs?: number;
  /** Whether what was read so far is all the caller waits for. */
  readonly enough: (read: Buffer) => boolean;
}

/**
 * One raw exchange: connects, writes `bytes` (and the drip), reads until `enough`, the server
 * closes, the hang-up time or the timeout; then destroys the socket.
 */
function exchange(
  port: number,
  bytes: string | Buffer,
  opts: ExchangeOptions,
): Promise<{ bytes: Buffer; closed: boolean; error: string | undefined }> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let error: string | undefined;
    let done = false;
    let drip: NodeJS.Timeout | undefined;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearTimeout(hangUp);
      clearInterval(drip);
      socket.destroy();
      resolve({ bytes: Buffer.concat(chunks), closed, error });
    };
    const timer = setTimeout(() => finish(false), opts.timeoutMs ?? 5_000);
    const hangUp =
      opts.hangUpAfterMs === undefined
        ? undefined
        : setTimeout(() => finish(false), opts.hangUpAfterMs);
    socket.on('data', (d: Buffer) => {
      chunks.push(d);
      if (opts.enough(Buffer.concat(chunks))) finish(false);
    });
    socket.on('close', () => finish(true));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
    });
    socket.write(bytes);
    if (opts.halfClose === true) socket.end();
    if (opts.drip !== undefined) {
      const rest = [...opts.drip.chunks];
      drip = setInterval(() => {
        const next = rest.shift();
        if (next === undefined || socket.destroyed || !socket.writable) clearInterval(drip);
        else socket.write(next);
      }, opts.drip.everyMs);
    }
  });
}

/** One response parsed off the front of `buf`, with how many bytes it took. */
interface Parsed {
  status: number | undefined;
  headers: Record<string, string>;
  body: Buffer;
  complete: boolean;
  /** Bytes of `buf` the (complete) response took, 1xx answers before it included. */
  used: number;
}

function parse(buf: Buffer): Parsed {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0)
    return { status: undefined, headers: {}, body: Buffer.alloc(0), complete: false, used: 0 };
  const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  const status = m === null ? undefined : Number(m[1]);
  // A 1xx interim answer is followed by the real one.
  if (status !== undefined && status < 200) {
    const rest = parse(buf.subarray(end + 4));
    const used = rest.complete ? rest.used + end + 4 : 0;
    return rest.status === undefined ? { ...rest, complete: false, used } : { ...rest, used };
  }
  const length = Number(headers['content-length'] ?? NaN);
  const body = buf.subarray(end + 4);
  const complete = Number.isFinite(length) && body.length >= length;
  return {
    status,
    headers,
    body: complete ? body.subarray(0, length) : body,
    complete,
    used: complete ? end + 4 + length : 0,
  };
}

/** Every complete response in `buf`, in order (responses with a content-length). */
export function parseResponses(buf: Buffer): RawResponse[] {
  const out: RawResponse[] = [];
  let rest = buf;
  for (;;) {
    const p = parse(rest);
    if (!p.complete || p.status === undefined) return out;
    out.push({ status: p.status, headers: p.headers, body: p.body });
    rest = rest.subarray(p.used);
  }
}

export interface RawResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

export interface Conversation {
  /** Every complete response read, in order. */
  readonly responses: readonly RawResponse[];
  /** Everything read (a chunked or streamed answer is only here). */
  readonly bytes: Buffer;
  /** The server closed the connection (rather than the timeout ending the exchange). */
  readonly closed: boolean;
  readonly error: string | undefined;
}

export interface ConversationOptions {
  /** Half-close (shutdown(SHUT_WR)) once everything is written: the client still reads. */
  readonly halfClose?: boolean;
  /** Hang up (destroy the socket) once this many complete responses were read. */
  readonly hangUpAfter?: number;
  /** Hang up this long after writing, whatever was read. */
  readonly hangUpAfterMs?: number;
  /** Give up after this long; the answer is then whatever arrived. */
  readonly timeoutMs?: number;
  /** Further writes after the first, one every `everyMs`, until the exchange ends. */
  readonly drip?: NonNullable<RawOptions['drip']>;
}

/**
 * Writes raw bytes (several pipelined requests, garbage, ...) and reads every response until the
 * server closes, the client hangs up as told, or the timeout passes.
 */
export async function rawConversation(
  port: number,
  bytes: string | Buffer,
  opts: ConversationOptions = {},
): Promise<Conversation> {
  const n = opts.hangUpAfter;
  const x = await exchange(port, bytes, {
    ...opts,
    enough: (buf) => n !== undefined && parseResponses(buf).length >= n,
  });
  return { responses: parseResponses(x.bytes), bytes: x.bytes, closed: x.closed, error: x.error };
}

/** A JSON POST as raw HTTP/1.1 bytes (pipelined requests are these, concatenated). */
export function rawPost(path: string, body: unknown, headers: Record<string, string> = {}): string {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const extra = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  return (
    `POST ${path} HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(text)}\r\n${extra}\r\n${text}`
  );
}
