import { CLASS_HEADER } from '../admission/classes.js';
import type { AdmissionController } from '../admission/admission-controller.js';
import type { Estimate } from '../admission/quotas.js';
import type { CallContext, HopContext } from '../contracts/backend.js';
import type { JsonObject } from '../contracts/json.js';
import {
  CONSENT_PURPOSES,
  POLICY_LABELS,
  type ConsentPurpose,
  type DataTag,
  type PolicyLabel,
} from '../contracts/policy.js';
import { Deadline } from '../core/deadline.js';
import { syError } from '../core/errors.js';
import type { CallScope, CallOrigin } from '../pipeline/model-pipeline.js';
import { unitOf } from '../pipeline/unit.js';
import { DEADLINE_HEADER, type RequestContext } from './context.js';

/** Headers a direct caller uses to say whose data its request carries and where it may go. */
export const DATA_HEADERS = {
  /** The policy label of the personal data in the request (`public` … `restricted`). */
  label: 'x-switchyard-data-label',
  /** The use it serves; consent for it is what `consented`/`sensitive` data needs. */
  purpose: 'x-switchyard-data-purpose',
  /** Whose data (also the release assignment unit); the OpenAI `user` field works too. */
  user: 'x-switchyard-user',
  /** The residency tag of the data: it may reach only models on that jurisdiction's nodes. */
  jurisdiction: 'x-switchyard-jurisdiction',
  geo: 'x-switchyard-geo',
  device: 'x-switchyard-device',
} as const;

export interface ScopeOptions {
  /** The class the route or journey declares; the tenant's header may pick another it may use. */
  readonly trafficClass?: string;
  /** Expected usage, reserved against quotas. */
  readonly estimate: Estimate;
  readonly origin: CallOrigin;
  /** Journey attributes (`user`, `geo`, `device`, ...): the release assignment unit. */
  readonly attributes?: JsonObject;
  /** The OpenAI `user` field, when the body has one. */
  readonly user?: string | undefined;
  /** A data route: only request-rate quotas apply (no model is called). */
  readonly requestsOnly?: boolean;
}

/**
 * Opens the request's scope in the model-call pipeline and runs `fn` in it: picks the traffic
 * class (a header the tenant may set, else the route's or the tenant's default), starts the
 * class's deadline (tightened by the mode), reads the declared data context, and lets the
 * pipeline admit the request (mode, CPU overload, quotas). The scope is settled when `fn` ends,
 * however it ends: the quota ticket lives exactly as long as the request's handler.
 */
export async function withScope<T>(
  ctx: RequestContext,
  opts: ScopeOptions,
  fn: (scope: CallScope) => Promise<T>,
): Promise<T> {
  const pipeline = ctx.runtime.pipeline;
  const ac = ctx.runtime.admission;
  const header = ctx.req.headers[CLASS_HEADER];
  if (header !== undefined && typeof header !== 'string')
    throw syError('SY_ERR_INVALID_REQUEST', `send one ${CLASS_HEADER}`, { param: CLASS_HEADER });
  const tenant = ctx.principal?.tenant ?? '';
  let call: CallContext;
  if (ac === undefined) call = ctx.startDeadline();
  else {
    ctx.trafficClass = ac.classify(tenant, header, opts.trafficClass);
    call = startClassDeadline(ctx, ac);
  }
  const data = declaredData(ctx, tenant);
  ctx.data = data;
  const user = one(ctx, DATA_HEADERS.user) ?? opts.user;
  // Object.assign, not `{ ...opts.attributes }`: keys are added below (see core/objects.ts).
  const attributes: JsonObject = Object.assign({}, opts.attributes);
  if (user !== undefined && attributes['user'] === undefined) attributes['user'] = user;
  const subject = attributes['user'];
  if (typeof subject === 'string') ctx.user = subject;
  for (const k of ['geo', 'device'] as const) {
    const v = one(ctx, DATA_HEADERS[k]);
    if (v !== undefined && attributes[k] === undefined) attributes[k] = v;
  }
  const hop = hopOf(ctx);
  const scope = await pipeline.open({
    requestId: ctx.requestId,
    tenant,
    keyId: ctx.principal?.keyId ?? '',
    trafficClass: ctx.trafficClass,
    signal: call.signal,
    deadlineAt: call.deadlineAt,
    origin: opts.origin,
    attempts: ctx.attempts,
    unit: unitOf(attributes),
    ...(data === undefined ? {} : { data: [data] }),
    estimate: opts.estimate,
    ...(opts.requestsOnly === true ? { requestsOnly: true } : {}),
    ...(ctx.span === undefined ? {} : { span: ctx.span }),
    ...(hop === undefined ? {} : { hop }),
  });
  // Settled when the handler ends, and at the latest when the request's life ends (a client
  // that left while the answer was queued behind a pipelined one): settling is idempotent.
  ctx.onEnd(() => pipeline.close(scope));
  try {
    return await fn(scope);
  } finally {
    pipeline.close(scope);
  }
}

/** W3C Trace Context `traceparent` (version 00 shape; other versions pass if they start alike). */
const TRACEPARENT = /^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$/;
const HOP_DATA = [
  DATA_HEADERS.label,
  DATA_HEADERS.purpose,
  DATA_HEADERS.user,
  DATA_HEADERS.jurisdiction,
] as const;

/**
 * What travels to a parent gateway (#17): the trace context as it came (an invalid one is
 * dropped, as W3C Trace Context says), and the declared data headers, already validated.
 */
function hopOf(ctx: RequestContext): HopContext | undefined {
  const tp = ctx.req.headers['traceparent'];
  const traceparent = typeof tp === 'string' && TRACEPARENT.test(tp) ? tp : undefined;
  let data: Record<string, string> | undefined;
  for (const h of HOP_DATA) {
    const v = ctx.req.headers[h];
    if (typeof v === 'string') (data ??= {})[h] = v;
  }
  if (traceparent === undefined) return data === undefined ? undefined : { dataHeaders: data };
  return data === undefined ? { traceparent } : { traceparent, dataHeaders: data };
}

/** A header's single value, or undefined; a repeated header is a 400. */
function one(ctx: RequestContext, name: string): string | undefined {
  const v = ctx.req.headers[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '' || v.length > 256)
    throw syError('SY_ERR_INVALID_REQUEST', `send one non-empty ${name} (at most 256 characters)`, {
      param: name,
    });
  return v;
}

/**
 * The personal data a direct call says it carries: its label, purpose, subject and
 * jurisdiction. The model-input rule is checked against it for the model the call resolves to.
 * A jurisdiction alone tags the request as public data that must stay in that jurisdiction.
 */
function declaredData(ctx: RequestContext, tenant: string): DataTag | undefined {
  const label = one(ctx, DATA_HEADERS.label);
  const purpose = one(ctx, DATA_HEADERS.purpose);
  const jurisdiction = one(ctx, DATA_HEADERS.jurisdiction);
  if (label === undefined && purpose === undefined && jurisdiction === undefined) return undefined;
  if (label !== undefined && !(POLICY_LABELS as readonly string[]).includes(label))
    throw syError(
      'SY_ERR_INVALID_REQUEST',
      `${DATA_HEADERS.label} must be one of ${POLICY_LABELS.join(', ')}`,
      {
        param: DATA_HEADERS.label,
      },
    );
  if (purpose !== undefined && !(CONSENT_PURPOSES as readonly string[]).includes(purpose))
    throw syError(
      'SY_ERR_INVALID_REQUEST',
      `${DATA_HEADERS.purpose} must be one of ${CONSENT_PURPOSES.join(', ')}`,
      { param: DATA_HEADERS.purpose },
    );
  const user = one(ctx, DATA_HEADERS.user);
  return {
    tenant,
    label: (label ?? 'public') as PolicyLabel,
    ...(purpose === undefined ? {} : { purpose: purpose as ConsentPurpose }),
    ...(user === undefined ? {} : { userId: user }),
    ...(jurisdiction === undefined ? {} : { jurisdiction }),
  };
}

/** The deadline: the client's header or the class's, never longer than the mode allows. */
function startClassDeadline(ctx: RequestContext, ac: AdmissionController): CallContext {
  const call = ctx.startDeadline(); // validates and clamps the header
  const spec = ac.classSpec(ctx.trafficClass);
  const deadline = ctx.deadline;
  if (spec === undefined || deadline === undefined) return call;
  const scale = ac.switches().deadline_scale;
  let cap = ctx.req.headers[DEADLINE_HEADER] === undefined ? spec.deadline_ms : Infinity;
  if (scale < 1) cap = Math.min(cap, spec.deadline_ms * scale);
  const spent = ac.clock.now() - ctx.startedAt;
  if (cap - spent >= deadline.remaining()) return call;
  deadline.dispose();
  const tighter = new Deadline(Math.max(1, cap - spent), ac.clock);
  ctx.deadline = tighter;
  return { ...call, signal: tighter.signal, deadlineAt: tighter.at };
}

/** What a data request (features, vectors, consent, shards) reserves: a request, no tokens or spend. */
const DATA_ESTIMATE = { tokens: 0, spend: 0 } as const;

/**
 * A data route's admission (#13, finding 8): the same scope a model call opens, so the tenant's
 * and the key's request quotas, the mode's shed classes and the CPU-overload shed apply to
 * feature, vector, consent and shard requests exactly as to model calls. Admin routes stay out.
 */
export function withDataScope<T>(
  ctx: RequestContext,
  fn: (scope: CallScope) => Promise<T>,
): Promise<T> {
  return withScope(ctx, { origin: 'direct', estimate: DATA_ESTIMATE, requestsOnly: true }, fn);
}
