import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { request } from '../../core/undici.js';
import type { CallContext } from '../../contracts/backend.js';
import type { JsonObject } from '../../contracts/json.js';
import type { Clock } from '../../core/clock.js';
import { abortReason } from '../../core/deadline.js';
import {
  syError,
  SwitchyardError,
  type ErrorCode,
  type UpstreamErrorFields,
} from '../../core/errors.js';
import { isJsonObject, parseJson } from '../../core/safe-json.js';
import { RequestAbortController } from '../../core/abort.js';

/** Header carrying the caller's remaining budget, in and out of Switchyard. */
export const TIMEOUT_HEADER = 'x-switchyard-timeout-ms';
/** A stream's longest wait between events, in and out of Switchyard (#16). */
export const STREAM_IDLE_HEADER = 'x-switchyard-stream-idle-ms';
/** A stream's longest life, in and out of Switchyard (#16). */
export const STREAM_MAX_HEADER = 'x-switchyard-stream-max-ms';

export interface HttpUpstreamOptions {
  /** Model name, for messages. */
  readonly name: string;
  /** Base URL, such as `http://127.0.0.1:9100/v1`. */
  readonly baseUrl: string;
  readonly dispatcher: Dispatcher;
  /** Static headers (content type, auth, configured extras), lower-case names. */
  readonly headers: Readonly<Record<string, string>>;
  /** Cap on the whole answer, headers to last byte. */
  readonly timeoutMs: number;
  /** Cap on the wait for response headers (and, for streams, the first event). */
  readonly firstByteTimeoutMs: number;
  readonly maxResponseBytes: number;
  readonly clock: Clock;
  /** Per-call additions (a parent gateway's tenant assertion, #17). */
  readonly hooks?: ExchangeHooks;
}

/** What a backend may add to every exchange of its own (the gateway tree's backend, #17). */
export interface ExchangeHooks {
  /** Headers of this call, over the static ones. */
  headers(ctx: CallContext): Readonly<Record<string, string>>;
  /** Sees every answer's status and headers before its body is read. */
  observe?(status: number, headers: Exchange['headers'], ctx: CallContext): void;
  /** Maps a non-2xx answer to an error (reads or discards the body); the default mapping else. */
  statusError?(ex: Exchange): Promise<SwitchyardError>;
}

/** An upstream response whose body is still to be read, with the timers that guard it. */
export interface Exchange {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Dispatcher.ResponseData['body'];
  /** Fires on the caller's abort or the upstream time cap. */
  readonly signal: AbortSignal;
  /** Clears the timers; call once the body is consumed or abandoned. */
  done(): void;
  /**
   * Abandons the body and clears the timers. (A destroyed undici body emits an AbortError: it
   * is swallowed here, or it would crash the process as an unhandled 'error' event.)
   */
  discard(): void;
  /** Aborts the exchange with this reason (used for caps the caller enforces). */
  abort(reason: SwitchyardError): void;
  /** Turns an error met while reading the body into the right SwitchyardError. */
  failure(err: unknown, code: ErrorCode): SwitchyardError;
}

/**
 * One HTTP exchange with an upstream on an undici pool (never global fetch). The caller's
 * AbortSignal and the upstream's time cap both abort it; the remaining budget is forwarded in
 * `x-switchyard-timeout-ms`. Connection-level failures are mapped to registry codes here, once,
 * for every HTTP backend.
 */
export async function exchange(
  opts: HttpUpstreamOptions,
  method: 'GET' | 'POST',
  path: string,
  body: string | StreamedBody | undefined,
  ctx: CallContext,
): Promise<Exchange> {
  if (ctx.signal.aborted) throw abortReason(ctx.signal);
  const remaining = Math.max(1, Math.floor(ctx.deadlineAt - opts.clock.now()));
  // A stream (#16) is bounded by the deadline until its first event (the caller's signal), then
  // by its own idle and duration limits; the model's timeout_ms is for whole unary answers.
  const limits = ctx.stream;
  const capMs = limits === undefined ? Math.min(opts.timeoutMs, remaining) : limits.maxMs;
  const firstByte = firstByteWait(opts, ctx, Math.min(capMs, remaining));
  const controller = new RequestAbortController();
  const onCallerAbort = (): void => controller.abort(abortReason(ctx.signal));
  ctx.signal.addEventListener('abort', onCallerAbort, { once: true });
  // The error is built only when the timer fires: an Error's stack trace costs ~10 µs per request.
  let timer: NodeJS.Timeout | undefined =
    limits !== undefined
      ? setTimeout(
          () => controller.abort(syError('SY_ERR_STREAM_MAX_DURATION', String(limits.maxMs))),
          limits.maxMs,
        )
      : remaining > opts.timeoutMs
        ? setTimeout(
            () =>
              controller.abort(
                syError('SY_ERR_UPSTREAM_TIMEOUT', `${opts.name} took over ${opts.timeoutMs} ms`),
              ),
            capMs,
          )
        : undefined;
  // The wait for the answer's head is timed here, on a Node timer, and undici is given no timers
  // of its own (headersTimeout and bodyTimeout 0 below). undici times waits of 1 s and more on a
  // coarse clock that may fire up to half a second early, and keeps every such timer in a list
  // until its next sweep, up to a second after the request ended: its two timers per request
  // outlived the young generation, and a proxied request promoted ~280 bytes to the old one
  // instead of ~95 (--trace-gc-nvp; bench/README.md, bench:overhead's memory notes). The body is
  // bounded by the cap's timer above, or the caller's deadline. A share of the deadline (see firstByteWait) must say it came from the share; a wait
  // that ends with the deadline or the cap is left to them, so the error names what ran out.
  let firstByteTimer: NodeJS.Timeout | undefined =
    firstByte.shared || firstByte.ms < Math.min(capMs, remaining)
      ? setTimeout(
          () =>
            controller.abort(
              firstByte.shared
                ? attemptTimeout(opts.name, firstByte.ms)
                : syError(
                    'SY_ERR_UPSTREAM_TIMEOUT',
                    `${opts.name} sent no answer head within ${firstByte.ms} ms`,
                  ),
            ),
          firstByte.ms,
        )
      : undefined;
  const headersArrived = (): void => {
    if (firstByteTimer !== undefined) clearTimeout(firstByteTimer);
    firstByteTimer = undefined;
  };
  const done = (): void => {
    headersArrived();
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
    ctx.signal.removeEventListener('abort', onCallerAbort);
  };
  const failure = (err: unknown, code: ErrorCode): SwitchyardError => {
    if (controller.signal.aborted) return abortReason(controller.signal);
    if (err instanceof SwitchyardError) return err;
    return mapTransportError(err, opts, code);
  };
  const streamed = typeof body === 'object' ? body : undefined;
  // Object.assign, not a literal that spreads `opts.headers` first: see core/objects.ts.
  const headers: Record<string, string> = Object.assign(
    {},
    opts.headers,
    streamed === undefined ? undefined : { 'content-type': streamed.contentType },
  );
  Object.assign(headers, opts.hooks?.headers(ctx), {
    [TIMEOUT_HEADER]: String(Math.min(capMs, remaining)),
    'x-request-id': ctx.requestId,
  });
  // W3C trace context (#15, #17): when this node traces, the attempt's span is the upstream's
  // parent (a model server, or the next gateway tier, which continues the trace); otherwise the
  // caller's traceparent passes through untouched.
  if (ctx.span !== undefined) Object.assign(headers, ctx.span.headers());
  else if (ctx.hop?.traceparent !== undefined) headers['traceparent'] = ctx.hop.traceparent;
  if (limits !== undefined) {
    // An upstream gateway bounds the stream the same way.
    headers[STREAM_IDLE_HEADER] = String(limits.idleMs);
    headers[STREAM_MAX_HEADER] = String(limits.maxMs);
  }
  try {
    const res = await request(opts.dispatcher, {
      path,
      method,
      headers,
      body:
        typeof body === 'object' ? Readable.from(body.body, { objectMode: false }) : (body ?? null),
      signal: controller.signal,
      headersTimeout: 0,
      bodyTimeout: 0,
    });
    headersArrived();
    const ex: Exchange = {
      status: res.statusCode,
      headers: res.headers,
      body: res.body,
      signal: controller.signal,
      done,
      failure,
      discard: () => {
        res.body.on('error', () => undefined);
        res.body.destroy();
        done();
      },
      abort: (reason) => controller.abort(reason),
    };
    const hooks = opts.hooks;
    if (hooks !== undefined) {
      hooks.observe?.(ex.status, ex.headers, ctx);
      if ((ex.status < 200 || ex.status > 299) && hooks.statusError !== undefined)
        throw await hooks.statusError(ex);
    }
    return ex;
  } catch (err) {
    done();
    throw failure(err, 'SY_ERR_UPSTREAM_UNREACHABLE');
  }
}

/** A request body sent as it is read (a multipart upload, #16 part 4), of its own media type. */
export interface StreamedBody {
  readonly contentType: string;
  readonly body: AsyncIterable<Buffer>;
}

/** How long an attempt may wait for its first byte, and whether a fallback's share binds it. */
export interface FirstByteWait {
  readonly ms: number;
  /**
   * True when the share of the deadline the fallback chain left this attempt (`ctx.firstByteBy`)
   * is shorter than the model's own `first_byte_timeout_ms`: its expiry is SY_ERR_ATTEMPT_TIMEOUT,
   * a cut made for the caller's time, not a verdict on the upstream's own caps.
   */
  readonly shared: boolean;
}

/**
 * The first-byte wait of an attempt: the model's `first_byte_timeout_ms` within `capMs`, and
 * within `ctx.firstByteBy` when a fallback follows this model (#13: a black-holed upstream
 * must leave its fallback time to answer).
 */
export function firstByteWait(
  opts: Pick<HttpUpstreamOptions, 'firstByteTimeoutMs' | 'clock'>,
  ctx: CallContext,
  capMs: number,
): FirstByteWait {
  const own = Math.min(opts.firstByteTimeoutMs, capMs);
  if (ctx.firstByteBy === undefined) return { ms: own, shared: false };
  const share = Math.max(1, Math.ceil(ctx.firstByteBy - opts.clock.now()));
  return share < own ? { ms: share, shared: true } : { ms: own, shared: false };
}

/** The error of an attempt cut at its share of the deadline, so the fallback can answer. */
export function attemptTimeout(name: string, ms: number): SwitchyardError {
  return syError(
    'SY_ERR_ATTEMPT_TIMEOUT',
    `${name} sent no first byte within ${ms} ms, its share of the deadline`,
  );
}

/** Refuses a stream answer that is not server-sent events (the body is discarded). */
export function expectEventStream(ex: Exchange, name: string): void {
  const contentType = String(ex.headers['content-type'] ?? '');
  if (contentType.startsWith('text/event-stream')) return;
  ex.discard();
  throw syError(
    'SY_ERR_UPSTREAM_BAD_RESPONSE',
    `${name} answered ${contentType || 'no content type'} to a stream request`,
  );
}

/**
 * The next block of a stream under way, waited for at most `idleMs` (#16; none if undefined):
 * past it the exchange is aborted with `SY_ERR_STREAM_IDLE_TIMEOUT`. Timed only while waiting on
 * the upstream, never while the client drains what it has. Any failure comes out as the
 * exchange's own (`SY_ERR_UPSTREAM_STREAM_INTERRUPTED` unless it says better).
 */
export async function nextWithin(
  ex: Exchange,
  name: string,
  idleMs: number | undefined,
  next: () => Promise<Buffer | undefined>,
): Promise<Buffer | undefined> {
  const timer =
    idleMs === undefined
      ? undefined
      : setTimeout(
          () =>
            ex.abort(
              syError('SY_ERR_STREAM_IDLE_TIMEOUT', `${name} sent nothing for ${idleMs} ms`),
            ),
          idleMs,
        );
  try {
    return await next();
  } catch (err) {
    throw ex.failure(err, 'SY_ERR_UPSTREAM_STREAM_INTERRUPTED');
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

/**
 * Yields a reader's blocks, the first already in hand, each wait on the upstream bounded by the
 * stream's idle limit (`nextWithin`); `took` hears of each block once the consumer has it. The
 * reader is cancelled however the consumer stops.
 */
export async function* relay(
  reader: { next(): Promise<Buffer | undefined>; cancel(): void },
  first: Buffer,
  ex: Exchange,
  name: string,
  idleMs: number | undefined,
  took: (block: Buffer) => void = () => undefined,
): AsyncGenerator<Buffer> {
  try {
    yield first;
    took(first);
    for (;;) {
      const block = await nextWithin(ex, name, idleMs, () => reader.next());
      if (block === undefined) return;
      yield block;
      took(block);
    }
  } finally {
    reader.cancel();
  }
}

/**
 * A stream's first event, within the first-byte wait (the model's own, or the share a fallback
 * chain left it). Nothing is committed before it: until then a retry or fallback is safe.
 */
export async function firstEvent(
  reader: { next(): Promise<Buffer | undefined>; cancel(): void },
  ex: Exchange,
  opts: Pick<HttpUpstreamOptions, 'firstByteTimeoutMs' | 'clock'>,
  ctx: CallContext,
  name: string,
): Promise<Buffer> {
  const wait = firstByteWait(opts, ctx, Number.POSITIVE_INFINITY);
  const timer = setTimeout(
    () =>
      ex.abort(
        wait.shared
          ? attemptTimeout(name, wait.ms)
          : syError('SY_ERR_UPSTREAM_TIMEOUT', `${name} sent no event within ${wait.ms} ms`),
      ),
    wait.ms,
  );
  let first: Buffer | undefined;
  try {
    first = await reader.next();
  } catch (err) {
    reader.cancel();
    throw ex.failure(err, 'SY_ERR_UPSTREAM_BAD_RESPONSE');
  } finally {
    clearTimeout(timer);
  }
  if (first === undefined) {
    reader.cancel();
    throw syError('SY_ERR_UPSTREAM_BAD_RESPONSE', `${name} ended the stream before any event`);
  }
  return first;
}

const TIMEOUT_CODES = new Set([
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'ETIMEDOUT',
]);

function mapTransportError(
  err: unknown,
  opts: HttpUpstreamOptions,
  code: ErrorCode,
): SwitchyardError {
  const e = err as { code?: string; message?: string };
  const what = e.code ?? e.message ?? String(err);
  if (e.code !== undefined && TIMEOUT_CODES.has(e.code)) {
    return syError('SY_ERR_UPSTREAM_TIMEOUT', `${opts.name}: ${what}`, { cause: err });
  }
  return syError(code, `${opts.name}: ${what}`, { cause: err });
}

/** Reads a whole body under a byte cap. Throws SY_ERR_UPSTREAM_RESPONSE_TOO_LARGE past it. */
export function readCapped(ex: Exchange, cap: number): Promise<Buffer> {
  const declared = Number(ex.headers['content-length']);
  if (Number.isFinite(declared) && declared > cap) {
    ex.discard();
    return Promise.reject(syError('SY_ERR_UPSTREAM_RESPONSE_TOO_LARGE', String(cap)));
  }
  // The body's events, not `for await`: an async iterator costs a generator, and a promise and a
  // microtask per chunk, on every answer (~1.2 KB of a proxied request's allocation).
  const body = ex.body;
  // Destroyed before this was called (the deadline fired between the answer's head and here):
  // its events were emitted already.
  if (body.destroyed)
    return Promise.reject(
      ex.failure(body.errored ?? prematureClose(), 'SY_ERR_UPSTREAM_BAD_RESPONSE'),
    );
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stop = (): void => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      body.off('close', onClose);
    };
    const fail = (err: unknown): void => {
      stop();
      reject(ex.failure(err, 'SY_ERR_UPSTREAM_BAD_RESPONSE'));
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size <= cap) {
        chunks.push(chunk);
        return;
      }
      stop();
      ex.discard();
      reject(
        ex.failure(
          syError('SY_ERR_UPSTREAM_RESPONSE_TOO_LARGE', String(cap)),
          'SY_ERR_UPSTREAM_BAD_RESPONSE',
        ),
      );
    };
    const onEnd = (): void => {
      stop();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (err: unknown): void => fail(err);
    // Closed with neither an end nor an error: what `for await` calls a premature close.
    const onClose = (): void => fail(prematureClose());
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
    body.on('close', onClose);
  });
}

function prematureClose(): Error {
  return Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
}

/** Parses an upstream JSON answer; anything but a JSON object is a bad response. */
export function parseUpstreamJson(raw: Buffer, name: string): JsonObject {
  let value;
  try {
    value = parseJson(raw.toString('utf8'));
  } catch (err) {
    throw syError('SY_ERR_UPSTREAM_BAD_RESPONSE', `${name}: ${(err as Error).message}`);
  }
  if (!isJsonObject(value)) {
    throw syError('SY_ERR_UPSTREAM_BAD_RESPONSE', `${name}: the answer is not a JSON object`);
  }
  return value;
}

const ERROR_BODY_CAP = 65_536;

/**
 * Maps a non-2xx upstream answer to a registry error, keeping the upstream's own message
 * (OpenAI `{error:{message}}` and KServe `{error: "..."}` shapes alike). For a 4xx that is the
 * caller's to fix (400, 409, 413, 422, 429), the upstream's `type`, `code`, `param` and message
 * are kept for the client's answer (#16: `e.param === 'temperature'` must match through the
 * gateway); a 401, 403 or 404 is about the gateway's own key, URL or model name, not the
 * client's request, so only its message is quoted. Rate-limit and request-id headers ride along.
 */
export async function upstreamStatusError(ex: Exchange, name: string): Promise<SwitchyardError> {
  let fields: ParsedErrorBody | undefined;
  let message = '';
  try {
    const raw = await readCapped(ex, ERROR_BODY_CAP);
    fields = errorFields(raw);
    message = fields.message ?? '';
  } catch {
    // The status alone says enough; a broken error body must not hide it.
  } finally {
    ex.done();
  }
  const detail = `${name} answered ${ex.status}${message === '' ? '' : `: ${message}`}`;
  const retryAfterS = parseRetryAfter(ex.headers['retry-after']);
  const headers = passThroughHeaders(ex.headers);
  const s = ex.status;
  const callers = s === 400 || s === 409 || s === 413 || s === 422 || s === 429;
  const extra = {
    ...(retryAfterS === undefined ? {} : { retryAfterS }),
    ...(headers === undefined ? {} : { headers }),
    ...(callers && fields !== undefined && fields.structured ? { upstream: fields.kept } : {}),
  };
  if (s === 429) return syError('SY_ERR_UPSTREAM_RATE_LIMITED', detail, extra);
  if (callers) return syError('SY_ERR_UPSTREAM_REJECTED', detail, extra);
  if (s === 408 || s === 504) return syError('SY_ERR_UPSTREAM_TIMEOUT', detail, extra);
  if (s >= 500 && s !== 501) return syError('SY_ERR_UPSTREAM_ERROR', detail, extra);
  return syError('SY_ERR_UPSTREAM_REFUSED', detail, extra);
}

/** Upstream response headers a client of the gateway sees too (#16). */
const PASS_EXACT = new Set(['retry-after', 'retry-after-ms', 'openai-processing-ms']);
const PASS_PREFIX = 'x-ratelimit-';
/**
 * The upstream's own request id, renamed: `x-request-id` stays the gateway's (the id of its log
 * line and of the error body's `request_id`), and the upstream's rides beside it.
 */
export const UPSTREAM_REQUEST_ID_HEADER = 'x-upstream-request-id';

/**
 * The rate-limit, retry and request-id headers of an upstream answer that pass through to the
 * client (OpenAI's `x-ratelimit-*`, `retry-after`, `retry-after-ms`, `openai-processing-ms`);
 * undefined when there are none.
 */
export function passThroughHeaders(
  headers: Readonly<Record<string, string | string[] | undefined>>,
): Record<string, string> | undefined {
  let out: Record<string, string> | undefined;
  for (const [k, v] of Object.entries(headers)) {
    if (typeof v !== 'string') continue;
    if (k === 'x-request-id') (out ??= {})[UPSTREAM_REQUEST_ID_HEADER] = v;
    else if (PASS_EXACT.has(k) || k.startsWith(PASS_PREFIX)) (out ??= {})[k] = v;
  }
  return out;
}

interface ParsedErrorBody {
  readonly message: string | undefined;
  /** True when the body held an error object whose fields can be kept. */
  readonly structured: boolean;
  readonly kept: UpstreamErrorFields;
}

function errorFields(raw: Buffer): ParsedErrorBody {
  const text = raw.toString('utf8');
  try {
    const v = JSON.parse(text.slice(0, ERROR_BODY_CAP)) as unknown;
    if (isJsonObject(v)) {
      const err = v['error'];
      if (typeof err === 'string') return { message: err, structured: false, kept: {} };
      if (isJsonObject(err)) {
        const message = typeof err['message'] === 'string' ? err['message'] : undefined;
        const type = err['type'];
        const code = err['code'];
        const param = err['param'];
        const kept: UpstreamErrorFields = {
          ...(message === undefined ? {} : { message }),
          ...(typeof type === 'string' || type === null ? { type } : {}),
          ...(typeof code === 'string' || typeof code === 'number' || code === null
            ? { code }
            : {}),
          ...(typeof param === 'string' || param === null ? { param } : {}),
        };
        return { message, structured: true, kept };
      }
      if (typeof v['message'] === 'string')
        return { message: v['message'], structured: false, kept: {} };
    }
  } catch {
    // Not JSON: quote the start of the text.
  }
  return { message: text.slice(0, 300).trim(), structured: false, kept: {} };
}

export function parseRetryAfter(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string') return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.ceil(seconds);
  const date = Date.parse(value);
  if (Number.isFinite(date)) return Math.max(0, Math.ceil((date - Date.now()) / 1000));
  return undefined;
}

/** Joins a base URL's path and a sub-path: `/v1` + `/chat/completions`. */
export function joinPath(basePath: string, sub: string): string {
  return basePath.replace(/\/+$/, '') + sub;
}
