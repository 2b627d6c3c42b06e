import type {
  Backend,
  BackendDescription,
  BackendHealth,
  BackendRequest,
  BackendResponse,
  BackendStream,
  CallContext,
  Operation,
  Tier,
} from '../../contracts/backend.js';
import type { JsonObject } from '../../contracts/json.js';
import {
  ERROR_REGISTRY,
  syError,
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
import { KServeBackend } from './kserve.js';
import { OpenAiBackend } from './openai.js';

/** Headers a parent gateway answers with that this node folds into its own answer. */
export const REMOTE_ROUTE_HEADER = 'x-switchyard-route';
export const DEGRADED_HEADER = 'x-switchyard-degraded';

export interface SwitchyardBackendOptions extends Omit<HttpUpstreamOptions, 'headers' | 'hooks'> {
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
 */
export class SwitchyardBackend implements Backend {
  readonly name: string;
  private readonly openai: OpenAiBackend;
  private readonly kserve: KServeBackend;
  /** What the parent answered for each call in flight (the exchange sees headers first). */
  private readonly seen = new WeakMap<CallContext, { route?: string; degraded?: string }>();
  /** Monotonic ms until which the parent asked not to be called (its Retry-After). */
  private holdUntil = 0;

  constructor(private readonly opts: SwitchyardBackendOptions) {
    this.name = opts.name;
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
      statusError: (ex) => this.statusError(ex),
    };
    const base = new URL(opts.baseUrl);
    const root = base.origin + base.pathname.replace(/\/+$/, '');
    const common = {
      ...opts,
      apiKey: undefined,
      hooks,
    };
    this.openai = new OpenAiBackend({
      ...common,
      baseUrl: `${root}/v1`,
      operations: opts.operations.filter((o) => o !== 'infer'),
    });
    this.kserve = new KServeBackend({ ...common, baseUrl: root });
  }

  describe(): BackendDescription {
    return {
      name: this.name,
      kind: 'switchyard',
      tier: this.opts.tier,
      upstream: this.opts.baseUrl,
      operations: this.opts.operations,
    };
  }

  health(): BackendHealth {
    return this.opts.clock.now() < this.holdUntil
      ? { state: 'degraded', detail: 'the parent asked to wait (Retry-After)' }
      : { state: 'healthy' };
  }

  async call(request: BackendRequest, ctx: CallContext): Promise<BackendResponse> {
    this.checkHold();
    // A parent gateway takes chat, embeddings and KServe calls; Responses are translated here.
    if (request.op === 'responses' || !this.opts.operations.includes(request.op))
      throw syError('SY_ERR_OPERATION_UNSUPPORTED', `${this.name} does not serve ${request.op}`);
    const res =
      request.op === 'infer'
        ? await this.kserve.call(request, ctx)
        : await this.openai.call(request, ctx);
    const seen = this.seen.get(ctx);
    this.seen.delete(ctx);
    return seen === undefined ? res : { ...res, ...seen };
  }

  async stream(request: BackendRequest, ctx: CallContext): Promise<BackendStream> {
    this.checkHold();
    const s = await this.openai.stream(request, ctx);
    const seen = this.seen.get(ctx);
    this.seen.delete(ctx);
    return seen === undefined ? s : { ...s, ...seen };
  }

  metadata(version: string | undefined, ctx: CallContext): Promise<JsonObject> {
    return this.kserve.metadata(version, ctx);
  }

  ready(version: string | undefined, ctx: CallContext): Promise<boolean> {
    return this.kserve.ready(version, ctx);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  private checkHold(): void {
    const left = this.holdUntil - this.opts.clock.now();
    if (left > 0)
      throw syError('SY_ERR_PARENT_SHED', `${this.name}: waiting out the parent's Retry-After`, {
        retryAfterS: Math.ceil(left / 1000),
      });
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

  private async statusError(ex: Exchange): Promise<SwitchyardError> {
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
      this.holdUntil = Math.max(this.holdUntil, this.opts.clock.now() + s * 1000);
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
