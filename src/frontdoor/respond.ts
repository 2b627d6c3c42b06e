import type { OutgoingHttpHeaders } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { JsonObject } from '../contracts/json.js';
import { toSwitchyardError, type SwitchyardError } from '../core/errors.js';
import { drainUpload } from './body.js';
import type { ErrorStyle, RequestContext } from './context.js';

export const ROUTE_HEADER = 'x-switchyard-route';
/** Set when the answer is degraded (#17): a parent gateway was unavailable, or said so. */
export const DEGRADED_HEADER = 'x-switchyard-degraded';
/** Set when an experiment, canary or mode substitute chose the model: its reason. */
export const RELEASE_HEADER = 'x-switchyard-release';

function baseHeaders(
  ctx: RequestContext,
  contentType: string,
  length: number,
): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {
    'content-type': contentType,
    'content-length': length,
    'x-request-id': ctx.requestId,
  };
  if (ctx.attempts.length > 0) {
    headers[ROUTE_HEADER] = ctx.pathTaken();
    const degraded = ctx.degraded();
    if (degraded !== undefined) headers[DEGRADED_HEADER] = degraded;
  }
  if (ctx.release !== undefined && ctx.release !== 'default') headers[RELEASE_HEADER] = ctx.release;
  return headers;
}

/** Sends a JSON answer; `body` may be the exact bytes to forward. */
export function sendJson(ctx: RequestContext, status: number, body: JsonObject | Buffer): void {
  if (ctx.res.headersSent || ctx.res.destroyed) return;
  const raw = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
  ctx.res.writeHead(status, baseHeaders(ctx, 'application/json', raw.length));
  ctx.res.end(raw);
}

/** The one error body. `openai` style is `{error:{code,message,type,param,request_id}}`. */
export function errorBody(err: SwitchyardError, requestId: string, style: ErrorStyle): JsonObject {
  if (style === 'kserve') {
    // Open Inference Protocol: `error` is a string; the code and request id ride beside it.
    return { error: err.message, code: err.code, type: err.type, request_id: requestId };
  }
  return {
    error: {
      code: err.code,
      message: err.message,
      type: err.type,
      param: err.param ?? null,
      request_id: requestId,
    },
  };
}

/**
 * Maps any error to its status and JSON body, with Retry-After on 429/503. The handler has
 * thrown: a response it had begun cannot carry the error, so its connection is cut (the client
 * sees a truncated answer, never a clean one; nothing after it on that connection could be
 * framed), and the request's life ends either way.
 */
export function sendError(ctx: RequestContext, thrown: unknown): void {
  const err = toSwitchyardError(thrown);
  ctx.fail(err);
  const res = ctx.res;
  if (res.destroyed || res.writableEnded) return;
  if (res.headersSent) {
    ctx.req.socket.destroy();
    return;
  }
  const raw = Buffer.from(JSON.stringify(errorBody(err, ctx.requestId, ctx.errorStyle)));
  const headers = baseHeaders(ctx, 'application/json', raw.length);
  if (err.retryAfterS !== undefined) headers['retry-after'] = String(err.retryAfterS);
  // Answered before the body was read: the connection closes after it, but first the rest of
  // the upload is read and discarded (bounded), or the close would reset the answer away (#13).
  // A client waiting for 100 Continue sends no body: close at once (RFC 9110 §10.1.1).
  if (!ctx.req.complete) headers['connection'] = 'close';
  res.writeHead(err.status, headers);
  if (ctx.req.complete || ctx.awaitsContinue()) {
    res.end(raw);
    return;
  }
  // The whole answer goes out now (its length is declared); the end only closes.
  res.write(raw);
  const limits = ctx.runtime.snapshot.config.server.limits;
  drainUpload(ctx.req, { bytes: limits.linger_bytes, ms: limits.linger_ms }, () => res.end());
}

/** A complete raw HTTP/1.1 error response, for the parser errors Node raises before a request exists. */
export function rawErrorResponse(err: SwitchyardError, requestId: string): string {
  const body = JSON.stringify(errorBody(err, requestId, 'openai'));
  return (
    `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? 'Error'}\r\n` +
    `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
    `x-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`
  );
}
