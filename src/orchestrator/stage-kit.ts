import type { z } from 'zod';
import type { CallContext } from '../contracts/backend.js';
import type { JsonValue } from '../contracts/json.js';
import type {
  InvokeResult,
  JourneyDecision,
  JourneyState,
  ModelInfo,
  ModelUse,
  RouteEntry,
  Stage,
  StageContext,
  StageResult,
  TaggedSource,
} from '../contracts/stage.js';
import type { DataTag } from '../contracts/policy.js';
import type { SpanAttributes, TraceSpan } from '../contracts/trace.js';
import { abortReason } from '../core/deadline.js';
import { syError, toSwitchyardError, type SwitchyardError } from '../core/errors.js';
import type { PathCompiler } from './paths.js';
import type { Router } from './router.js';
import { extend } from '../core/objects.js';

export type ModelOp = 'chat' | 'embeddings' | 'infer' | 'classify';

/** What a stage kind gets while it is compiled. */
export interface BuildContext {
  readonly journey: string;
  /** The stage's id. */
  readonly id: string;
  /** Config path of the stage kind's body, such as `journeys.support.stages[2].infer`. */
  readonly where: string;
  readonly paths: PathCompiler;
  readonly router: Router;
  problem(where: string, message: string): void;
  /** Checks a model exists and serves `op`; remembers it (cache keys include model versions). */
  model(name: string, where: string, op: ModelOp | readonly ModelOp[]): void;
  /** Checks an optional service (feature store, retriever, policy) is configured. */
  needs(service: 'features' | 'retriever' | 'policy', where: string): void;
  /** Checks a vector collection is configured. */
  collection(name: string, where: string): void;
  /** Compiles an inline sub-stage (parallel branches, fallback alternatives). */
  sub(spec: unknown, where: string, id: string): Stage;
  /** Models of the journey's infer/classify stages (filled while compiling). */
  readonly journeyModels: Set<string>;
}

/** A stage kind: its config schema, the stage ids it may jump to, and how it is built. */
export interface StageKind<C = unknown> {
  readonly kind: string;
  readonly schema: z.ZodType<C>;
  /** True when the stage never continues to the next stage in the list by default. */
  readonly terminal?: boolean;
  /** Stage ids this stage may jump to, with the config path (relative to the kind's body). */
  refs?(config: C): readonly { readonly id: string; readonly where: string }[];
  /** Inline sub-stage specs (for id collection), with their paths relative to the kind's body. */
  subs?(raw: unknown): readonly { readonly spec: unknown; readonly where: string }[];
  build(config: C, b: BuildContext): Stage;
}

export function defineKind<C>(kind: StageKind<C>): StageKind<C> {
  return kind;
}

/** Stage results, with the common fields filled. */
export const result = {
  next(
    code: string,
    reason: string,
    extra: Omit<Extract<StageResult, { kind: 'continue' }>, 'kind' | 'code' | 'reason'> = {},
  ): StageResult {
    return { kind: 'continue', code, reason, ...extra };
  },
  respond(
    code: string,
    reason: string,
    body: JsonValue,
    extra: Omit<
      Extract<StageResult, { kind: 'respond' }>,
      'kind' | 'code' | 'reason' | 'body'
    > = {},
  ): StageResult {
    return { kind: 'respond', code, reason, body, ...extra };
  },
  fail(
    error: SwitchyardError,
    reason: string,
    extra: Omit<Extract<StageResult, { kind: 'fail' }>, 'kind' | 'code' | 'reason' | 'error'> = {},
  ): StageResult {
    return { kind: 'fail', code: error.code.replace(/^SY_ERR_/, ''), reason, error, ...extra };
  },
};

export type Called<T> =
  | { readonly ok: true; readonly value: T; readonly use: ModelUse }
  | { readonly ok: false; readonly error: SwitchyardError; readonly use: ModelUse };

/**
 * One model call from a stage, through the model-call pipeline (which resolves, checks policy,
 * gates, prices and records it): timed, its latency fed to the router's profile (successes only),
 * and described for the route with the cost the pipeline charged.
 */
export async function callModel<T extends InvokeResult>(
  ctx: StageContext,
  router: Router,
  model: string,
  fn: (call: CallContext) => Promise<T>,
): Promise<Called<T>> {
  const info = ctx.services.models.info(model);
  const t0 = ctx.now();
  try {
    const value = await fn(ctx.call());
    const ms = ctx.now() - t0;
    router.observe(value.servedBy, ms, value.usage);
    const use: ModelUse = {
      model: value.servedBy,
      version: value.version,
      tier: value.tier,
      cost: value.cost,
      ms: round(ms),
      outcome: 'ok',
      ...(value.attempts.includes('>') || value.attempts.includes('#2')
        ? { attempts: value.attempts }
        : {}),
    };
    return { ok: true, value, use };
  } catch (err) {
    const error = ctx.signal.aborted ? abortReason(ctx.signal) : toSwitchyardError(err);
    const use: ModelUse = {
      model,
      version: info?.version ?? '',
      tier: info?.tier ?? 'central',
      cost: 0,
      ms: round(ctx.now() - t0),
      outcome: error.code.replace(/^SY_ERR_/, ''),
    };
    return { ok: false, error, use };
  }
}

export function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

export function requireInfo(ctx: StageContext, model: string): ModelInfo {
  const info = ctx.services.models.info(model);
  if (info === undefined) throw syError('SY_ERR_MODEL_NOT_FOUND', model);
  return info;
}

/** Writes a continuing stage's output and updates into the state (the runner's job). */
export function applyResult(state: JourneyState, id: string, r: StageResult): void {
  if (r.kind !== 'continue') return;
  const u = r.update;
  if (r.output !== undefined) {
    state.outputs.set(id, r.output);
    state.last = r.output;
    // The output carries the tags of the personal data it was made from (the stage says which).
    const src = `stage:${id}`;
    state.lastSource = src;
    const tags = u?.taint;
    if (tags !== undefined && tags.length > 0) state.taint.set(src, tags);
    else if (state.taint.size > 0) state.taint.delete(src);
    if (u?.derived !== undefined && u.derived.roots.length > 0) state.derived.set(src, u.derived);
    else if (state.derived.size > 0) state.derived.delete(src);
  }
  if (u?.featureTags !== undefined)
    for (const [name, tag] of Object.entries(u.featureTags))
      state.taint.set(`features.${name}`, [tag]);
  if (u === undefined) return;
  if (u.label !== undefined) state.label = u.label;
  if (u.confidence !== undefined) state.confidence = u.confidence;
  if (u.features !== undefined) Object.assign(state.features, u.features);
  if (u.cacheWrite !== undefined) state.cacheWrites.push(u.cacheWrite);
  if (u.stale !== undefined) state.stale = u.stale;
}

/**
 * Runs one stage with its own span: refuses to start it once the budget is spent or the signal
 * fired (no stage ever starts after the deadline), turns a throw into a `fail`, and describes
 * what happened as a route entry. A stage that answers synchronously is described synchronously
 * (no promise), so the runner moves on within the same turn.
 */
export function runStage(stage: Stage, ctx: StageContext, state: JourneyState): Ran | Promise<Ran> {
  const origin = ctx.origin;
  if (ctx.signal.aborted) return { result: undefined, error: abortReason(ctx.signal) };
  const t0 = ctx.now();
  if (t0 >= ctx.deadlineAt) {
    return {
      result: undefined,
      error: syError('SY_ERR_DEADLINE_EXCEEDED', String(Math.round(ctx.deadlineAt - origin))),
    };
  }
  // The stage's own span (#15): its model calls, cache lookups and reads hang under it.
  const span = ctx.span?.child(`stage ${stage.id}`, 'internal', {
    'switchyard.stage': stage.id,
    'switchyard.stage_kind': stage.kind,
  });
  const sctx = span === undefined ? ctx : withSpan(ctx, span);
  let out: StageResult | Promise<StageResult>;
  try {
    out = stage.run(sctx, state);
  } catch (err) {
    out = threw(ctx, err);
  }
  if (out instanceof Promise)
    return out.then(
      (r) => ranStage(stage, ctx, span, r, t0),
      (err: unknown) => ranStage(stage, ctx, span, threw(ctx, err), t0),
    );
  return ranStage(stage, ctx, span, out, t0);
}

/** What `runStage` gives: the stage's result and route entry, or why it did not start. */
export type Ran =
  | { readonly result: StageResult; readonly entry: RouteEntry }
  | { readonly result: undefined; readonly error: SwitchyardError };

/** A stage that threw fails with what it threw (the abort reason, once the signal fired). */
function threw(ctx: StageContext, err: unknown): StageResult {
  const e = ctx.signal.aborted ? abortReason(ctx.signal) : toSwitchyardError(err);
  return result.fail(e, `threw: ${e.message}`);
}

/** A stage's result as the route shows it, its span ended. */
function ranStage(
  stage: Stage,
  ctx: StageContext,
  span: TraceSpan | undefined,
  r: StageResult,
  t0: number,
): Ran {
  const ms = ctx.now() - t0;
  const entry = entryOf(stage, r, t0 - ctx.origin, ms);
  if (span !== undefined) {
    span.setAll({
      'switchyard.outcome': r.kind,
      'switchyard.route_code': r.code,
      'switchyard.reason': r.reason,
      'switchyard.tier': entry.tier,
      'switchyard.model': entry.model,
      'switchyard.version': entry.version,
    });
    if (r.kind === 'fail') {
      const e = toSwitchyardError(r.error);
      span.fail(e.code, r.reason);
    }
    span.end();
  }
  return { result: r, entry };
}

/**
 * Runs one handoff of a stage (a cache lookup, a feature read, a search) in a span of its own
 * under the stage's, when the request is traced (#15); `describe` adds what it found. Untraced,
 * it is `fn()`.
 */
export async function inSpan<T>(
  ctx: StageContext,
  name: string,
  attributes: SpanAttributes,
  fn: (span: TraceSpan | undefined) => Promise<T>,
  describe?: (value: T) => SpanAttributes,
): Promise<T> {
  const span = ctx.span?.child(name, 'internal', attributes);
  if (span === undefined) return fn(undefined);
  try {
    const value = await fn(span);
    if (describe !== undefined) span.setAll(describe(value));
    return value;
  } catch (err) {
    const e = toSwitchyardError(err);
    span.fail(e.code, e.message);
    throw err;
  } finally {
    span.end();
  }
}

/** The same context under another span (a stage's own). */
export function withSpan(ctx: StageContext, span: TraceSpan): StageContext {
  return extend(ctx, { span, call: () => extend(ctx.call(), { span }) });
}

export function entryOf(stage: Stage, r: StageResult, at: number, ms: number): RouteEntry {
  const models = r.models ?? [];
  const children = r.children ?? [];
  let cost = 0;
  for (const m of models) cost += m.cost;
  for (const c of children) cost += c.cost;
  // The last model that answered, else the last one asked.
  let answered = models.at(-1);
  for (let i = models.length - 1; i >= 0; i--)
    if (models[i]!.outcome === 'ok') {
      answered = models[i];
      break;
    }
  return {
    stage: stage.id,
    kind: stage.kind,
    outcome: r.kind,
    code: r.code,
    reason: r.reason,
    at: round(at),
    ms: round(ms),
    ...(answered === undefined
      ? {}
      : { tier: answered.tier, model: answered.model, version: answered.version }),
    cost,
    ...(models.length > 0 ? { models } : {}),
    ...(children.length > 0 ? { children } : {}),
  };
}

/**
 * Builds something from the state (a request, a text) and says which tagged sources it read,
 * with a way to build it again without some of them: what the model-call pipeline needs to
 * strip data a model may not see instead of refusing the call. `build` must be synchronous.
 */
export function traced<T>(
  state: JourneyState,
  build: () => T,
): {
  value: T;
  inputs: TaggedSource[];
  sent: (withheld: readonly string[]) => DataTag[];
  rebuild: (withheld: ReadonlySet<string>) => T;
} {
  const reads = new Set<string>();
  state.reads = reads;
  let value: T;
  try {
    value = build();
  } finally {
    state.reads = undefined;
  }
  const inputs: TaggedSource[] = [];
  // Nothing tagged in the state yet (no personal data read): nothing to look up.
  if (reads.size > 0 && (state.taint.size > 0 || state.derived.size > 0)) {
    const seen = new Set<string>();
    const add = (source: string, tag: DataTag): void => {
      const key = `${source}\u0000${JSON.stringify(tag)}`;
      if (seen.has(key)) return;
      seen.add(key);
      inputs.push({ source, tag });
    };
    for (const source of reads) {
      // A derived output stands for the tagged data it was built from: its roots are withheld.
      const d = state.derived.get(source);
      if (d !== undefined) for (const r of d.roots) add(r.source, r.tag);
      for (const tag of state.taint.get(source) ?? []) add(source, tag);
    }
  }
  return {
    value,
    inputs,
    sent: (withheld) => inputs.filter((i) => !withheld.includes(i.source)).map((i) => i.tag),
    rebuild: (withheld) => {
      state.withheld = withheld;
      try {
        return build();
      } finally {
        state.withheld = undefined;
      }
    },
  };
}

/** The default id of an inline sub-stage: `<parent>-<kind><index>`, such as `answer-infer0`. */
export function subId(parent: string, spec: unknown, index: number): string {
  const kind =
    spec !== null && typeof spec === 'object'
      ? Object.keys(spec).find((k) => k !== 'id' && k !== 'next' && k !== 'on_fail')
      : undefined;
  return `${parent}-${kind ?? 'stage'}${index}`;
}

/** The same context with another signal (a parallel branch that can be cancelled alone). */
export function withSignal(ctx: StageContext, signal: AbortSignal): StageContext {
  return { ...ctx, signal, call: () => ({ ...ctx.call(), signal }) };
}

export type { JourneyDecision };
