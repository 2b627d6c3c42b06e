import type { IncomingMessage } from 'node:http';
import type { JsonObject } from '../contracts/json.js';
import { syError } from '../core/errors.js';
import { parseJsonObject } from '../core/safe-json.js';

/**
 * Reads a request body under a byte limit, enforced while reading: a declared length over the
 * limit is refused before any byte is read, and a chunked body is refused at the first byte
 * past it, so a large body never sits in memory. The connection is closed after such a refusal.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    return Promise.reject(syError('SY_ERR_BODY_TOO_LARGE', String(limit)));
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      req.off('error', onClose);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.pause();
        reject(syError('SY_ERR_BODY_TOO_LARGE', String(limit)));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onClose = (): void => {
      cleanup();
      reject(syError('SY_ERR_CLIENT_CLOSED'));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('close', onClose);
    req.on('error', onClose);
  });
}

const JSON_TYPE = /^application\/([a-z0-9.+-]*\+)?json\s*(;|$)/i;

/** Reads and safely parses a JSON object body (415 for other media types, 400 for bad JSON). */
export async function readJsonBody(req: IncomingMessage, limit: number): Promise<JsonObject> {
  const type = req.headers['content-type'];
  if (type !== undefined && !JSON_TYPE.test(type)) {
    throw syError('SY_ERR_UNSUPPORTED_MEDIA_TYPE', type.slice(0, 100));
  }
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding !== 'identity') {
    throw syError('SY_ERR_UNSUPPORTED_MEDIA_TYPE', `content-encoding ${encoding.slice(0, 50)}`);
  }
  const raw = await readBody(req, limit);
  if (raw.length === 0) throw syError('SY_ERR_INVALID_JSON', 'the body is empty');
  return parseJsonObject(raw.toString('utf8'));
}
