import type {
  Backend,
  BackendDescription,
  BackendHealth,
  BackendRequest,
  BackendResponse,
  BackendCall,
  BackendStream,
  CallContext,
  Interceptor,
  Operation,
  Tier,
} from '../../contracts/backend.js';
import type { JsonObject } from '../../contracts/json.js';
import {
  ERROR_REGISTRY,
  syError,
  toSwitchyardError,
  type ErrorCode,
  type SwitchyardError,
} from '../../core/errors.js';
import { isJsonObject } from '../../core/safe-json.js';
import { ASSERTION_HEADER, signAssertion } from '../../core/tenant-assertion.js';
import {
  parseRetryAfter,
  readCapped,
  type Exchange,
  type ExchangeHooks,
  type HttpUpstreamOptions,
} from './http-upstream.js';
import type { Dispatcher } from 'undici';
import { compose } from '../interceptors/compose.js';
import { refuseRetry, type RetryBudget } from '../interceptors/retry.js';
import { events, publish } from '../../core/events.js';
import { KServeBackend } from './kserve.js';
import { OpenAiBackend } from './openai.js';
import { extend } from '../../core/objects.js';

/** Headers a parent gateway answers with that this node folds into its own answer. */
export const REMOTE_ROUTE_HEADER = 'x-switchyard-route';
export const DEGRADED_HEADER = 'x-switchyard-degraded';

/** One replica of the parent gateway: its root URL, its connections and what guards it. */
export interface ParentEndpoint {
  readonly baseUrl: string;
  readonly dispatcher: Dispatcher;
  /** Wraps every call to this replica (its own breaker, when the parent has several). */
  readonly guard?: Interceptor;
}

export interface SwitchyardBackendOptions extends Omit<
  HttpUpstreamOptions,
  'headers' | 'hooks' | 'baseUrl' | 'dispatcher'
> {
  /** The parent's replicas (at least one): calls are spread over them and fail over between them. */
  readonly endpoints: readonly ParentEndpoint[];
  /** The model name on the parent gateway. */
  readonly upstreamModel: string;
  readonly extraHeaders: Readonly<Record<string, string>>;
  readonly tier: Tier;
  readonly operations: readonly Operation[];
  /** The service key this node signs tenant assertions with (`auth.service_keys` on the parent). */
  readonly serviceKey: { readonly id: string; readonly secret: string };
  /** Lifetime of an assertion past the call's deadline (clock skew between nodes). */
  readonly assertionTtlMs: number;
  /** Wall-clock epoch ms (assertion expiry is wall time: it is read on another machine). */
  readonly wall: () => number;
  /**
   * The model's retry budget (the one its retry interceptor spends): moving a call to another
   * replica after one that was asked and failed is a retry, and is paid from it.
   */
  readonly budget?: Pick<RetryBudget, 'allowsRetry' | 'record'> | undefined;
}

/**
 * The parent's verdicts on the tenant: they stand for the whole tree. A fallback must never serve
 * a call the parent refused for the tenant's quota, consent or residency (that would bypass them).
 */
const TENANT_VERDICTS: ReadonlySet<string> = new Set<ErrorCode>([
  'SY_ERR_RATE_LIMITED',
  'SY_ERR_QUOTA_EXCEEDED',
]);

/** A parent that answered these had already retried and failed over: nothing to retry here. */
const PARENT_EXHAUSTED: ReadonlySet<string> = new Set<ErrorCode>([
  'SY_ERR_UPSTREAM_ERROR',
  'SY_ERR_UPSTREAM_UNREACHABLE',
  'SY_ERR_UPSTREAM_TIMEOUT',
  'SY_ERR_UPSTREAM_BAD_RESPONSE',
  'SY_ERR_CIRCUIT_OPEN',
]);

/**
 * What moves a call from one replica of the parent to the next: the replica did not answer
 * (refused or dropped the connection before its answer), failed as a server (5xx without a
 * gateway code), shed the call, or its breaker is open. Never the tenant's verdicts, a parent
 * whose own upstreams failed (the other replica shares them), or a timeout (the time is gone).
 */
const FAILOVER: ReadonlySet<string> = new Set<ErrorCode>([
  'SY_ERR_UPSTREAM_UNREACHABLE',
  'SY_ERR_UPSTREAM_ERROR',
  'SY_ERR_PARENT_SHED',
  'SY_ERR_CIRCUIT_OPEN',
]);

/**
 * Failovers that follow a replica that took the call and failed as a server (a 5xx without a
 * gateway code): the parent tier may be failing as a whole, and each such move is one more call
 * into it, so it is a retry and needs the retry budget (Envoy counts a retry to another host the
 * same way). A move past a replica that is gone (refused or reset the connection), not asked (its
 * breaker open, its Retry-After) or that shed the call is free: it adds no work to a failing
 * tier, and it is what replicas are for. Paying for those too exhausted the budget within a few
 * calls when one of two central replicas was killed, and the errors then opened the model's own
 * breaker for the live replica as well (tree.test.ts).
 */
const FAILOVER_PAID: ReadonlySet<string> = new Set<ErrorCode>(['SY_ERR_UPSTREAM_ERROR']);

/** One replica of the parent, as this backend uses it. */
interface Replica {
  readonly url: string;
  readonly call: BackendCall;
  readonly kserve: KServeBackend;
  /** Monotonic ms until which this replica asked not to be called (its Retry-After). */
  holdUntil: number;
}

/**
 * Another Switchyard gateway as a model backend (#17): a node of the tree escalates a model call
 * to its parent over the parent's own OpenAI and KServe routes. The wire work is the OpenAI and
 * KServe backends' (one HTTP exchange, one SSE reader); this class adds what travels between
 * gateways:
 *
 * - the remaining deadline (`x-switchyard-timeout-ms`, from the shared exchange), the request id,
 *   the traffic class and the trace context (`traceparent`);
 * - the tenant, as an HMAC-signed assertion made with a service key, so the parent enforces the
 *   tenant's quotas, consent and residency as its own;
 * - the caller's declared data headers, so the parent checks residency again;
 * - back: the parent's route (folded into this node's) and whether its answer was degraded.
 *
 * Shedding by the parent (503, or 429 with Retry-After, other than the tenant's own quota) is
 * SY_ERR_PARENT_SHED: not retried, not a breaker failure, and calls wait out its Retry-After
 * without reaching the parent. A parent whose own upstreams failed answers
 * SY_ERR_NO_HEALTHY_BACKEND here (it retried already). Its other errors keep their codes.
 *
 * A parent with several replicas (`replicas`): calls go round the replicas, each behind its own
 * guard (breaker), and a call a replica could not take (FAILOVER) moves to the next one within
 * the same deadline, so losing one replica costs its callers nothing but the failed attempt.
 */
export class SwitchyardBackend implements Backend {
  readonly name: string;
  private readonly replicas: readonly Replica[];
  /** What the parent answered for each call in flight (the exchange sees headers first). */
  private readonly seen = new WeakMap<CallContext, { route?: string; degraded?: string }>();
  private turn = 0;

  constructor(private readonly opts: SwitchyardBackendOptions) {
    this.name = opts.name;
    if (opts.endpoints.length === 0) throw new Error(`${opts.name}: no parent endpoint`);
    this.replicas = opts.endpoints.map((ep) => this.replica(ep));
  }

  private replica(ep: ParentEndpoint): Replica {
    const hooks: ExchangeHooks = {
      headers: (ctx) => this.hopHeaders(ctx),
      observe: (_status, headers, ctx) => {
        const route = one(headers[REMOTE_ROUTE_HEADER]);
        const degraded = one(headers[DEGRADED_HEADER]);
        if (route !== undefined || degraded !== undefined)
          this.seen.set(ctx, {
            ...(route === undefined ? {} : { route }),
            ...(degraded === undefined ? {} : { degraded }),
          });
      },
      statusError: (ex) => this.statusError(ex, replica),
    };
    const base = new URL(ep.baseUrl);
    const root = base.origin + base.pathname.replace(/\/+$/, '');
    const { endpoints: _all, ...rest } = this.opts;
    const common = extend(rest, { dispatcher: ep.dispatcher, apiKey: undefined, hooks });
    const openai = new OpenAiBackend(
      extend(common, {
        baseUrl: `${root}/v1`,
        operations: this.opts.operations.filter((o) => o !== 'infer'),
      }),
    );
    const kserve = new KServeBackend(extend(common, { baseUrl: root }));
    const wire: BackendCall = {
      call: (request, ctx) =>
        request.op === 'infer' ? kserve.call(request, ctx) : openai.call(request, ctx),
      stream: (request, ctx) => openai.stream(request, ctx),
    };
    const replica: Replica = {
      url: ep.baseUrl,
      call: ep.guard === undefined ? wire : compose(wire, ep.guard),
      kserve,
      holdUntil: 0,
    };
    return replica;
  }

  describe(): BackendDescription {
    return {
      name: this.name,
      kind: 'switchyard',
      tier: this.opts.tier,
      upstream: this.replicas.map((r) => r.url).join(','),
      operations: this.opts.operations,
    };
  }

  health(): BackendHealth {
    const now = this.opts.clock.now();
    return this.replicas.every((r) => now < r.holdUntil)
      ? { state: 'degraded', detail: 'the parent asked to wait (Retry-After)' }
      : { state: 'healthy' };
  }

  async call(request: BackendRequest, ctx: CallContext): Promise<BackendResponse> {
    // A parent gateway takes chat, embeddings and KServe calls; Responses are translated here.
    if (request.op === 'responses' || !this.opts.operations.includes(request.op))
      throw syError('SY_ERR_OPERATION_UNSUPPORTED', `${this.name} does not serve ${request.op}`);
    return this.folded(ctx, await this.across(ctx, (r) => r.call.call(request, ctx)));
  }

  async stream(request: BackendRequest, ctx: CallContext): Promise<BackendStream> {
    // A stream resolves with its first event: a failover never follows a byte sent (DESIGN).
    return this.folded(ctx, await this.across(ctx, (r) => r.call.stream(request, ctx)));
  }

  /** The parent's route and degraded mark, taken into its answer. */
  private folded<T extends BackendResponse | BackendStream>(ctx: CallContext, res: T): T {
    const seen = this.seen.get(ctx);
    this.seen.delete(ctx);
    return seen === undefined ? res : (extend(res, seen) as unknown as T);
  }

  metadata(version: string | undefined, ctx: CallContext): Promise<JsonObject> {
    return this.across(ctx, (r) => r.kserve.metadata(version, ctx));
  }

  ready(version: string | undefined, ctx: CallContext): Promise<boolean> {
    return this.across(ctx, (r) => r.kserve.ready(version, ctx));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * Runs `attempt` on the replicas in turn, starting at the next one round the ring, until one
   * answers or fails with an error that no other replica would change. Replicas waiting out a
   * Retry-After are passed over; when all of them are, the call is shed here.
   */
  private async across<T>(ctx: CallContext, attempt: (r: Replica) => Promise<T>): Promise<T> {
    const n = this.replicas.length;
    const first = n === 1 ? 0 : this.turn++ % n;
    let last: unknown;
    let tried = 0;
    for (let i = 0; i < n; i++) {
      const r = this.replicas[(first + i) % n]!;
      const now = this.opts.clock.now();
      if (now < r.holdUntil) {
        last ??= syError(
          'SY_ERR_PARENT_SHED',
          `${this.name}: waiting out the parent's Retry-After`,
          {
            retryAfterS: Math.ceil((r.holdUntil - now) / 1000),
          },
        );
        continue;
      }
      if (tried > 0 && (ctx.signal.aborted || now >= ctx.deadlineAt)) break;
      tried++;
      this.seen.delete(ctx);
      try {
        return await attempt(r);
      } catch (err) {
        const e = toSwitchyardError(err);
        if (n === 1 || !FAILOVER.has(e.code)) throw err;
        last = err;
        if (i === n - 1) break;
        const budget = this.opts.budget;
        if (budget !== undefined && FAILOVER_PAID.has(e.code)) {
          // Spent: the error goes to the retry interceptor, which records it as any attempt's.
          if (!budget.allowsRetry()) throw refuseRetry(this.name, 'budget_exhausted', e);
          budget.record(e.code);
        }
        publish(events.parentFailover, { model: this.name, code: e.code });
      }
    }
    throw last;
  }

  private hopHeaders(ctx: CallContext): Record<string, string> {
    const remaining = Math.max(0, ctx.deadlineAt - this.opts.clock.now());
    const h: Record<string, string> = {
      [ASSERTION_HEADER]: signAssertion(
        {
          keyId: this.opts.serviceKey.id,
          tenant: ctx.tenant,
          trafficClass: ctx.trafficClass,
          requestId: ctx.requestId,
          expiresAt: Math.ceil(this.opts.wall() + remaining + this.opts.assertionTtlMs),
        },
        this.opts.serviceKey.secret,
      ),
      'x-switchyard-class': ctx.trafficClass,
    };
    const data = ctx.hop?.dataHeaders;
    if (data !== undefined) for (const [k, v] of Object.entries(data)) h[k] = v;
    return h;
  }

  private async statusError(ex: Exchange, replica: Replica): Promise<SwitchyardError> {
    let code: string | undefined;
    let message = '';
    try {
      const raw = await readCapped(ex, 65_536);
      const v = JSON.parse(raw.toString('utf8')) as unknown;
      if (isJsonObject(v)) {
        const err = v['error'];
        if (isJsonObject(err)) {
          code = typeof err['code'] === 'string' ? err['code'] : undefined;
          message = typeof err['message'] === 'string' ? err['message'] : '';
        } else {
          code = typeof v['code'] === 'string' ? v['code'] : undefined;
          message = typeof err === 'string' ? err : '';
        }
      }
    } catch {
      // Not a gateway's JSON error: the status decides below.
    } finally {
      ex.done();
    }
    const retryAfterS = parseRetryAfter(ex.headers['retry-after']);
    const detail = `parent ${this.name} answered ${ex.status}${message === '' ? '' : `: ${message}`}`;
    const known = code !== undefined && code in ERROR_REGISTRY ? (code as ErrorCode) : undefined;
    if (known !== undefined && TENANT_VERDICTS.has(known))
      return syError(known, detail, retryAfterS === undefined ? {} : { retryAfterS });
    if (ex.status === 503 || (ex.status === 429 && retryAfterS !== undefined)) {
      const s = retryAfterS ?? 1;
      replica.holdUntil = Math.max(replica.holdUntil, this.opts.clock.now() + s * 1000);
      return syError('SY_ERR_PARENT_SHED', detail, { retryAfterS: s });
    }
    // The parent's own upstreams failed, after the parent's own retries: retrying here would
    // multiply attempts across hops (retries live in one layer). A fallback may still answer.
    if (known !== undefined && PARENT_EXHAUSTED.has(known))
      return syError('SY_ERR_NO_HEALTHY_BACKEND', detail);
    if (known !== undefined && known !== 'SY_ERR_INTERNAL')
      return syError(known, detail, retryAfterS === undefined ? {} : { retryAfterS });
    return upstreamStatusFallback(ex, detail);
  }
}

/** A parent's answer that carries no gateway error code: the generic status mapping. */
function upstreamStatusFallback(ex: Exchange, detail: string): SwitchyardError {
  const s = ex.status;
  if (s === 400 || s === 413 || s === 422) return syError('SY_ERR_UPSTREAM_REJECTED', detail);
  if (s === 408 || s === 504) return syError('SY_ERR_UPSTREAM_TIMEOUT', detail);
  if (s >= 500 && s !== 501) return syError('SY_ERR_UPSTREAM_ERROR', detail);
  return syError('SY_ERR_UPSTREAM_REFUSED', detail);
}

function one(v: string | string[] | undefined): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}
