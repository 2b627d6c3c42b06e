import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import { request as undiciRequest, type Dispatcher } from 'undici';

/** The HTTP clients apps use, each uploading a body the way it does by default. */
export type UploadClient = 'fetch' | 'undici' | 'node:http';
export const UPLOAD_CLIENTS: readonly UploadClient[] = ['fetch', 'undici', 'node:http'];

/** What the client saw: an answer (its status and error code), or the error it threw. */
export type UploadOutcome =
  { readonly status: number; readonly code: string } | { readonly error: string };

const MB = 1_048_576;

/** A deterministic size in [2 MB, 10 MB) for try `i`: the sizes issue #13 measured. */
export function oversizedSize(i: number): number {
  return 2 * MB + ((i * 2_654_435_761) % (8 * MB));
}

/** A chat request of `size` bytes (one long message). */
export function chatBodyOf(size: number): Buffer {
  const head = Buffer.from('{"model":"chat","messages":[{"role":"user","content":"');
  const tail = Buffer.from('"}]}');
  const body = Buffer.alloc(size, 0x61);
  head.copy(body, 0);
  tail.copy(body, size - tail.length);
  return body;
}

/** The body as a stream of 64 KB chunks: sent chunked, with no declared length. */
function chunks(body: Buffer): Readable {
  let at = 0;
  return new Readable({
    read() {
      if (at >= body.length) {
        this.push(null);
        return;
      }
      this.push(body.subarray(at, at + 65_536));
      at += 65_536;
    },
  });
}

function codeOf(text: string): string {
  try {
    const parsed = JSON.parse(text) as { error?: { code?: string } };
    return parsed.error?.code ?? 'no code';
  } catch {
    return 'not JSON';
  }
}

function errorName(err: unknown): string {
  const e = err as { code?: string; cause?: { code?: string }; name?: string };
  return e.cause?.code ?? e.code ?? e.name ?? 'error';
}

export interface UploadOptions {
  readonly client: UploadClient;
  /** The gateway's origin. */
  readonly url: string;
  readonly path: string;
  readonly key: string;
  readonly body: Buffer;
  /** Send it chunked (a stream) rather than with a declared length. */
  readonly chunked: boolean;
  /** For the undici client (a pool shared by the tries). */
  readonly dispatcher?: Dispatcher;
}

/** POSTs `body` with the chosen client and reports what that client saw. */
export async function upload(o: UploadOptions): Promise<UploadOutcome> {
  const headers = { authorization: `Bearer ${o.key}`, 'content-type': 'application/json' };
  try {
    if (o.client === 'fetch') {
      // A stream body needs `duplex: 'half'` (not yet in the RequestInit type of Node 20).
      const init: RequestInit & { duplex?: 'half' } = {
        method: 'POST',
        headers,
        body: o.chunked ? Readable.toWeb(chunks(o.body)) : o.body,
        ...(o.chunked ? { duplex: 'half' as const } : {}),
      };
      const res = await fetch(`${o.url}${o.path}`, init);
      return { status: res.status, code: codeOf(await res.text()) };
    }
    if (o.client === 'undici') {
      const res = await undiciRequest(`${o.url}${o.path}`, {
        method: 'POST',
        headers,
        body: o.chunked ? chunks(o.body) : o.body,
        ...(o.dispatcher === undefined ? {} : { dispatcher: o.dispatcher }),
      });
      return { status: res.statusCode, code: codeOf(await res.body.text()) };
    }
    return await viaNodeHttp(o, headers);
  } catch (err) {
    return { error: errorName(err) };
  }
}

function viaNodeHttp(o: UploadOptions, headers: Record<string, string>): Promise<UploadOutcome> {
  return new Promise((resolve) => {
    let settled = false;
    const settle = (outcome: UploadOutcome): void => {
      if (!settled) {
        settled = true;
        resolve(outcome);
      }
    };
    const req = httpRequest(`${o.url}${o.path}`, {
      method: 'POST',
      headers: o.chunked ? headers : { ...headers, 'content-length': o.body.length },
    });
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => settle({ status: res.statusCode ?? 0, code: codeOf(text) }));
      res.on('error', (err) => settle({ error: errorName(err) }));
    });
    req.on('error', (err) => settle({ error: errorName(err) }));
    if (o.chunked) chunks(o.body).pipe(req);
    else req.end(o.body);
  });
}
