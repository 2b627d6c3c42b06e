import type { Tier } from '../contracts/backend.js';
import type { FeatureRead, RecordReads, ShardHit } from '../contracts/inference-log.js';
import type { JsonObject, JsonValue } from '../contracts/json.js';
import type {
  JourneyDecision,
  JourneyState,
  ModelInvoker,
  RouteEntry,
  StageContext,
  StageServices,
} from '../contracts/stage.js';
import type { Cache } from '../contracts/cache.js';
import type { Clock } from '../core/clock.js';
import type { TraceSpan } from '../contracts/trace.js';
import { syError, toSwitchyardError, type SwitchyardError } from '../core/errors.js';
import { events, publish } from '../core/events.js';
import { RequestAbortController } from '../core/abort.js';
import { extend } from '../core/objects.js';
import type { CompiledJourney, CompiledStage } from './compile.js';
import { applyResult, round, runStage } from './stage-kit.js';

export interface JourneyRequest {
  readonly requestId: string;
  readonly tenant: string;
  readonly trafficClass: string;
  readonly input: JsonObject;
  readonly attributes: JsonObject;
  readonly signal: AbortSignal;
  /** Monotonic ms at which the budget runs out. */
  readonly deadlineAt: number;
  /**
   * The model-call pipeline bound to this request (its tenant, class, quota ticket): what the
   * stages call models through. Default: the runner's own `models` service.
   */
  readonly models?: ModelInvoker;
  /** The mode's `cache_ttl_scale`: answers written back are kept this many times longer. */
  readonly cacheTtlScale?: number;
  /** The request's span (#15): the journey's span hangs under it, each stage's under that. */
  readonly span?: TraceSpan;
  /**
   * A replay (#15): cache stages always miss and nothing is written back, and the run is not
   * counted in the journey metrics, so replaying leaves no trace outside its report.
   */
  readonly replay?: boolean;
}

export type CacheOutcome = 'hit' | 'semantic_hit' | 'stale' | 'miss' | 'none';

/** The route of one journey request, as the response body, header and log show it. */
export interface JourneyRoute {
  readonly journey: string;
  readonly outcome: 'respond' | 'fail';
  readonly ms: number;
  readonly cost: number;
  /** Where the answer came from: `cache`, the tier of the last model that answered, or `none`. */
  readonly answeredBy: Tier | 'cache' | 'none';
  readonly cache: CacheOutcome;
  readonly decisions: readonly JourneyDecision[];
  readonly stages: readonly RouteEntry[];
  /** Set when the journey stopped before a stage (deadline passed, client gone). */
  readonly stoppedBefore?: string;
}

export type JourneyOutcome =
  | {
      readonly ok: true;
      readonly body: JsonValue;
      readonly route: JourneyRoute;
      readonly reads?: RecordReads;
    }
  | {
      readonly ok: false;
      readonly error: SwitchyardError;
      readonly route: JourneyRoute;
      readonly reads?: RecordReads;
    };

/**
 * Runs compiled journeys. The runner alone decides what runs next: a stage's `continue` goes to
 * its target or the next stage in the list, `respond` ends the journey with an answer, `fail`
 * goes to the stage's `on_fail` or ends it with the error. No stage starts once the deadline
 * has passed or the signal fired. The route records every stage that ran, in order.
 */
export class JourneyRunner {
  constructor(
    private readonly services: StageServices,
    private readonly clock: Clock,
  ) {}

  async run(journey: CompiledJourney, request: JourneyRequest): Promise<JourneyOutcome> {
    const span = request.span?.child(`journey ${journey.name}`, 'internal', {
      'switchyard.journey': journey.name,
    });
    if (span === undefined) return this.runTimed(journey, request);
    const out = await this.runTimed(journey, extend(request, { span }));
    span.setAll({
      'switchyard.route_code': compactRoute(out.route),
      'switchyard.cache': out.route.cache,
      'switchyard.answered_by': out.route.answeredBy,
      'switchyard.decisions': out.route.decisions,
      'switchyard.cost': out.route.cost,
    });
    if (!out.ok) span.fail(out.error.code, out.error.message);
    span.end();
    return out;
  }

  private async runTimed(
    journey: CompiledJourney,
    request: JourneyRequest,
  ): Promise<JourneyOutcome> {
    const origin = this.clock.now();
    const cap = journey.deadlineMs;
    if (cap === undefined || origin + cap >= request.deadlineAt)
      return this.runWithin(journey, request, origin);
    // The journey's own budget is tighter than the request's: a signal that fires at either.
    const ac = new RequestAbortController();
    const onAbort = (): void => ac.abort(request.signal.reason);
    if (request.signal.aborted) onAbort();
    else request.signal.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => ac.abort(deadlineError(cap)), cap);
    timer.unref();
    try {
      return await this.runWithin(
        journey,
        { ...request, signal: ac.signal, deadlineAt: origin + cap },
        origin,
      );
    } finally {
      clearTimeout(timer);
      request.signal.removeEventListener('abort', onAbort);
    }
  }

  private async runWithin(
    journey: CompiledJourney,
    req: JourneyRequest,
    origin: number,
  ): Promise<JourneyOutcome> {
    const clock = this.clock;
    const reads: { features: FeatureRead[]; shards: ShardHit[] } = { features: [], shards: [] };
    const ctx: StageContext = {
      requestId: req.requestId,
      tenant: req.tenant,
      trafficClass: req.trafficClass,
      signal: req.signal,
      deadlineAt: req.deadlineAt,
      origin,
      remainingMs: () => Math.max(0, req.deadlineAt - clock.now()),
      now: () => clock.now(),
      wall: () => clock.wall(),
      call: () => ({
        requestId: req.requestId,
        tenant: req.tenant,
        trafficClass: req.trafficClass,
        signal: req.signal,
        deadlineAt: req.deadlineAt,
        attempts: [],
        ...(req.span === undefined ? {} : { span: req.span }),
      }),
      ...(req.span === undefined ? {} : { span: req.span }),
      services: {
        ...this.services,
        ...(req.models === undefined ? {} : { models: req.models }),
        ...(req.replay === true ? { cache: NO_CACHE } : {}),
      },
      noteRead: (r) => {
        if (r.features !== undefined) reads.features.push(...r.features);
        if (r.shards !== undefined) reads.shards.push(...r.shards);
      },
    };
    const state: JourneyState = {
      journey: journey.name,
      input: req.input,
      attributes: req.attributes,
      outputs: new Map(),
      last: undefined,
      label: undefined,
      confidence: undefined,
      features: {},
      cacheWrites: [],
      stale: undefined,
      taint: new Map(),
      derived: new Map(),
      lastSource: undefined,
      reads: undefined,
      withheld: undefined,
    };
    const entries: RouteEntry[] = [];
    const decisions: JourneyDecision[] = [];
    let current: string | undefined = journey.entry;
    let outcome:
      | { ok: true; body: JsonValue; cacheable: boolean }
      | { ok: false; error: SwitchyardError }
      | undefined;
    let stoppedBefore: string | undefined;
    // Journeys are acyclic (checked at compile), so this bound is never reached; it guards bugs.
    for (let steps = 0; current !== undefined && steps <= journey.stages.size; steps++) {
      const node: CompiledStage = journey.stages.get(current)!;
      const pending = runStage(node.stage, ctx, state);
      const ran = pending instanceof Promise ? await pending : pending;
      if (ran.result === undefined) {
        stoppedBefore = current;
        outcome = { ok: false, error: ran.error };
        break;
      }
      const r = ran.result;
      entries.push(ran.entry);
      for (const d of r.decisions ?? []) decisions.push(d);
      if (r.kind === 'respond') {
        outcome = { ok: true, body: r.body, cacheable: r.cacheable !== false };
        break;
      }
      if (r.kind === 'fail') {
        if (node.onFail !== undefined && !req.signal.aborted) {
          if (!decisions.includes('fallback')) decisions.push('fallback');
          current = node.onFail;
          continue;
        }
        outcome = { ok: false, error: toSwitchyardError(r.error) };
        break;
      }
      applyResult(state, node.stage.id, r);
      current = r.next ?? node.next;
    }
    outcome ??= { ok: true, body: state.last ?? null, cacheable: true };

    const route = summarize(
      journey.name,
      entries,
      decisions,
      outcome.ok,
      round(clock.now() - origin),
      stoppedBefore,
    );
    if (outcome.ok) {
      const degraded = decisions.some(
        (d) =>
          d === 'downgrade' || d === 'fallback' || d === 'stale_served' || d === 'stale_features',
      );
      if (outcome.cacheable && !degraded && req.replay !== true)
        this.writeBack(req.tenant, state, outcome.body, req.cacheTtlScale ?? 1);
    }
    if (req.replay !== true)
      publish(events.journeyDone, {
        journey: journey.name,
        tenant: req.tenant,
        outcome: outcome.ok ? 'respond' : 'fail',
        code: outcome.ok ? undefined : outcome.error.code,
        answeredBy: route.answeredBy,
        cache: route.cache,
        decisions: route.decisions,
        cost: route.cost,
        ms: route.ms,
        stages: flatten(route.stages).map((e) => ({ kind: e.kind, outcome: e.outcome, ms: e.ms })),
      });
    if (outcome.ok) return { ok: true, body: outcome.body, route, reads };
    return { ok: false, error: outcome.error, route, reads };
  }

  private writeBack(tenant: string, state: JourneyState, body: JsonValue, scale: number): void {
    for (const w of state.cacheWrites) {
      this.services.cache
        .set(
          { tenant, namespace: w.namespace },
          w.key,
          { output: body },
          {
            ttlMs: Math.round(w.ttlMs * scale),
            staleMs: Math.round(w.staleMs * scale),
            ...(w.vector === undefined ? {} : { vector: w.vector }),
          },
        )
        .catch(() => undefined);
    }
  }
}

/** A replay's cache (#15): every lookup misses and every write is dropped. */
const NO_CACHE: Cache = {
  get: () => Promise.resolve(undefined),
  set: () => Promise.resolve(),
  nearest: () => Promise.resolve({ hit: undefined, best: undefined }),
  delete: () => Promise.resolve(false),
  clearTenant: () => Promise.resolve(0),
  close: () => Promise.resolve(),
};

function flatten(entries: readonly RouteEntry[]): RouteEntry[] {
  const out: RouteEntry[] = [];
  for (const e of entries) {
    out.push(e);
    if (e.children !== undefined) out.push(...flatten(e.children));
  }
  return out;
}

function summarize(
  journey: string,
  stages: readonly RouteEntry[],
  decisions: readonly JourneyDecision[],
  ok: boolean,
  ms: number,
  stoppedBefore: string | undefined,
): JourneyRoute {
  let cost = 0;
  for (const e of stages) cost += e.cost;
  const all = flatten(stages);
  let cache: CacheOutcome = 'none';
  if (decisions.includes('cache_hit')) cache = 'hit';
  else if (decisions.includes('semantic_hit')) cache = 'semantic_hit';
  else if (decisions.includes('stale_served')) cache = 'stale';
  else if (all.some((e) => e.kind === 'cache' && e.code === 'miss')) cache = 'miss';
  let answeredBy: JourneyRoute['answeredBy'] = 'none';
  if (ok && cache !== 'miss' && cache !== 'none') answeredBy = 'cache';
  else {
    for (const e of all)
      for (const m of e.models ?? [])
        if (m.outcome === 'ok' && !(e.kind === 'cache' || e.kind === 'retrieve'))
          answeredBy = m.tier;
  }
  return {
    journey,
    outcome: ok ? 'respond' : 'fail',
    ms,
    cost,
    answeredBy,
    cache,
    decisions: [...new Set(decisions)],
    stages,
    ...(stoppedBefore === undefined ? {} : { stoppedBefore }),
  };
}

/** Compact route for the `x-switchyard-route` header: `cache=miss>intent=ok@edge.intent>...`. */
export function compactRoute(route: JourneyRoute): string {
  const one = (e: RouteEntry): string => {
    let s = `${e.stage}=${e.code}`;
    if (e.model !== undefined) s += `@${e.tier ?? '?'}.${e.model}`;
    if (e.children !== undefined && e.children.length > 0)
      s += `(${e.children.map(one).join(',')})`;
    return s;
  };
  let out = route.stages.map(one).join('>');
  if (route.stoppedBefore !== undefined) out += `>${route.stoppedBefore}=not-started`;
  // Header values: visible ASCII only, and bounded.
  out = out.replace(/[^\x21-\x7e]/g, '_');
  return out.length > 1024 ? `${out.slice(0, 1021)}...` : out;
}

/** A deadline error naming the budget, for callers that stop before running anything. */
export function deadlineError(budgetMs: number): SwitchyardError {
  return syError('SY_ERR_DEADLINE_EXCEEDED', String(Math.round(budgetMs)));
}
