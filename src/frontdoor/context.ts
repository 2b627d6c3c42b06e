import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { AttemptRecord, CallContext } from '../contracts/backend.js';
import type { JsonObject } from '../contracts/json.js';
import type { RecordReads } from '../contracts/inference-log.js';
import type { DataTag } from '../contracts/policy.js';
import type { Clock } from '../core/clock.js';
import { Deadline } from '../core/deadline.js';
import { syError, type SwitchyardError } from '../core/errors.js';
import { events, publish } from '../core/events.js';
import { requestId } from '../core/ids.js';
import { compactAttempts } from '../pipeline/model-pipeline.js';
import type { Principal } from './auth.js';
import { readAnyBody, readJsonBody } from './body.js';
import { joinConnection } from './connection.js';
import type { Runtime } from './runtime.js';
import type { TraceSpan } from '../contracts/trace.js';

export const DEADLINE_HEADER = 'x-switchyard-timeout-ms';
/** The trace id of a traced (sampled) request, on its answer (#15). */
export const TRACE_ID_HEADER = 'x-switchyard-trace-id';

/** Probes and scrapes: answered many times a minute, they would bury the traces that matter. */
const UNTRACED = new Set([
  '/metrics',
  '/healthz',
  '/readyz',
  '/v2/health/live',
  '/v2/health/ready',
]);

/**
 * How a route answers errors: OpenAI-style objects, KServe's `{"error": "..."}` strings, or
 * Anthropic's `{"type": "error", "error": {...}}` (#16).
 */
export type ErrorStyle = 'openai' | 'kserve' | 'anthropic';

/**
 * Everything about one request as it crosses the front door. Its life ends once, for whatever
 * reason (see `onEnd`); then it publishes one `requestDone` event, which logs and metrics consume.
 */
export class RequestContext {
  readonly requestId: string;
  readonly startedAt: number;
  readonly attempts: AttemptRecord[] = [];
  principal: Principal | undefined;
  model = '';
  trafficClass = 'interactive';
  stream = false;
  code: string | undefined;
  error: Error | undefined;
  private current: Deadline | undefined;
  /** Upstream headers the answer passes through: rate limits, request id (#16). */
  upstreamHeaders: Readonly<Record<string, string>> | undefined;
  /** Why the model that served was chosen, when not by default (`x-switchyard-release`). */
  release: string | undefined;
  /** Set by journey routes (#4): the route replaces the attempts path in the header and the log. */
  journey:
    | {
        readonly name: string;
        readonly compact: string;
        readonly route: object;
        readonly degraded: readonly string[];
        /** What its stages read (features, shards), for the inference record (#15). */
        readonly reads?: RecordReads;
      }
    | undefined;
  /** The data subject the request named (set by `withScope`). */
  user: string | undefined;
  /** The personal data the client declared its request carries (set by `withScope`). */
  data: DataTag | undefined;
  /** The redacted request and answer, when the inference log keeps this request's payload (#15). */
  payload: { readonly request?: unknown; readonly response?: unknown } | undefined;
  /** The request's span (#15): undefined when tracing is off. */
  readonly span: TraceSpan | undefined;
  private ended = false;
  private endFns: (() => void)[] | undefined;
  private leaveConnection: (() => void) | undefined;
  private continueSent = false;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    readonly route: string,
    readonly errorStyle: ErrorStyle,
    readonly params: Readonly<Record<string, string | undefined>>,
    readonly runtime: Runtime,
    private readonly clock: Clock,
  ) {
    this.startedAt = clock.now();
    this.requestId = requestId(req.headers['x-request-id']);
    const tracer = runtime.tracer;
    if (tracer !== undefined && !UNTRACED.has(route)) {
      const method = req.method ?? '';
      this.span = tracer.startRequest(`${method} ${route}`, req.headers, {
        'http.request.method': method,
        'http.route': route,
        'switchyard.request_id': this.requestId,
      });
      if (this.span.recording) res.setHeader(TRACE_ID_HEADER, this.span.traceId);
    }
    const end = (): void => this.end();
    res.once('close', end);
    const socket = req.socket as Socket | null;
    this.leaveConnection = socket === null ? undefined : joinConnection(socket, this, end);
    if (this.leaveConnection === undefined) queueMicrotask(end);
  }

  /** The request's deadline, once started. */
  get deadline(): Deadline | undefined {
    return this.current;
  }

  /** A deadline set after the client has gone is aborted at once: nothing starts for it. */
  set deadline(d: Deadline | undefined) {
    this.current = d;
    if (d !== undefined && this.ended && !this.res.writableFinished)
      d.abort(syError('SY_ERR_CLIENT_CLOSED'));
  }

  /**
   * Runs `fn` once when the request's life ends, whatever ends it: the response finished or
   * closed, the client reset or half-closed and went, or the connection died while this
   * response waited behind a pipelined one. Registered after the end, `fn` runs at once.
   * In-flight counts, admission tickets and the request log hang on this one signal (#13).
   */
  onEnd(fn: () => void): void {
    if (this.ended) fn();
    else (this.endFns ??= []).push(fn);
  }

  /**
   * Reads the JSON body under the configured limit. A client that sent `Expect: 100-continue`
   * is told to go on only now, after routing, auth and the head's checks passed.
   */
  readJson(anyContentType = false): Promise<JsonObject> {
    return readJsonBody(
      this.req,
      this.runtime.snapshot.config.server.limits.body_bytes,
      () => this.sendContinue(),
      anyContentType,
    );
  }

  /** Reads the body's bytes, whatever their media type, under the same limit. */
  readBytes(): Promise<Buffer> {
    return readAnyBody(this.req, this.runtime.snapshot.config.server.limits.body_bytes, () =>
      this.sendContinue(),
    );
  }

  private sendContinue(): void {
    if (!this.awaitsContinue()) return;
    this.continueSent = true;
    this.res.writeContinue();
  }

  /** The client sent `Expect: 100-continue` and was not told to go on: it holds its body back. */
  awaitsContinue(): boolean {
    return !this.continueSent && this.req.headers.expect?.toLowerCase() === '100-continue';
  }

  /** Starts the request's deadline from the client's header, clamped by config. */
  startDeadline(): CallContext {
    const limits = this.runtime.snapshot.config.server.deadline;
    const header = this.req.headers[DEADLINE_HEADER];
    let budget = limits.default_ms;
    if (header !== undefined) {
      const n = Number(header);
      if (typeof header !== 'string' || !/^\d{1,9}$/.test(header) || !Number.isFinite(n)) {
        throw syError(
          'SY_ERR_INVALID_REQUEST',
          `${DEADLINE_HEADER} must be a whole number of milliseconds`,
          {
            param: DEADLINE_HEADER,
          },
        );
      }
      budget = Math.min(limits.max_ms, Math.max(limits.min_ms, n));
    }
    // Time already spent reading the body counts against the budget.
    const spent = this.clock.now() - this.startedAt;
    const deadline = new Deadline(Math.max(1, budget - spent), this.clock);
    this.deadline = deadline;
    return {
      requestId: this.requestId,
      tenant: this.principal?.tenant ?? '',
      trafficClass: this.trafficClass,
      signal: deadline.signal,
      deadlineAt: deadline.at,
      attempts: this.attempts,
    };
  }

  /** The route taken, compact: `chat-large#1:UPSTREAM_ERROR>chat-small#1:ok` (see compactAttempts). */
  pathTaken(): string {
    if (this.journey !== undefined) return this.journey.compact;
    return compactAttempts(this.attempts);
  }

  /** Why the answer is degraded (#17), when one of its attempts says so. */
  degraded(): string | undefined {
    for (const a of this.attempts)
      if (a.degraded !== undefined && a.outcome === 'ok') return a.degraded;
    return undefined;
  }

  fail(err: SwitchyardError): void {
    this.code = err.code;
    if (err.code === 'SY_ERR_INTERNAL') this.error = err.cause instanceof Error ? err.cause : err;
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    this.finish();
    const fns = this.endFns;
    this.endFns = undefined;
    if (fns !== undefined) for (const fn of fns) fn();
    this.leaveConnection?.();
  }

  private finish(): void {
    const gone = !this.res.writableFinished;
    if (gone) {
      this.deadline?.abort(syError('SY_ERR_CLIENT_CLOSED'));
      this.code ??= 'SY_ERR_CLIENT_CLOSED';
    }
    this.deadline?.dispose();
    const status = gone && !this.res.headersSent ? 499 : this.res.statusCode;
    const span = this.span;
    if (span !== undefined) this.endSpan(span, status);
    publish(events.requestDone, {
      requestId: this.requestId,
      method: this.req.method ?? '',
      route: this.route,
      model: this.model,
      tenant: this.principal?.tenant ?? '',
      keyFingerprint: this.principal?.fingerprint ?? '',
      trafficClass: this.trafficClass,
      status,
      code: this.code,
      durationMs: this.clock.now() - this.startedAt,
      stream: this.stream,
      path: this.pathTaken(),
      ...(this.journey === undefined
        ? {}
        : {
            journey: this.journey.name,
            journeyRoute: this.journey.route,
            degraded: this.journey.degraded,
            ...(this.journey.reads === undefined ? {} : { reads: this.journey.reads }),
          }),
      ...(this.error === undefined ? {} : { error: this.error }),
      ...(this.user === undefined ? {} : { user: this.user }),
      ...(this.payload === undefined ? {} : { payload: this.payload }),
      ...(span?.recording === true ? { traceId: span.traceId } : {}),
    });
  }

  private endSpan(span: TraceSpan, status: number): void {
    span.setAll({
      'http.response.status_code': status,
      'switchyard.tenant': this.principal?.tenant,
      'switchyard.class': this.trafficClass,
      'switchyard.model': this.model === '' ? undefined : this.model,
      'switchyard.route_code': this.pathTaken(),
      'switchyard.journey': this.journey?.name,
    });
    if (this.code !== undefined) span.fail(this.code, this.error?.message);
    span.end();
  }
}
