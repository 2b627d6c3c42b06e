import type {
  AttemptRecord,
  Backend,
  BackendCall,
  BackendRequest,
  BackendResponse,
  BackendStream,
  CallContext,
  HopContext,
  Operation,
  StreamLimits,
  Tier,
  UploadBody,
  Usage,
} from '../contracts/backend.js';
import type { JsonObject } from '../contracts/json.js';
import type { DataTag, ModelTarget, PolicyModule } from '../contracts/policy.js';
import type {
  AssignmentUnit,
  ReleaseSlotResolver,
  SlotAssignment,
  SlotOutput,
} from '../contracts/slot-resolver.js';
import type { InvokeOptions, TaggedSource } from '../contracts/stage.js';
import type { SpendBudget } from '../contracts/cost-ledger.js';
import type { TraceSpan } from '../contracts/trace.js';
import type { Clock } from '../core/clock.js';
import { callCost, demandOf, expectedCost, FREE, type Price } from '../core/cost.js';
import { abortReason } from '../core/deadline.js';
import { syError, toSwitchyardError, type SwitchyardError } from '../core/errors.js';
import { events, publish, type DegradedAnswerEvent } from '../core/events.js';
import { extend } from '../core/objects.js';
import type { AdmissionController, Ticket } from '../admission/admission-controller.js';
import type { Estimate } from '../admission/quotas.js';
import { OnnxBackend } from '../backends/onnx/onnx-backend.js';
import { featurize } from '../backends/onnx/text-features.js';
import { CLASSIFY_PROMPT, comparableOutput, parseLabel, rankedScores } from './outputs.js';
import { endCallSpan, startCallSpan } from './call-span.js';

/** A servable model: its primary backend and its guarded call chain (gate, retries, breaker, fallback). */
export interface ModelHandle {
  readonly name: string;
  /** The primary backend: describes the model, answers KServe metadata and readiness. */
  readonly backend: Backend;
  readonly call: BackendCall;
  readonly operations: ReadonlySet<Operation>;
}

/** What the pipeline knows of a model from config: where it runs and what it costs. */
export interface ModelFacts {
  readonly tier: Tier;
  readonly price: Price;
  /** The gateway node that runs it (residency of model input); default: this node. */
  readonly node?: string;
  /** The name the upstream knows (the version a chat model reports). */
  readonly upstreamModel?: string;
  /** Where it runs (#17): region and jurisdiction (residency of model input). */
  readonly region?: string;
  readonly jurisdiction?: string;
  /** Served by a parent gateway (`backend: switchyard`, #17). */
  readonly parent?: boolean;
}

export type CallOrigin = 'direct' | 'journey' | 'shadow' | 'replay';

/**
 * What a replay runs (#15): calls that ask for `replaces` (a model or release slot) go to
 * `model` (at `version`, when given) instead of where release management would send them.
 */
export interface ReplayCandidate {
  readonly replaces: string;
  readonly model: string;
  readonly version?: string;
}

/** A replay's scope (origin `replay`): its candidate, and whether its calls are logged. */
export interface ReplayScope {
  readonly candidate?: ReplayCandidate;
  /** Keep the replay's model calls in the inference log (filed under the replayed request). */
  readonly log: boolean;
}

/** One client request's part in every model call it makes. Opened by `ModelPipeline.open`. */
export interface ScopeRequest {
  readonly requestId: string;
  readonly tenant: string;
  readonly keyId: string;
  readonly trafficClass: string;
  readonly signal: AbortSignal;
  /** Monotonic ms. */
  readonly deadlineAt: number;
  readonly origin: CallOrigin;
  /** Every attempt of every call, in order (the request's route). */
  readonly attempts: AttemptRecord[];
  /** Who the request is for, as release assignment sees it (user, geo, device, attributes). */
  readonly unit?: Omit<AssignmentUnit, 'tenant' | 'trafficClass' | 'requestId'>;
  /** Personal data the client declared its request carries (direct calls): checked, never stripped. */
  readonly data?: readonly DataTag[];
  /** Expected usage, reserved against quotas; `undefined`: charge no quota (shadow, replay). */
  readonly estimate: Estimate | undefined;
  /** A request that calls no model (a data route): only request-rate quotas apply. */
  readonly requestsOnly?: boolean;
  /** The span its calls hang under (#15): the request's, or a journey stage's; undefined untraced. */
  readonly span?: TraceSpan;
  /** What a parent gateway gets besides the deadline, class and request id (#17). */
  readonly hop?: HopContext;
  /** Origin `replay` only: the candidate and the logging choice (#15). */
  readonly replay?: ReplayScope;
}

export interface CallScope extends ScopeRequest {
  readonly ticket: Ticket;
  /** What the request's calls used so far. */
  readonly used: { inputTokens: number; outputTokens: number; cost: number; calls: number };
}

/** One model call: the operation, the name as asked, and the request in its wire format. */
export interface CallSpec {
  /** `responses`: a Responses API request for an upstream that speaks it (a chat model). */
  readonly op: Operation | 'classify' | 'responses';
  readonly model: string;
  /** chat, embeddings, infer: the request body. */
  readonly body?: JsonObject;
  /** classify: the text to label. */
  readonly text?: string;
  /** transcriptions: the multipart upload, streamed to the upstream (`body` holds its fields). */
  readonly upload?: UploadBody;
  readonly opts?: InvokeOptions;
  /** A direct API call: the tenant must be allowed the name it asked for. */
  readonly direct?: boolean;
  /** A stream's idle and duration bounds after its first event (#16). */
  readonly streamLimits?: StreamLimits;
}

/** What one call answered, and how it was routed and priced. */
export interface CallResult {
  readonly response: BackendResponse;
  readonly model: string;
  readonly servedBy: string;
  readonly version: string;
  readonly tier: Tier;
  readonly cost: number;
  readonly ms: number;
  readonly attempts: string;
  readonly reason: string;
  readonly withheld: readonly string[];
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** The tokens were counted by the gateway's tokenizer, not reported by the upstream. */
  readonly estimated: boolean;
  /** classify: labels by score, best first. */
  readonly scores?: readonly { readonly label: string; readonly score: number }[];
}

export interface StreamResult {
  readonly stream: BackendStream;
  readonly model: string;
  readonly reason: string;
}

export interface PipelineOptions {
  readonly models: ReadonlyMap<string, ModelHandle>;
  /** Output tokens reserved for a chat request that sets no max_tokens. */
  readonly defaultOutputTokens: number;
  readonly facts: (model: string) => ModelFacts | undefined;
  readonly mayUse: (tenant: string, model: string) => boolean;
  readonly clock: Clock;
  readonly admission?: AdmissionController | undefined;
  readonly release?: ReleaseSlotResolver | undefined;
  readonly policy?: PolicyModule | undefined;
  /** Tenants' spend budgets, from the cost ledger (#15): checked when a request is admitted. */
  readonly budget?: SpendBudget | undefined;
}

interface Target {
  readonly name: string;
  readonly handle: ModelHandle;
  readonly facts: ModelFacts;
  readonly version: string | undefined;
  readonly assignment: SlotAssignment | undefined;
  readonly slot: string;
  readonly reason: string;
}

interface Prepared {
  readonly request: BackendRequest;
  readonly withheld: readonly string[];
  readonly policyException: boolean;
  /** classify on an in-process classifier: its labels. */
  readonly labels?: readonly string[];
}

/**
 * The one path of every model call (#14): a direct OpenAI or KServe call, every call a journey
 * stage makes, every shadow copy and replay goes through `call`/`stream`, in this order:
 *
 * - resolve: the name asked for, the mode's substitute, then the release slot (experiments,
 *   canaries, bandits; a model's name is its default slot), to one model and version;
 * - policy: the model-input rule of the target's tier and location for every tagged datum in
 *   the input: stripped when the caller can rebuild without it, refused otherwise; each is a
 *   policy exception (an event, and the release's `policy_exception_rate`);
 * - admit: quotas were reserved when the request's scope opened (`open`); the backend's own
 *   concurrency gate is an interceptor of its call chain, so every backend is gated;
 * - call: the model's interceptor chain (deadline, retries, breaker, gate, fallback);
 * - settle: usage (from the stream's chunks for streams) priced by the one cost function and
 *   charged to the scope's quota ticket;
 * - record: one `modelCall` event (route, versions, cost, outcome), and the release report
 *   (exposure, outcome, shadow copies).
 *
 * Routes parse and shape answers; they never re-implement a step.
 */
export class ModelPipeline {
  /** What config says of each model, read once (a runtime's config never changes). */
  private readonly known = new Map<string, ModelFacts | undefined>();
  private readonly kinds = new Map<string, string>();

  constructor(private readonly o: PipelineOptions) {}

  get models(): ReadonlyMap<string, ModelHandle> {
    return this.o.models;
  }

  facts(model: string): ModelFacts | undefined {
    if (this.known.has(model)) return this.known.get(model);
    const f = this.o.facts(model);
    this.known.set(model, f);
    return f;
  }

  /** What a direct call is expected to use, priced for the model it names (quota reservations). */
  estimate(op: Operation, body: JsonObject, model: string): Estimate {
    const d = demandOf(op, body, this.o.defaultOutputTokens);
    const price = this.facts(model)?.price ?? FREE;
    return { tokens: d.inputTokens + d.outputTokens, spend: expectedCost(price, d) };
  }

  /**
   * The checks of a direct call that need no admission: the model exists, the tenant may use
   * it, it serves the operation. Routes run it before opening a scope, so a request for a model
   * that does not exist never takes quota.
   */
  preflight(tenant: string, model: string, op: Operation): ModelHandle {
    const handle = this.o.models.get(model);
    if (handle === undefined)
      throw syError('SY_ERR_MODEL_NOT_FOUND', JSON.stringify(model.slice(0, 200)), {
        param: 'model',
      });
    if (!this.o.mayUse(tenant, model))
      throw syError('SY_ERR_MODEL_FORBIDDEN', model, { param: 'model' });
    if (!handle.operations.has(op))
      throw syError('SY_ERR_OPERATION_UNSUPPORTED', `${model} does not serve ${op}`, {
        param: 'model',
      });
    return handle;
  }

  /** Admits a request (class, mode, quotas) and opens the scope its model calls share. */
  async open(req: ScopeRequest): Promise<CallScope> {
    const ac = this.o.admission;
    // A spent budget refuses before any quota is reserved (shadow and replay charge nothing).
    if (req.estimate !== undefined && req.requestsOnly !== true) this.o.budget?.admit(req.tenant);
    if (ac === undefined || req.estimate === undefined)
      return extend(req, {
        ticket: OPEN_TICKET,
        used: { inputTokens: 0, outputTokens: 0, cost: 0, calls: 0 },
      });
    const span = req.span?.child('admission', 'internal', {
      'switchyard.class': req.trafficClass,
      'switchyard.tenant': req.tenant,
    });
    let ticket: Ticket;
    try {
      ticket = await ac.begin({
        tenant: req.tenant,
        keyId: req.keyId,
        trafficClass: req.trafficClass,
        estimate: req.estimate,
        ...(req.requestsOnly === true ? { requestsOnly: true } : {}),
      });
    } catch (err) {
      if (span !== undefined) {
        const e = toSwitchyardError(err);
        span.fail(e.code, e.message);
      }
      throw err;
    } finally {
      span?.end();
    }
    return extend(req, { ticket, used: { inputTokens: 0, outputTokens: 0, cost: 0, calls: 0 } });
  }

  /** Settles the scope's quotas to what its calls used. Idempotent; call it when the request ends. */
  close(scope: CallScope): void {
    scope.ticket.settle();
  }

  /**
   * Resolve and policy, shared by `call` and `stream`: the target, the request prepared for it
   * (or the refusal, settled and recorded), and the call context its interceptors get.
   */
  private begin(scope: CallScope, spec: CallSpec, stream: boolean) {
    const t0 = this.o.clock.now();
    const target = this.resolve(scope, spec);
    const attempts: AttemptRecord[] = [];
    const span = scope.span === undefined ? undefined : this.span(scope.span, spec, target);
    let prepared: Prepared;
    try {
      prepared = this.prepare(scope, spec, target);
    } catch (err) {
      const e = toSwitchyardError(err);
      const d = this.finish(scope, spec, target, attempts, t0, undefined, e, stream, true);
      if (span !== undefined) endCallSpan(span, traced(d, target), undefined, e);
      throw e;
    }
    const base = this.context(scope, attempts, spec, span);
    // A stream is bounded by its own limits once its first event is in hand (#16).
    const ctx: CallContext =
      spec.streamLimits === undefined ? base : extend(base, { stream: spec.streamLimits });
    return { t0, target, attempts, span, prepared, ctx };
  }

  async call(scope: CallScope, spec: CallSpec): Promise<CallResult> {
    const { t0, target, attempts, span, prepared, ctx } = this.begin(scope, spec, false);
    let response: BackendResponse | undefined;
    let error: SwitchyardError | undefined;
    try {
      response = await target.handle.call.call(prepared.request, ctx);
    } catch (err) {
      error = scope.signal.aborted ? abortReason(scope.signal) : toSwitchyardError(err);
    }
    let scores: CallResult['scores'];
    if (response !== undefined && spec.op === 'classify') {
      try {
        scores =
          prepared.labels === undefined
            ? parseLabel(response.json)
            : rankedScores(target.name, response.json, prepared.labels);
      } catch (err) {
        error = toSwitchyardError(err);
      }
    }
    const top = scores?.[0];
    const done = this.finish(
      scope,
      spec,
      target,
      attempts,
      t0,
      response,
      error,
      false,
      prepared.policyException,
      prepared,
      top === undefined ? undefined : { label: top.label, score: top.score },
    );
    if (span !== undefined) endCallSpan(span, traced(done, target), response, error);
    if (error !== undefined || response === undefined) throw error ?? syError('SY_ERR_INTERNAL');
    return extend(done, scores === undefined ? { response } : { response, scores });
  }

  /**
   * A streamed call (chat). Resolves once the first event is in hand; settle and record happen
   * when the stream ends, is cut, or is cancelled, from the usage its chunks carried.
   */
  async stream(scope: CallScope, spec: CallSpec): Promise<StreamResult> {
    const { t0, target, attempts, span, prepared, ctx } = this.begin(scope, spec, true);
    let inner: BackendStream;
    try {
      inner = await target.handle.call.stream(prepared.request, ctx);
    } catch (err) {
      const e = scope.signal.aborted ? abortReason(scope.signal) : toSwitchyardError(err);
      const d = this.finish(
        scope,
        spec,
        target,
        attempts,
        t0,
        undefined,
        e,
        true,
        prepared.policyException,
      );
      if (span !== undefined) endCallSpan(span, traced(d, target), undefined, e);
      throw e;
    }
    // The attempts up to the first event are the route the answer's headers show now.
    const base = scope.attempts.length;
    for (const a of attempts) scope.attempts.push(a);
    const shown = attempts.length;
    let ended = false;
    const end = (error: SwitchyardError | undefined): void => {
      if (ended) return;
      ended = true;
      // A stream cut after its first event turns its attempt's record into the failure.
      for (let i = 0; i < shown; i++) scope.attempts[base + i] = attempts[i]!;
      const usage = inner.usage();
      const response = { json: {}, ...(usage === undefined ? {} : { usage }) };
      const d = this.finish(
        scope,
        spec,
        target,
        attempts,
        t0,
        response,
        error,
        true,
        prepared.policyException,
        prepared,
        undefined,
        shown,
      );
      if (span !== undefined)
        endCallSpan(span, traced(d, target), response, error, inner.finishReasons?.());
    };
    const stream: BackendStream = {
      contentType: inner.contentType,
      firstEventMs: inner.firstEventMs,
      ...(inner.headers === undefined ? {} : { headers: inner.headers }),
      usage: () => inner.usage(),
      chunks: settleAtEnd(inner.chunks, end, scope.signal),
      cancel: () => {
        inner.cancel();
        end(scope.signal.aborted ? abortReason(scope.signal) : undefined);
      },
    };
    return { stream, model: target.name, reason: target.reason };
  }

  /** The kind of a model's backend (`openai`, `kserve`, `onnx`, ...), read once per model. */
  private systemOf(model: string): string {
    let kind = this.kinds.get(model);
    if (kind === undefined) {
      kind = this.o.models.get(model)?.backend.describe().kind ?? 'unknown';
      this.kinds.set(model, kind);
    }
    return kind;
  }

  /** The version a request would get now (ONNX version, upstream model name). */
  versionOf(model: string): string {
    const handle = this.o.models.get(model);
    if (handle?.backend instanceof OnnxBackend) {
      try {
        return handle.backend.current().version;
      } catch {
        return '';
      }
    }
    return this.facts(model)?.upstreamModel ?? model;
  }

  // ---- resolve ----

  private resolve(scope: CallScope, spec: CallSpec): Target {
    const asked = spec.model;
    if (spec.direct === true && spec.op !== 'classify')
      this.preflight(scope.tenant, asked, spec.op === 'responses' ? 'chat' : spec.op);
    let name = asked;
    let reason = 'default';
    let version = spec.opts?.version;
    let assignment: SlotAssignment | undefined;
    const slot = spec.opts?.slot ?? asked;
    const sub = this.o.admission?.switches().model_substitutes[asked];
    const candidate = scope.replay?.candidate;
    if (candidate !== undefined && (candidate.replaces === asked || candidate.replaces === slot)) {
      // A replay's candidate takes the place of the model or slot it replaces (#15).
      // A version the request pinned holds only for the model it named.
      version = candidate.version ?? (candidate.model === name ? version : undefined);
      name = candidate.model;
      reason = `replay:${candidate.model}${candidate.version === undefined ? '' : `@${candidate.version}`}`;
    } else if (sub !== undefined && this.o.models.has(sub) && this.o.mayUse(scope.tenant, sub)) {
      name = sub;
      reason = `mode:${sub}`;
    } else if (version === undefined && this.o.release !== undefined) {
      assignment = this.o.release.resolve(slot, {
        tenant: scope.tenant,
        trafficClass: scope.trafficClass,
        requestId: scope.requestId,
        ...scope.unit,
      });
      if (assignment !== undefined) {
        if (this.o.models.has(assignment.model)) {
          name = assignment.model;
          version = assignment.version;
        }
        reason = assignment.reason;
      }
    }
    const handle = this.o.models.get(name);
    if (handle === undefined)
      throw syError('SY_ERR_MODEL_NOT_FOUND', JSON.stringify(name.slice(0, 200)), {
        param: 'model',
      });
    const op = spec.op === 'classify' ? undefined : spec.op === 'responses' ? 'chat' : spec.op;
    if (op !== undefined && !handle.operations.has(op))
      throw syError('SY_ERR_OPERATION_UNSUPPORTED', `${name} does not serve ${op}`, {
        param: 'model',
      });
    const facts = this.facts(name) ?? { tier: 'central', price: FREE };
    return { name, handle, facts, version, assignment, slot, reason };
  }

  // ---- policy, and the request for the target ----

  private prepare(scope: CallScope, spec: CallSpec, target: Target): Prepared {
    const tagged = taggedOf(scope, spec);
    const policy = this.o.policy;
    let withheld: readonly string[] = NONE;
    let exception = false;
    let input: JsonObject | string | undefined = spec.body ?? spec.text;
    if (tagged.length > 0 && policy !== undefined) {
      const where = whereOf(target.name, target.facts);
      const denied: { source: TaggedSource; code: string; reason: string }[] = [];
      for (const t of tagged) {
        const d = policy.decide('model_input', t.tag, where);
        if (!d.allow) denied.push({ source: t, code: d.code, reason: d.reason });
      }
      if (denied.length > 0) {
        exception = true;
        const rebuild = spec.opts?.rebuild;
        withheld = [...new Set(denied.map((d) => d.source.source))];
        let strip = rebuild !== undefined && denied.every((d) => d.source.source !== 'request');
        if (rebuild !== undefined && strip) {
          // A request that cannot be built without the withheld data is refused, not malformed.
          try {
            input = rebuild(new Set(withheld));
          } catch {
            strip = false;
          }
        }
        for (const d of denied)
          publish(events.policyException, {
            tenant: scope.tenant,
            model: target.name,
            origin: scope.origin,
            action: strip ? 'strip' : 'refuse',
            code: d.code,
            label: d.source.tag.label,
            source: d.source.source,
          });
        if (!strip) {
          const first = denied[0]!;
          throw syError(first.code as 'SY_ERR_POLICY_DENIED', `${target.name}: ${first.reason}`);
        }
      }
    }
    return extend(this.request(spec, target, input), { withheld, policyException: exception });
  }

  private request(
    spec: CallSpec,
    target: Target,
    input: JsonObject | string | undefined,
  ): Omit<Prepared, 'withheld' | 'policyException'> {
    const model = target.name;
    const v = target.version === undefined ? {} : { version: target.version };
    const body = typeof input === 'object' ? input : {};
    const text = typeof input === 'string' ? input : '';
    switch (spec.op) {
      case 'chat':
        return { request: { op: 'chat', body: extend(body, { model }) } };
      case 'responses':
        return { request: { op: 'responses', body: extend(body, { model }) } };
      case 'embeddings':
        return {
          request: {
            op: 'embeddings',
            body: typeof input === 'string' ? { model, input: text } : extend(body, { model }),
          },
        };
      case 'infer':
        return { request: { op: 'infer', body, ...v } };
      // The OpenAI pass-through operations (#16 part 4): the body as sent, for the resolved model.
      case 'completions':
      case 'moderations':
      case 'images':
      case 'speech':
        return { request: { op: spec.op, body: extend(body, { model }) } };
      case 'transcriptions':
        if (spec.upload === undefined)
          throw syError('SY_ERR_INTERNAL', 'a transcription call without its upload');
        return {
          request: { op: 'transcriptions', body: extend(body, { model }), upload: spec.upload },
        };
      case 'classify': {
        const backend = target.handle.backend;
        const card = backend instanceof OnnxBackend ? cardOf(backend, target.version) : undefined;
        if (card?.task === 'classifier' && card.text !== undefined) {
          const features = featurize([text], card.text);
          return {
            request: {
              op: 'infer',
              body: {
                inputs: [
                  {
                    name: card.text.input,
                    datatype: 'FP32',
                    shape: [1, card.text.dims],
                    data: Array.from(features),
                  },
                ],
                ...(card.output === undefined ? {} : { outputs: [{ name: card.output }] }),
              },
              ...v,
            },
            labels: card.labels ?? [],
          };
        }
        if (!target.handle.operations.has('chat'))
          throw syError('SY_ERR_OPERATION_UNSUPPORTED', `${model} cannot classify text`);
        return {
          request: {
            op: 'chat',
            body: {
              model,
              messages: [
                { role: 'system', content: CLASSIFY_PROMPT },
                { role: 'user', content: text },
              ],
            },
          },
        };
      }
    }
  }

  // ---- call ----

  private context(
    scope: CallScope,
    attempts: AttemptRecord[],
    spec: CallSpec,
    span: TraceSpan | undefined,
  ): CallContext {
    const tags = taggedOf(scope, spec);
    const policy = this.o.policy;
    // Residency of every fallback link (#17): the same model-input rule the target passed.
    const refuses =
      policy === undefined || !tags.some((t) => t.tag.jurisdiction !== undefined)
        ? undefined
        : (model: string): string | undefined => {
            const where = whereOf(model, this.facts(model) ?? { tier: 'central', price: FREE });
            for (const t of tags) {
              if (t.tag.jurisdiction === undefined) continue;
              const d = policy.decide('model_input', t.tag, where);
              if (!d.allow && d.code === 'SY_ERR_RESIDENCY') return `outside ${t.tag.jurisdiction}`;
            }
            return undefined;
          };
    return {
      requestId: scope.requestId,
      tenant: scope.tenant,
      trafficClass: scope.trafficClass,
      signal: scope.signal,
      deadlineAt: scope.deadlineAt,
      attempts,
      ...(span === undefined ? {} : { span }),
      ...(scope.hop === undefined ? {} : { hop: scope.hop }),
      ...(refuses === undefined ? {} : { refuses }),
    };
  }

  /**
   * Why a model may not take this call's tagged input (residency, #17), or undefined. Journeys
   * skip such candidates and say why in the route.
   */
  residencyOf(
    scope: CallScope,
    model: string,
    inputs?: readonly TaggedSource[],
  ): string | undefined {
    const policy = this.o.policy;
    if (policy === undefined) return undefined;
    const tags = taggedOf(
      scope,
      inputs === undefined ? { op: 'chat', model } : { op: 'chat', model, opts: { inputs } },
    );
    const where = whereOf(model, this.facts(model) ?? { tier: 'central', price: FREE });
    for (const t of tags) {
      if (t.tag.jurisdiction === undefined) continue;
      const d = policy.decide('model_input', t.tag, where);
      if (!d.allow && d.code === 'SY_ERR_RESIDENCY') return `outside ${t.tag.jurisdiction}`;
    }
    return undefined;
  }

  /** The call's span, under the scope's (#15): only traced requests get here. */
  private span(parent: TraceSpan, spec: CallSpec, target: Target): TraceSpan {
    return startCallSpan(
      parent,
      spec.op,
      spec.model,
      target.handle.backend.describe().kind,
      target.name,
      target.reason,
    );
  }

  // ---- settle and record ----

  private finish(
    scope: CallScope,
    spec: CallSpec,
    target: Target,
    attempts: AttemptRecord[],
    t0: number,
    response: BackendResponse | undefined,
    error: SwitchyardError | undefined,
    stream: boolean,
    policyException: boolean,
    prepared?: Prepared,
    output?: SlotOutput,
    /** Attempts already added to the scope's route (a stream's, before its first event). */
    shown = 0,
  ): Omit<CallResult, 'response' | 'scores'> {
    const ms = this.o.clock.now() - t0;
    if (response !== undefined && error === undefined) markDegraded(target, attempts);
    for (let i = shown; i < attempts.length; i++) scope.attempts.push(attempts[i]!);
    const servedBy = lastOk(attempts) ?? target.name;
    const facts = servedBy === target.name ? target.facts : this.facts(servedBy);
    const json = response?.json;
    const reported = json?.['model_version'];
    const version =
      typeof reported === 'string'
        ? reported
        : servedBy === target.name && target.version !== undefined
          ? target.version
          : this.versionOf(servedBy);
    const usage: Usage | undefined = response?.usage;
    // A call that failed before any attempt answered cost nothing; a cut stream costs what it delivered.
    const cost = response === undefined ? 0 : callCost(facts?.price ?? FREE, usage, ms);
    const tokens = (usage?.inputTokens ?? 0) + (usage?.outputTokens ?? 0);
    scope.ticket.charge({ tokens, spend: cost });
    scope.used.inputTokens += usage?.inputTokens ?? 0;
    scope.used.outputTokens += usage?.outputTokens ?? 0;
    scope.used.cost += cost;
    scope.used.calls++;
    const outcome = error === undefined ? 'ok' : error.code;
    const compact = compactAttempts(attempts);
    const a = target.assignment;
    // The record event (#14): built only when someone listens (metrics and the log always do).
    if (events.modelCall.hasSubscribers)
      publish(events.modelCall, {
        requestId: scope.requestId,
        origin: scope.origin,
        tenant: scope.tenant,
        trafficClass: scope.trafficClass,
        op: spec.op,
        requested: spec.model,
        model: target.name,
        servedBy,
        version,
        tier: facts?.tier ?? target.facts.tier,
        system: this.systemOf(servedBy),
        reason: target.reason,
        ...(a?.experiment === undefined ? {} : { experiment: a.experiment }),
        ...(a?.variant === undefined ? {} : { variant: a.variant }),
        stream,
        ms,
        inputTokens: usage?.inputTokens ?? 0,
        outputTokens: usage?.outputTokens ?? 0,
        estimated: usage?.estimated === true,
        cost,
        outcome,
        attempts: compact,
        withheld: prepared?.withheld.length ?? 0,
        ...(scope.unit?.userId === undefined ? {} : { user: scope.unit.userId }),
        ...(scope.span?.recording === true ? { traceId: scope.span.traceId } : {}),
        ...(scope.origin === 'replay' && scope.replay?.log !== true ? { unlogged: true } : {}),
      });
    if (a !== undefined && (a.experiment !== undefined || (a.shadow?.length ?? 0) > 0))
      this.reportRelease(scope, spec, target, prepared, {
        ms,
        outcome,
        fallback: response !== undefined && servedBy !== target.name,
        policyException,
        ...(output !== undefined
          ? { output }
          : json === undefined || stream || prepared === undefined || error !== undefined
            ? {}
            : { output: comparableOutput(prepared.request.op, json) }),
      });
    return {
      model: target.name,
      servedBy,
      version,
      tier: facts?.tier ?? target.facts.tier,
      cost,
      ms,
      attempts: compact,
      reason: target.reason,
      withheld: prepared?.withheld ?? [],
      inputTokens: usage?.inputTokens ?? 0,
      outputTokens: usage?.outputTokens ?? 0,
      estimated: usage?.estimated === true,
    };
  }

  /** Exposure and outcome for the experiment, and shadow copies through this same pipeline. */
  private reportRelease(
    scope: CallScope,
    spec: CallSpec,
    target: Target,
    prepared: Prepared | undefined,
    r: {
      ms: number;
      outcome: string;
      fallback: boolean;
      policyException: boolean;
      output?: SlotOutput;
    },
  ): void {
    const release = this.o.release;
    const a = target.assignment;
    // Shadow copies and replays count no exposure, feed no bandit and mirror nothing (#15).
    if (
      release === undefined ||
      a === undefined ||
      (scope.origin !== 'direct' && scope.origin !== 'journey')
    )
      return;
    release.report(
      {
        inferenceId: scope.requestId,
        slot: target.slot,
        assignment: a,
        ms: r.ms,
        outcome: r.outcome,
        fallback: r.fallback,
        policyException: r.policyException,
        ...(r.output === undefined ? {} : { output: r.output }),
      },
      // An upload is read once: it has no shadow copy.
      prepared === undefined || prepared.request.op === 'transcriptions'
        ? undefined
        : async (shadowTarget, signal) => {
            const shadowScope: CallScope = {
              ...scope,
              requestId: `${scope.requestId}:shadow`,
              trafficClass: 'batch',
              origin: 'shadow',
              signal,
              deadlineAt: this.o.clock.now() + 10_000,
              attempts: [],
              estimate: undefined,
              ticket: OPEN_TICKET,
              used: { inputTokens: 0, outputTokens: 0, cost: 0, calls: 0 },
            };
            const res = await this.call(shadowScope, {
              ...spec,
              model: shadowTarget.model,
              opts: {
                ...spec.opts,
                ...(shadowTarget.version === undefined ? {} : { version: shadowTarget.version }),
              },
              direct: false,
            });
            return spec.op === 'classify'
              ? { label: res.scores?.[0]?.label ?? '', score: res.scores?.[0]?.score ?? 0 }
              : comparableOutput(prepared.request.op, res.response.json);
          },
    );
  }
}

const NONE: readonly never[] = [];

/** What a call's span reports of its outcome. */
function traced(d: Omit<CallResult, 'response' | 'scores'>, target: Target) {
  return {
    servedBy: d.servedBy,
    version: d.version,
    tier: d.tier,
    attempts: d.attempts,
    cost: d.cost,
    experiment: target.assignment?.experiment,
    variant: target.assignment?.variant,
  };
}

/** The tagged data of a call: what its journey put in, and what the client declared. */
function taggedOf(scope: ScopeRequest, spec: CallSpec): readonly TaggedSource[] {
  const inputs = spec.opts?.inputs;
  const declared = scope.data;
  return declared === undefined || declared.length === 0
    ? (inputs ?? NONE)
    : [...(inputs ?? []), ...declared.map((tag) => ({ source: 'request', tag }))];
}

/** Where a model's input goes, as the policy module sees it. */
function whereOf(model: string, facts: ModelFacts): ModelTarget {
  return {
    model,
    tier: facts.tier,
    ...(facts.node === undefined ? {} : { node: facts.node }),
    ...(facts.jurisdiction === undefined ? {} : { jurisdiction: facts.jurisdiction }),
  };
}

const OPEN_TICKET: Ticket = {
  trafficClass: 'interactive',
  charge: () => undefined,
  settle: () => undefined,
};

function cardOf(backend: OnnxBackend, version: string | undefined) {
  try {
    return backend.current(version).card;
  } catch {
    return undefined;
  }
}

/**
 * Marks an answer degraded (#17): served from the stale cache, by a fallback after the parent
 * gateway failed, or degraded at the parent. The last good attempt carries the reason (the route
 * and `x-switchyard-degraded` show it) and the answer is counted.
 */
function markDegraded(target: Target, attempts: AttemptRecord[]): void {
  let i = attempts.length - 1;
  while (i >= 0 && attempts[i]!.outcome !== 'ok') i--;
  if (i < 0) return;
  const a = attempts[i]!;
  let reason: DegradedAnswerEvent['reason'];
  if (a.degraded !== undefined) reason = a.degraded === 'stale-cache' ? 'stale_cache' : 'parent';
  else if (
    target.facts.parent === true &&
    a.backend !== target.name &&
    attempts.some((x) => x.backend === target.name && x.outcome !== 'ok')
  ) {
    attempts[i] = { ...a, degraded: 'parent-unavailable' };
    reason = 'local_fallback';
  } else return;
  publish(events.degradedAnswer, { model: target.name, reason });
}

function lastOk(attempts: readonly AttemptRecord[]): string | undefined {
  for (let i = attempts.length - 1; i >= 0; i--)
    if (attempts[i]!.outcome === 'ok') return attempts[i]!.backend;
  return undefined;
}

/** `chat-large#1:UPSTREAM_ERROR>chat-backup#1:ok`; a parent's route in `[...]`, degraded `~why`. */
export function compactAttempts(attempts: readonly AttemptRecord[]): string {
  let out = '';
  for (const a of attempts) {
    const outcome = a.outcome.startsWith('SY_ERR_') ? a.outcome.slice(7) : a.outcome;
    out += `${out === '' ? '' : '>'}${a.backend}#${a.attempt}:${outcome}`;
    // A parent gateway's own route, folded in (#17): `chat#1:ok[chat-central#1:ok]`.
    if (a.remote !== undefined) out += `[${a.remote}]`;
    if (a.degraded !== undefined) out += `~${a.degraded}`;
  }
  return out;
}

async function* settleAtEnd(
  chunks: AsyncIterable<Buffer>,
  end: (error: SwitchyardError | undefined) => void,
  signal: AbortSignal,
): AsyncGenerator<Buffer> {
  try {
    yield* chunks;
    end(undefined);
  } catch (err) {
    end(signal.aborted ? abortReason(signal) : toSwitchyardError(err));
    throw err;
  } finally {
    end(signal.aborted ? abortReason(signal) : undefined);
  }
}
