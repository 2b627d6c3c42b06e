import type { AdmissionController, Ticket } from '../admission/admission-controller.js';
import { CLASS_HEADER } from '../admission/classes.js';
import type { Estimate } from '../admission/quotas.js';
import type { CallContext, Usage } from '../contracts/backend.js';
import type { JsonObject, JsonValue } from '../contracts/json.js';
import { Deadline } from '../core/deadline.js';
import { syError } from '../core/errors.js';
import { isJsonObject } from '../core/safe-json.js';
import { DEADLINE_HEADER, type RequestContext } from './context.js';

export interface AdmitOptions {
  /** The resolved model (its concurrency gate, and its price for spend). */
  readonly model: string;
  /** A class declared by the route or journey; the tenant's header may still pick another it may use. */
  readonly trafficClass?: string;
  readonly estimate: Estimate;
}

export interface Admitted {
  /** The backend call context, with the class's deadline. */
  readonly call: CallContext;
  /** Settle it with the actual usage; its slot is freed when the response closes. */
  readonly ticket: Ticket;
}

const OPEN_TICKET: Ticket = {
  trafficClass: 'interactive',
  settle: () => undefined,
  release: () => undefined,
};

/** Upstream outcomes that mean "too much load": the concurrency limit backs off on them. */
const DROPS = new Set([
  'SY_ERR_UPSTREAM_TIMEOUT',
  'SY_ERR_DEADLINE_EXCEEDED',
  'SY_ERR_UPSTREAM_RATE_LIMITED',
  'SY_ERR_QUEUE_FULL',
]);

/**
 * The one admission call every serving route makes before its backend call (OpenAI, KServe,
 * journeys): picks the traffic class (a header the tenant may set, else the route's or the
 * tenant's default), starts the class's deadline (tightened by the mode), then asks admission
 * control. Throws 400/403/429/503 errors; on success the returned ticket's concurrency slot is
 * released when the response closes, whatever happened, and the route settles its usage.
 */
export async function admit(ctx: RequestContext, opts: AdmitOptions): Promise<Admitted> {
  const ac = ctx.runtime.admission;
  if (ac === undefined) return { call: ctx.startDeadline(), ticket: OPEN_TICKET };
  const header = ctx.req.headers[CLASS_HEADER];
  if (header !== undefined && typeof header !== 'string')
    throw syError('SY_ERR_INVALID_REQUEST', `send one ${CLASS_HEADER}`, { param: CLASS_HEADER });
  const tenant = ctx.principal?.tenant ?? '';
  ctx.trafficClass = ac.classify(tenant, header, opts.trafficClass);
  const call = startClassDeadline(ctx, ac);
  const mc = ctx.runtime.snapshot.config.models[opts.model];
  const ticket = await ac.admit({
    tenant,
    keyId: ctx.principal?.keyId ?? '',
    trafficClass: ctx.trafficClass,
    // In-process models queue in their own batcher, by the same class priorities.
    gate: mc === undefined || mc.backend === 'onnx' ? undefined : opts.model,
    estimate: opts.estimate,
    deadlineAt: call.deadlineAt,
    budgetMs: ctx.deadline?.budgetMs ?? 0,
    signal: call.signal,
  });
  ctx.onEnd(() => {
    const code = ctx.code;
    ticket.release({
      ok: code === undefined || code === 'SY_ERR_CLIENT_CLOSED' || ctx.res.statusCode < 500,
      dropped: code !== undefined && DROPS.has(code),
    });
  });
  return { call, ticket };
}

/** A model the current mode sends elsewhere (a cheaper tier), when the tenant may use it. */
export function substituteModel(ctx: RequestContext, name: string): string {
  const ac = ctx.runtime.admission;
  if (ac === undefined) return name;
  const to = ac.switches().model_substitutes[name];
  if (to === undefined || !ctx.runtime.models.has(to)) return name;
  return ctx.runtime.keys.mayUse(ctx.principal?.tenant ?? '', to) ? to : name;
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

/** What a call costs in the models' currency unit (`cost` in the model's config). */
export function costOf(ctx: RequestContext, model: string, usage: Usage): number {
  const cost = ctx.runtime.snapshot.config.models[model]?.cost;
  if (cost === undefined) return 0;
  return (
    (usage.inputTokens * cost.in_per_1k) / 1000 +
    (usage.outputTokens * cost.out_per_1k) / 1000 +
    cost.per_call
  );
}

/** Settles a ticket with the usage the upstream reported (kept at the estimate when none came). */
export function settleUsage(
  ctx: RequestContext,
  ticket: Ticket,
  model: string,
  usage: Usage | undefined,
): void {
  if (usage === undefined) return;
  ticket.settle({
    tokens: usage.inputTokens + usage.outputTokens,
    spend: costOf(ctx, model, usage),
  });
}

function textTokens(v: JsonValue | undefined): number {
  if (typeof v === 'string') return Math.ceil(v.length / 4);
  if (Array.isArray(v)) return v.reduce<number>((n, x) => n + textTokens(x), 0);
  if (isJsonObject(v)) return textTokens(v['text'] ?? v['content']);
  return 0;
}

/** A chat request's likely usage: ~4 characters a token in, max_tokens (or the default) out. */
export function chatEstimate(ctx: RequestContext, body: JsonObject, model: string): Estimate {
  const messages = body['messages'];
  const input = Array.isArray(messages)
    ? messages.reduce<number>((n, m) => n + textTokens(m) + 4, 0)
    : 0;
  const max = body['max_completion_tokens'] ?? body['max_tokens'];
  const choices = typeof body['n'] === 'number' && body['n'] > 1 ? Math.floor(body['n']) : 1;
  const out =
    (typeof max === 'number' && max >= 0
      ? max
      : ctx.runtime.snapshot.config.admission.estimate.output_tokens) * choices;
  const usage = { inputTokens: input, outputTokens: out };
  return { tokens: input + out, spend: costOf(ctx, model, usage) };
}

/** An embeddings request's usage: its input (token arrays count as they are). */
export function embeddingsEstimate(ctx: RequestContext, body: JsonObject, model: string): Estimate {
  const input = body['input'];
  let tokens = 0;
  if (Array.isArray(input) && input.every((x) => typeof x === 'number')) tokens = input.length;
  else if (Array.isArray(input))
    tokens = input.reduce<number>((n, x) => n + (Array.isArray(x) ? x.length : textTokens(x)), 0);
  else tokens = textTokens(input);
  return { tokens, spend: costOf(ctx, model, { inputTokens: tokens, outputTokens: 0 }) };
}

/** A call with no tokens (KServe inference): only its per-call price. */
export function callEstimate(ctx: RequestContext, model: string): Estimate {
  return { tokens: 0, spend: costOf(ctx, model, { inputTokens: 0, outputTokens: 0 }) };
}
