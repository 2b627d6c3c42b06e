import busboy from 'busboy';
import { syError } from '../core/errors.js';
import type { RequestContext } from './context.js';

/** A `multipart/form-data` upload read whole: its text fields and its one file. */
export interface FileUpload {
  readonly fields: Readonly<Record<string, string>>;
  readonly file:
    { readonly field: string; readonly filename: string; readonly content: Buffer } | undefined;
}

const MULTIPART = /^multipart\/form-data\s*;/i;
/** Room for the form's boundaries and text fields around the file. */
const FORM_OVERHEAD = 64 * 1024;

/**
 * Reads a `multipart/form-data` upload whole with busboy (a batch input file; pass-through uploads
 * stream instead, see multipart.ts): one file of at most `maxFileBytes` (413
 * `SY_ERR_FILE_TOO_LARGE` at the first byte past it, or up front when the declared length is over
 * it with room for the form), a few short text fields. Not multipart: 415.
 */
export function readFileUpload(ctx: RequestContext, maxFileBytes: number): Promise<FileUpload> {
  const req = ctx.req;
  const type = req.headers['content-type'];
  if (type === undefined || !MULTIPART.test(type))
    throw syError(
      'SY_ERR_UNSUPPORTED_MEDIA_TYPE',
      `${(type ?? 'none').slice(0, 100)} (send multipart/form-data)`,
    );
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > maxFileBytes + FORM_OVERHEAD)
    throw syError('SY_ERR_FILE_TOO_LARGE', String(maxFileBytes));
  let bb: busboy.Busboy;
  try {
    bb = busboy({
      headers: req.headers,
      limits: { files: 1, fileSize: maxFileBytes, fields: 16, fieldSize: 4096, parts: 20 },
    });
  } catch (err) {
    throw syError('SY_ERR_INVALID_REQUEST', `bad multipart form: ${String(err).slice(0, 200)}`);
  }
  ctx.sendContinue();
  return new Promise((resolve, reject) => {
    const fields: Record<string, string> = {};
    let file: FileUpload['file'];
    let failed = false;
    const fail = (e: Error): void => {
      if (failed) return;
      failed = true;
      req.unpipe(bb);
      bb.removeAllListeners();
      bb.on('error', () => undefined);
      reject(e);
    };
    bb.on('field', (name, value) => {
      fields[name] = value;
    });
    bb.on('file', (field, stream, info) => {
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on('data', (c: Buffer) => {
        size += c.length;
        chunks.push(c);
      });
      stream.on('limit', () => fail(syError('SY_ERR_FILE_TOO_LARGE', String(maxFileBytes))));
      stream.on('end', () => {
        if (!failed)
          file = {
            field,
            filename: info.filename ?? 'upload',
            content: Buffer.concat(chunks, size),
          };
      });
    });
    bb.on('error', (err) =>
      fail(syError('SY_ERR_INVALID_REQUEST', `bad multipart form: ${String(err).slice(0, 200)}`)),
    );
    bb.on('close', () => {
      if (!failed) resolve({ fields, file });
    });
    req.on('close', () => {
      if (!req.complete) fail(syError('SY_ERR_CLIENT_CLOSED'));
    });
    req.pipe(bb);
  });
}
