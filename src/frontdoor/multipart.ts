import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import busboy from 'busboy';
import type { UploadBody } from '../contracts/backend.js';
import { syError, type SwitchyardError } from '../core/errors.js';
import type { RequestContext } from './context.js';

/** Bytes queued for the upstream past which the client's upload is paused (backpressure). */
const HIGH_WATER = 1_048_576;
/** Room for the form's boundaries and text fields around a stored file. */
const FORM_OVERHEAD = 64 * 1024;

/** How an upload is read besides its cap. */
export interface UploadOptions {
  /**
   * Each file part's limit (a stored file): past it, 413 `SY_ERR_FILE_TOO_LARGE`, and the form's
   * cap, when it is passed, says the same.
   */
  readonly fileBytes?: number;
  /** The whole form is read into memory (`whole()`): never paused for a consumer. */
  readonly whole?: boolean;
}

/** A `multipart/form-data` upload read whole: its text fields and its first file. */
export interface FileUpload {
  readonly fields: Readonly<Record<string, string>>;
  readonly file:
    { readonly field: string; readonly filename: string; readonly content: Buffer } | undefined;
}

/**
 * A part of the form, in the client's order. A file's bytes stay with their part (busboy may
 * report the next field before the file's stream has delivered its last bytes).
 */
type Part =
  | { readonly kind: 'field'; readonly name: string; readonly value: string }
  | {
      readonly kind: 'file';
      readonly name: string;
      readonly filename: string;
      readonly mimeType: string;
      readonly chunks: Buffer[];
      ended: boolean;
    };

/**
 * A multipart upload read with busboy: streamed on as the upstream takes it
 * (`POST /v1/audio/transcriptions`, #16 part 4), or read whole (`POST /v1/files`, `whole()`).
 * Streamed: Only the text fields are parsed (the routing needs `model`); the file's
 * bytes pass through untouched, re-framed under the gateway's own boundary so that a field can
 * be replaced (the upstream's model name). Until the target is known the parts are queued: a
 * form whose `model` comes after its file is held in memory up to the cap, one whose `model`
 * comes first streams at once. The cap counts every byte the client sent: past it the upload
 * ends in 413 SY_ERR_BODY_TOO_LARGE, and the upstream's request is cut (it never sees a whole form).
 */
export class Upload implements UploadBody {
  readonly fields: Record<string, string> = {};
  private readonly parts: Part[] = [];
  private queued = 0;
  private ended = false;
  private wrote = false;
  /** Why the upload failed (over the cap, a broken form, the client gone), once it did. */
  failure: SwitchyardError | undefined;
  private wake: (() => void) | undefined;
  private files: Readable[] = [];
  private readonly parser: busboy.Busboy;
  private readonly onData: (chunk: Buffer) => void;
  private readonly onGone: () => void;
  /** Resolves once `model` was read or the form ended; rejects when the upload fails first. */
  readonly ready: Promise<void>;

  constructor(
    private readonly req: IncomingMessage,
    limit: number,
    options: UploadOptions = {},
  ) {
    let settle!: { resolve: () => void; reject: (e: SwitchyardError) => void };
    this.ready = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    this.ready.catch(() => undefined);
    const fail = (e: SwitchyardError): void => {
      if (this.failure !== undefined || this.ended) return;
      this.failure = e;
      this.stop();
      settle.reject(e);
      this.poke();
    };
    const fileBytes = options.fileBytes;
    this.parser = busboy({
      headers: req.headers,
      defParamCharset: 'utf8',
      limits: {
        fieldSize: 65_536,
        fields: 64,
        parts: 128,
        ...(fileBytes === undefined ? {} : { fileSize: fileBytes }),
      },
    });
    let seen = 0;
    this.onData = (chunk) => {
      seen += chunk.length;
      if (seen > limit) fail(tooLarge(limit, options));
    };
    this.onGone = () => {
      if (!req.complete) fail(syError('SY_ERR_CLIENT_CLOSED'));
    };
    req.on('data', this.onData);
    req.on('close', this.onGone);
    this.parser.on('field', (name, value, info) => {
      if (info.valueTruncated)
        return fail(syError('SY_ERR_INVALID_REQUEST', `the form field ${name} is too long`));
      this.fields[name] = value;
      this.push({ kind: 'field', name, value });
      if (name === 'model') settle.resolve();
    });
    this.parser.on('file', (name, stream, info) => {
      this.files.push(stream);
      const part: Part = {
        kind: 'file',
        name,
        filename: info.filename ?? 'file',
        mimeType: info.mimeType,
        chunks: [],
        ended: false,
      };
      this.push(part);
      stream.on('limit', () => fail(syError('SY_ERR_FILE_TOO_LARGE', String(fileBytes))));
      stream.on('data', (chunk: Buffer) => {
        if (this.failure !== undefined) return;
        part.chunks.push(chunk);
        this.queued += chunk.length;
        this.poke();
        // Held back only once the target is known: before, `model` may still be ahead.
        if (this.queued > HIGH_WATER && 'model' in this.fields && options.whole !== true)
          stream.pause();
      });
      stream.on('end', () => {
        part.ended = true;
        this.poke();
      });
    });
    this.parser.on('close', () => {
      if (this.failure !== undefined) return;
      this.ended = true;
      settle.resolve();
      this.poke();
    });
    // busboy drops parts past its limits silently: a form it would cut is refused instead.
    for (const limit of ['partsLimit', 'fieldsLimit'] as const)
      this.parser.on(limit, () =>
        fail(syError('SY_ERR_INVALID_REQUEST', `the form has too many parts (${limit})`)),
      );
    this.parser.on('error', (err: Error) =>
      fail(syError('SY_ERR_INVALID_REQUEST', `malformed multipart body: ${err.message}`)),
    );
    req.pipe(this.parser);
  }

  get sent(): boolean {
    return this.wrote;
  }

  open(override: Readonly<Record<string, string>>): {
    contentType: string;
    body: AsyncIterable<Buffer>;
  } {
    // Opened again only by a retry whose attempt sent nothing (a refused connection).
    if (this.wrote) throw syError('SY_ERR_INTERNAL', 'an upload is sent once');
    const boundary = `----switchyard-${randomBytes(12).toString('hex')}`;
    return {
      contentType: `multipart/form-data; boundary=${boundary}`,
      body: this.encode(boundary, override),
    };
  }

  /** The whole form (`whole` uploads): its fields and its first file, once every byte is read. */
  async whole(): Promise<FileUpload> {
    for (;;) {
      this.rethrow();
      if (this.ended && this.parts.every((p) => p.kind === 'field' || p.ended)) break;
      await this.waitForMore();
    }
    let file: FileUpload['file'];
    for (const p of this.parts)
      if (p.kind === 'file') {
        file = { field: p.name, filename: p.filename, content: Buffer.concat(p.chunks) };
        break;
      }
    this.stop();
    return { fields: { ...this.fields }, file };
  }

  /** Stops reading the client's upload (the answer went out, or the upload failed). */
  discard(): void {
    this.stop();
    this.parts.length = 0;
    this.queued = 0;
    // An upstream body still waiting for parts ends now (it throws), instead of never settling.
    this.failure ??= syError('SY_ERR_CLIENT_CLOSED', 'the upload was discarded');
    this.poke();
  }

  private async *encode(
    boundary: string,
    override: Readonly<Record<string, string>>,
  ): AsyncGenerator<Buffer> {
    // RFC 7578 / RFC 2046 §5.1.1: each delimiter after the first starts with CRLF.
    let delimiter = `--${boundary}\r\n`;
    for (;;) {
      this.rethrow();
      const part = this.parts.shift();
      if (part === undefined) {
        if (this.ended) {
          yield Buffer.from(`${delimiter.slice(0, -2)}--\r\n`);
          return;
        }
        await this.waitForMore();
        continue;
      }
      this.wrote = true;
      if (part.kind === 'field') {
        const value = override[part.name] ?? part.value;
        yield Buffer.from(`${delimiter}${disposition(part.name)}\r\n\r\n${value}`);
      } else {
        yield Buffer.from(
          `${delimiter}${disposition(part.name)}; filename="${quote(part.filename)}"\r\n` +
            `Content-Type: ${part.mimeType}\r\n\r\n`,
        );
        for (;;) {
          this.rethrow();
          const chunk = part.chunks.shift();
          if (chunk !== undefined) {
            this.queued -= chunk.length;
            if (this.queued < HIGH_WATER / 2) for (const f of this.files) f.resume();
            yield chunk;
          } else if (part.ended) break;
          else await this.waitForMore();
        }
      }
      delimiter = `\r\n--${boundary}\r\n`;
    }
  }

  /** Ends the upstream's body with the upload's failure (the request to it is then cut). */
  private rethrow(): void {
    const f = this.failure;
    if (f !== undefined) throw f;
  }

  private waitForMore(): Promise<void> {
    return new Promise<void>((resolve) => (this.wake = resolve));
  }

  private push(part: Part): void {
    if (this.failure !== undefined) return;
    this.parts.push(part);
    this.poke();
  }

  private poke(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  private stop(): void {
    this.req.off('data', this.onData);
    this.req.off('close', this.onGone);
    this.req.unpipe(this.parser);
    for (const f of this.files) f.resume();
  }
}

function disposition(name: string): string {
  return `Content-Disposition: form-data; name="${quote(name)}"`;
}

/** HTML's multipart/form-data escaping of names and filenames (WHATWG HTML §4.10.21.8). */
function quote(s: string): string {
  return s.replace(/\r/g, '%0D').replace(/\n/g, '%0A').replace(/"/g, '%22');
}

/** Over the form's cap: a stored file's limit names the file, else the body's cap. */
function tooLarge(limit: number, options: UploadOptions): SwitchyardError {
  return options.fileBytes === undefined
    ? syError('SY_ERR_BODY_TOO_LARGE', String(limit))
    : syError('SY_ERR_FILE_TOO_LARGE', String(options.fileBytes));
}

/**
 * Checks a multipart upload's head (415 if it is not multipart/form-data or is encoded, 413 if
 * it declares a length over `limit`) before any byte is read, then starts reading it.
 */
export function readUpload(
  req: IncomingMessage,
  limit: number,
  beforeRead: () => void,
  options: UploadOptions = {},
): Upload {
  const type = req.headers['content-type'] ?? '';
  if (!/^multipart\/form-data\s*;/i.test(type))
    throw syError('SY_ERR_MULTIPART_REQUIRED', type.slice(0, 100) || 'none');
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding !== 'identity')
    throw syError('SY_ERR_UNSUPPORTED_MEDIA_TYPE', `content-encoding ${encoding.slice(0, 50)}`);
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) throw tooLarge(limit, options);
  beforeRead();
  try {
    return new Upload(req, limit, options);
  } catch (err) {
    // busboy throws on a form without a boundary.
    throw syError('SY_ERR_INVALID_REQUEST', `malformed multipart body: ${(err as Error).message}`);
  }
}

/**
 * Reads a stored file's upload (`POST /v1/files`) whole: one file of at most `maxFileBytes` (413
 * `SY_ERR_FILE_TOO_LARGE` at the first byte past it, or up front when the declared length is over
 * it with room for the form) and its text fields. Not multipart: 415.
 */
export function readFileUpload(ctx: RequestContext, maxFileBytes: number): Promise<FileUpload> {
  const upload = readUpload(ctx.req, maxFileBytes + FORM_OVERHEAD, () => ctx.sendContinue(), {
    fileBytes: maxFileBytes,
    whole: true,
  });
  return upload.whole();
}
