import { once } from 'node:events';
import type { OutgoingHttpHeaders } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { BackendStream } from '../contracts/backend.js';
import type { JsonObject } from '../contracts/json.js';
import { openAiErrorBody, toSwitchyardError, type SwitchyardError } from '../core/errors.js';
import { events, publish } from '../core/events.js';
import { drainUpload } from './body.js';
import type { ErrorStyle, RequestContext } from './context.js';
import { extend } from '../core/objects.js';

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
  // The upstream's rate-limit and request-id headers (#16), under the gateway's own.
  const headers: OutgoingHttpHeaders = extend(ctx.upstreamHeaders ?? {}, {
    'content-type': contentType,
    'content-length': length,
    'x-request-id': ctx.requestId,
  });
  if (ctx.attempts.length > 0) {
    headers[ROUTE_HEADER] = ctx.pathTaken();
    const degraded = ctx.degraded();
    if (degraded !== undefined) headers[DEGRADED_HEADER] = degraded;
  }
  if (ctx.release !== undefined && ctx.release !== 'default') headers[RELEASE_HEADER] = ctx.release;
  return headers;
}

/** Sends a JSON answer; `body` may be the exact bytes to forward. */
export function sendJson(
  ctx: RequestContext,
  status: number,
  body: JsonObject | Buffer,
  extra?: OutgoingHttpHeaders,
): void {
  if (ctx.res.headersSent || ctx.res.destroyed) return;
  const raw = Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
  const headers = baseHeaders(ctx, 'application/json', raw.length);
  ctx.res.writeHead(status, extra === undefined ? headers : extend(headers, extra));
  ctx.res.end(raw);
}

/** Sends a non-JSON answer (the KServe binary tensor extension), with any extra headers. */
export function sendBytes(
  ctx: RequestContext,
  status: number,
  contentType: string,
  body: Buffer,
  extra: OutgoingHttpHeaders = {},
): void {
  if (ctx.res.headersSent || ctx.res.destroyed) return;
  ctx.res.writeHead(status, extend(baseHeaders(ctx, contentType, body.length), extra));
  ctx.res.end(body);
}

/**
 * Begins a server-sent events answer (200) for events Switchyard writes itself (Responses
 * streams): the route and release headers as in `sendJson`, no buffering by proxies.
 */
export function startEventStream(ctx: RequestContext): void {
  const headers: OutgoingHttpHeaders = {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
    'x-request-id': ctx.requestId,
  };
  if (ctx.attempts.length > 0) headers[ROUTE_HEADER] = ctx.pathTaken();
  if (ctx.release !== undefined && ctx.release !== 'default') headers[RELEASE_HEADER] = ctx.release;
  ctx.res.writeHead(200, headers);
}

/**
 * How a stream is written in a protocol other than the chat form its backend speaks (the
 * Anthropic Messages events, #16): each block of chat events becomes the bytes to send, the
 * whole end adds the closing events, and a failure after the first byte its error event.
 */
export interface StreamShape {
  readonly contentType: string;
  /** The first bytes, written with the headers (the first chunk is already in hand). */
  start?(): string;
  transform(chunk: Buffer): string;
  end(): string;
  error(err: SwitchyardError, requestId: string): string;
}

/**
 * Forwards a stream event by event with backpressure. Headers are sent only now, when the
 * first event is in hand; an upstream failure after that ends the stream with an SSE error
 * event in the route's shape (the status is already 200 and nothing is retried).
 */
export async function sendStream(
  ctx: RequestContext,
  stream: BackendStream,
  shape?: StreamShape,
): Promise<void> {
  const res = ctx.res;
  const signal = ctx.deadline!.signal;
  res.writeHead(
    200,
    extend(stream.headers ?? {}, {
      'content-type': shape?.contentType ?? stream.contentType,
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
      'x-request-id': ctx.requestId,
      [ROUTE_HEADER]: ctx.pathTaken(),
      ...(ctx.degraded() === undefined ? {} : { [DEGRADED_HEADER]: ctx.degraded() }),
      ...(ctx.release === undefined || ctx.release === 'default'
        ? {}
        : { [RELEASE_HEADER]: ctx.release }),
    }),
  );
  publish(events.firstToken, { model: ctx.model, ms: stream.firstEventMs });
  try {
    const head = shape?.start?.() ?? '';
    if (head !== '') res.write(head);
    for await (const chunk of stream.chunks) {
      const out = shape === undefined ? chunk : shape.transform(chunk);
      if (out.length > 0 && !res.write(out)) await once(res, 'drain', { signal });
    }
    res.end(shape?.end());
  } catch (err) {
    const e = toSwitchyardError(signal.aborted ? (signal.reason as unknown) : err);
    ctx.fail(e);
    if (shape === undefined && !stream.contentType.startsWith('text/event-stream')) {
      // A binary stream (speech audio, #16 part 4) has no error event: it is cut, never ended
      // cleanly, so the client cannot take the partial audio for the whole.
      ctx.req.socket.destroy();
    } else if (!res.destroyed && e.code !== 'SY_ERR_CLIENT_CLOSED') {
      res.end(
        shape === undefined
          ? `data: ${JSON.stringify(errorBody(e, ctx.requestId, 'openai'))}\n\n`
          : shape.error(e, ctx.requestId),
      );
    }
  } finally {
    // Settles and records the stream in the pipeline, from the usage its chunks carried.
    stream.cancel();
  }
}

/**
 * The one error body. `openai` style is `{error:{code,message,type,param,switchyard_code,
 * request_id}}`. An upstream's own error (a 400 naming `param: "temperature"`, a
 * `context_length_exceeded` code) keeps its message, type, code and param, so SDK checks on
 * them match through the gateway; Switchyard's code is always in `switchyard_code` (#16).
 */
export function errorBody(err: SwitchyardError, requestId: string, style: ErrorStyle): JsonObject {
  if (style === 'kserve') {
    // Open Inference Protocol: `error` is a string; the code and request id ride beside it.
    return { error: err.message, code: err.code, type: err.type, request_id: requestId };
  }
  if (style === 'anthropic') return anthropicErrorBody(err, requestId);
  return openAiErrorBody(err, requestId);
}

/** Registry codes a client retry cannot help while they last (the breaker's cooldown). */
const NO_CLIENT_RETRY: ReadonlySet<string> = new Set(['SY_ERR_CIRCUIT_OPEN']);

/**
 * Whether the answer tells SDKs not to retry (`x-should-retry: false`, which the OpenAI and
 * Anthropic SDKs honour over their own status rules): the error is not retryable, the gateway
 * already retried or fell back (ctx.attempts holds more than one attempt), or its retry budget
 * or breaker says the upstream is failing. Otherwise an SDK's default retries multiply the
 * gateway's own and trip the breaker for everyone (#16). A shed answer is left to Retry-After.
 */
export function clientRetryUseless(ctx: RequestContext, err: SwitchyardError): boolean {
  return (
    !err.retryable || err.noClientRetry || NO_CLIENT_RETRY.has(err.code) || ctx.attempts.length > 1
  );
}

/** Anthropic's error types (https://docs.anthropic.com/en/api/errors), by Switchyard's. */
const ANTHROPIC_TYPES: Readonly<Record<string, string>> = {
  invalid_request_error: 'invalid_request_error',
  authentication_error: 'authentication_error',
  permission_error: 'permission_error',
  not_found_error: 'not_found_error',
  rate_limit_error: 'rate_limit_error',
  timeout_error: 'timeout_error',
  overloaded_error: 'overloaded_error',
};

/** Anthropic's error shape, with Switchyard's code beside its type (#16). */
export function anthropicErrorBody(err: SwitchyardError, requestId: string): JsonObject {
  const type =
    err.status === 413 ? 'request_too_large' : (ANTHROPIC_TYPES[err.type] ?? 'api_error');
  return {
    type: 'error',
    error: { type, message: err.message, switchyard_code: err.code },
    request_id: requestId,
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
  const headers = extend(err.headers ?? {}, baseHeaders(ctx, 'application/json', raw.length));
  if (err.retryAfterS !== undefined) headers['retry-after'] = String(err.retryAfterS);
  if (clientRetryUseless(ctx, err)) headers['x-should-retry'] = 'false';
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
