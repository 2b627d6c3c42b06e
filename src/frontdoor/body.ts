import type { IncomingMessage } from 'node:http';
import type { JsonObject } from '../contracts/json.js';
import { syError, type SwitchyardError } from '../core/errors.js';
import { JSON_MEDIA_TYPE as JSON_TYPE, parseJsonObject } from '../core/safe-json.js';

/**
 * What can be judged from a JSON request's headers alone: its media type and encoding (415) and
 * a declared length over the limit (413). Checked before the client is told to send the body.
 */
function checkJsonHead(req: IncomingMessage, limit: number, anyType = false): void {
  const type = req.headers['content-type'];
  if (!anyType && type !== undefined && !JSON_TYPE.test(type)) {
    throw syError('SY_ERR_UNSUPPORTED_MEDIA_TYPE', type.slice(0, 100));
  }
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding !== 'identity') {
    throw syError('SY_ERR_UNSUPPORTED_MEDIA_TYPE', `content-encoding ${encoding.slice(0, 50)}`);
  }
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    throw syError('SY_ERR_BODY_TOO_LARGE', String(limit));
  }
}

/**
 * Reads a request body under a byte limit, enforced while reading: a body is refused at the
 * first byte past it, so a large body never sits in memory (`readJsonBody` refuses a declared
 * length over it before any byte is read). What the client still sends after a refusal is
 * discarded by `drainUpload`, so that it reads the 413 instead of a reset.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const refusal = refusals.get(req);
  if (refusal !== undefined) return Promise.reject(refusal);
  if (req.destroyed) return Promise.reject(syError('SY_ERR_CLIENT_CLOSED'));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('close', onClose);
      req.off('error', onClose);
      req.off(REFUSED, onRefused);
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
    const onRefused = (e: SwitchyardError): void => {
      cleanup();
      reject(e);
    };
    req.on(REFUSED, onRefused);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('close', onClose);
    req.on('error', onClose);
  });
}

const REFUSED = 'switchyard:refused';
const refusals = new WeakMap<IncomingMessage, SwitchyardError>();

/**
 * Ends the body of a request Node's parser gave up on (a broken chunked body, one arriving too
 * slowly): whoever reads it, now or later, gets `e` (400, 408), and answers with it. Destroying
 * the request instead would destroy the socket and lose the answer.
 */
export function refuseBody(req: IncomingMessage, e: SwitchyardError): void {
  if (refusals.has(req)) return;
  refusals.set(req, e);
  req.emit(REFUSED, e);
}

/**
 * Reads and safely parses a JSON object body (415 for other media types, 413 over the limit, 400
 * for bad JSON). `beforeRead` runs once the head passed its checks (to send 100 Continue).
 */
export async function readJsonBody(
  req: IncomingMessage,
  limit: number,
  beforeRead?: () => void,
  /** Parse the body as JSON whatever its content type says (KServe v2: Triton labels JSON octet-stream). */
  anyType = false,
): Promise<JsonObject> {
  checkJsonHead(req, limit, anyType);
  beforeRead?.();
  const raw = await readBody(req, limit);
  if (raw.length === 0) throw syError('SY_ERR_INVALID_JSON', 'the body is empty');
  return parseJsonObject(raw.toString('utf8'));
}

/**
 * Reads a body of any media type under the limit (the KServe binary tensor extension): only a
 * content encoding (415) or a declared length over the limit (413) is refused up front.
 */
export async function readAnyBody(
  req: IncomingMessage,
  limit: number,
  beforeRead?: () => void,
): Promise<Buffer> {
  checkJsonHead(req, limit, true);
  beforeRead?.();
  return readBody(req, limit);
}

/** How much of an unwanted upload the server reads and throws away before it closes. */
export interface LingerLimits {
  readonly bytes: number;
  readonly ms: number;
}

/**
 * Once an answer went out before the request's body was read (413, 401, 415, ...), reads and
 * discards the rest of the upload, then calls `done` (which closes the connection). Closing a
 * socket with unread bytes makes the kernel send a reset, and a client still writing its body
 * then sees EPIPE or ECONNRESET instead of the answer (#13). Like nginx's lingering close, this
 * is bounded: at most `limits.bytes` more bytes and `limits.ms` of time, and nothing at all when
 * the declared length already says it would pass that (the reset is then the client's lot).
 * `done` runs once: the body ended, the client went, or a bound was reached.
 */
export function drainUpload(req: IncomingMessage, limits: LingerLimits, done: () => void): void {
  // A declared length is an upper bound of what is left (some of it may be read already).
  const declared = Number(req.headers['content-length'] ?? NaN);
  const over = req.complete || req.destroyed || refusals.has(req);
  if (over || declared > limits.bytes || limits.bytes === 0) {
    done();
    return;
  }
  let seen = 0;
  let finished = false;
  const finish = (): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    req.off('data', onData);
    req.off('end', finish);
    req.off('close', finish);
    req.off('error', finish);
    req.off(REFUSED, finish);
    done();
  };
  const onData = (chunk: Buffer): void => {
    seen += chunk.length;
    if (seen > limits.bytes) finish();
  };
  const timer = setTimeout(finish, limits.ms);
  timer.unref();
  req.on('data', onData);
  req.on('end', finish);
  req.on('close', finish);
  req.on('error', finish);
  req.on(REFUSED, finish);
  req.resume();
}
