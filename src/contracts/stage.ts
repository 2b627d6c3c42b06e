/**
 * The Stage contract of journeys (issue #4). A journey is a small graph of stages compiled from
 * config. Each stage is a pure-ish function of (context, state) that returns an explicit result:
 * `continue` (optionally to a named stage), `respond` (the journey's answer) or `fail`. The
 * runner alone decides what runs next (Envoy's FilterHeadersStatus); a stage never signals
 * control flow by throwing. Every result carries a short `code` and a one-line `reason`, which
 * become the route of the request (`x-switchyard-route`, the response body and the log).
 *
 * Stages reach models only through the `ModelInvoker` port, and which concrete model a slot
 * means through the `SlotResolver` port, so the orchestrator depends on nothing but contracts.
 */
import type { CallContext, Tier, Usage } from './backend.js';
import type { Cache } from './cache.js';
import type { FeatureSource } from './feature-source.js';
import type { FeatureRead, ShardHit } from './inference-log.js';
import type { JsonObject, JsonValue } from './json.js';
import type { DataTag, PolicyModule } from './policy.js';
import type { SlotAssignment } from './slot-resolver.js';
import type { VectorRetriever } from './vector-index.js';
import type { TraceSpan } from './trace.js';

/** Money per unit, in the config's currency units. */
export interface CostModel {
  readonly inPer1k: number;
  readonly outPer1k: number;
  readonly perCall: number;
  /** Compute time: cost per second of model time (in-process models, dedicated hardware). */
  readonly perSecond: number;
  /** Per image generated (#16 part 4); absent: 0. */
  readonly perImage?: number;
  /** Per second of audio an upstream reported transcribing (#16 part 4); absent: 0. */
  readonly perAudioSecond?: number;
}

/** What the router and stages may know about a model without calling it. */
export interface ModelInfo {
  readonly name: string;
  readonly tier: Tier;
  /** `chat`, `embeddings`, `infer`, and `classify` for models that can label text. */
  readonly operations: ReadonlySet<'chat' | 'embeddings' | 'infer' | 'classify'>;
  /** The version a request would get now (ONNX version, upstream model name). */
  readonly version: string;
  readonly cost: CostModel;
  /** Configured latency prior (ms) used until enough traffic has been observed. */
  readonly priorMs: number | undefined;
  /** False while the model cannot serve (breaker open, nothing loaded). */
  readonly available: boolean;
}

/** Personal data a model call's input carries: where it came from in the journey, and its tag. */
export interface TaggedSource {
  /** `features.<name>` or `stage:<id>` (a stage output derived from tagged data). */
  readonly source: string;
  readonly tag: DataTag;
}

/**
 * How a stage wants one model call made. Every call goes through the model-call pipeline
 * (resolve · policy · admit · call · settle · record); these are its inputs besides the request.
 */
export interface InvokeOptions {
  /** The release slot to resolve (experiments, canaries, bandits); default: the model's name. */
  readonly slot?: string;
  /** A pinned model version (no release resolution). */
  readonly version?: string;
  /** Personal data in the request, for the model-input rule of the target's tier and location. */
  readonly inputs?: readonly TaggedSource[];
  /**
   * The request again without the withheld sources: the pipeline strips denied data instead of
   * refusing the call. Returns what the original argument was (a body, or a text).
   */
  readonly rebuild?: (withheld: ReadonlySet<string>) => JsonObject | string;
}

/** The outcome of one model call as seen by a stage. */
export interface InvokeResult {
  readonly json: JsonObject;
  readonly usage: Usage | undefined;
  /** The model that actually answered (a fallback chain may have moved on). */
  readonly servedBy: string;
  readonly version: string;
  readonly tier: Tier;
  /** What the call cost (the one cost function, from the model that answered). */
  readonly cost: number;
  /** Compact attempts, such as `chat-large#1:UPSTREAM_ERROR>chat-backup#1:ok`. */
  readonly attempts: string;
  /** Why this model (and version) served: `default`, `exp:ranker-ab/treatment`, `mode:chat-small`. */
  readonly reason: string;
  /** Sources the model-input rule withheld from this call (stripped, not sent). */
  readonly withheld: readonly string[];
}

export interface ClassifyResult extends InvokeResult {
  /** Scores by label, highest first. */
  readonly scores: readonly { readonly label: string; readonly score: number }[];
}

export interface EmbedResult extends InvokeResult {
  readonly vector: Float32Array;
}

/**
 * How stages call models: the model-call pipeline bound to the journey's request (its tenant,
 * class, deadline and quota ticket). Every call is resolved (aliases, release slots, mode
 * substitutes), checked against the model-input policy, gated, called through the model's
 * interceptors (deadline, retry, breaker, fallback), priced and recorded. Errors are
 * SwitchyardErrors.
 */
export interface ModelInvoker {
  info(model: string): ModelInfo | undefined;
  chat(
    model: string,
    body: JsonObject,
    call: CallContext,
    opts?: InvokeOptions,
  ): Promise<InvokeResult>;
  embed(model: string, text: string, call: CallContext, opts?: InvokeOptions): Promise<EmbedResult>;
  classify(
    model: string,
    text: string,
    call: CallContext,
    opts?: InvokeOptions,
  ): Promise<ClassifyResult>;
  infer(
    model: string,
    body: JsonObject,
    call: CallContext,
    opts?: InvokeOptions,
  ): Promise<InvokeResult>;
  /**
   * Why the request's tagged data (and `inputs`) may not go to `model`, such as `outside eu`
   * (residency, #17), or undefined when it may. Stages skip such candidates.
   */
  placement?(model: string, inputs?: readonly TaggedSource[]): string | undefined;
}

/** The concrete model (and version) a slot means for one request, and why (`reason`). */
export type SlotChoice = SlotAssignment;

/** A model used within a stage, as the route shows it. */
export interface ModelUse {
  readonly model: string;
  readonly version: string;
  readonly tier: Tier;
  readonly cost: number;
  readonly ms: number;
  /** `ok`, or the error code the call ended with. */
  readonly outcome: string;
  /** Set when retries or a fallback chain were involved. */
  readonly attempts?: string;
}

/** One stage as it ran. The route of a request is the list of these, in order. */
export interface RouteEntry {
  readonly stage: string;
  readonly kind: string;
  readonly outcome: 'continue' | 'respond' | 'fail';
  /** Short machine code: `hit`, `miss`, `escalated`, `to:answer`, `downgrade:chat-small`, ... */
  readonly code: string;
  /** One line a human can read. */
  readonly reason: string;
  /** Ms from the journey's start to this stage's start. */
  readonly at: number;
  readonly ms: number;
  readonly tier?: Tier;
  readonly model?: string;
  readonly version?: string;
  /** Cost of this stage's model calls (children included). */
  readonly cost: number;
  readonly models?: readonly ModelUse[];
  /** Sub-stages (parallel branches, fallback alternatives). */
  readonly children?: readonly RouteEntry[];
}

/** Decisions the route counts as "work avoided" or degradation (metrics, warnings). */
export type JourneyDecision =
  | 'cache_hit'
  | 'semantic_hit'
  | 'stale_served'
  | 'escalation'
  | 'downgrade'
  | 'fallback'
  /** A `features` stage read values from a stale local cache: the feature store was away (#17). */
  | 'stale_features';

/** What a stage asks the runner to write into the state (stages never write it themselves). */
export interface StateUpdate {
  /** Policy tags of this stage's output, when it is personal data of its own (retrieved items, a model's answer). */
  readonly taint?: readonly DataTag[];
  /**
   * This stage's output was built from tagged data (`roots`) and can be built again without
   * some of it: a later model call that may not see a root gets the output rebuilt without it.
   */
  readonly derived?: {
    readonly roots: readonly TaggedSource[];
    readonly recompute: (withheld: ReadonlySet<string>) => JsonValue;
  };
  /** Policy tags of features read, by feature name. */
  readonly featureTags?: Readonly<Record<string, DataTag>>;
  readonly label?: string;
  readonly confidence?: number;
  readonly features?: Readonly<Record<string, JsonValue>>;
  readonly cacheWrite?: PendingCacheWrite;
  readonly stale?: { readonly value: JsonObject; readonly ageMs: number };
}

export type StageResult =
  | {
      readonly kind: 'continue';
      readonly code: string;
      readonly reason: string;
      /** Stored as the stage's output (`<id>.<path>` in later stages) and as `last`. */
      readonly output?: JsonValue;
      readonly update?: StateUpdate;
      /** Jump to this stage instead of the default next one. */
      readonly next?: string;
      readonly models?: readonly ModelUse[];
      readonly children?: readonly RouteEntry[];
      readonly decisions?: readonly JourneyDecision[];
    }
  | {
      readonly kind: 'respond';
      readonly code: string;
      readonly reason: string;
      readonly body: JsonValue;
      readonly models?: readonly ModelUse[];
      readonly children?: readonly RouteEntry[];
      readonly decisions?: readonly JourneyDecision[];
      /** False for answers that must not be written back to the cache (cached, stale, degraded). */
      readonly cacheable?: boolean;
    }
  | {
      readonly kind: 'fail';
      readonly code: string;
      readonly reason: string;
      /** A SwitchyardError, normally; anything else becomes an internal error. */
      readonly error: Error;
      readonly models?: readonly ModelUse[];
      readonly children?: readonly RouteEntry[];
      readonly decisions?: readonly JourneyDecision[];
    };

/** An answer a cache stage wants written back once the journey responds. */
export interface PendingCacheWrite {
  /** The cache namespace (the journey, and the versions of the models its answers depend on). */
  readonly namespace: string;
  readonly key: string;
  readonly ttlMs: number;
  readonly staleMs: number;
  readonly vector?: Float32Array;
}

/** What a journey carries from stage to stage. Stages read it; the runner writes it. */
export interface JourneyState {
  readonly journey: string;
  /** The request's `input` (a string input arrives as `{ text }`). */
  readonly input: JsonObject;
  /** Request attributes (`attr.<name>` in conditions): user, geo, device, plan, ... */
  readonly attributes: JsonObject;
  /** Outputs of the stages that ran, by stage id. */
  readonly outputs: Map<string, JsonValue>;
  /** The output of the last stage that continued. */
  last: JsonValue | undefined;
  /** Set by the last classify stage. */
  label: string | undefined;
  confidence: number | undefined;
  /** Set by features stages. */
  readonly features: Record<string, JsonValue>;
  /** Filled by cache stages on a miss; written by the runner after a cacheable answer. */
  readonly cacheWrites: PendingCacheWrite[];
  /** A stale answer a cache stage saw: what a stale-if-error fallback serves. */
  stale: { readonly value: JsonObject; readonly ageMs: number } | undefined;
  /**
   * Policy tags of the personal data in the state, by source (`features.<name>`, `stage:<id>`),
   * so the model-input rule can strip what a model may not see (#14). Written by the runner.
   */
  readonly taint: Map<string, readonly DataTag[]>;
  /** Stage outputs built from tagged data, by source (`stage:<id>`): their roots and a rebuild. */
  readonly derived: Map<
    string,
    {
      readonly roots: readonly TaggedSource[];
      readonly recompute: (withheld: ReadonlySet<string>) => JsonValue;
    }
  >;
  /** The stage whose output is `last` (its taint is what `last` carries). */
  lastSource: string | undefined;
  /**
   * Evaluation scaffolding for paths, set only while a stage builds a request synchronously:
   * `reads` collects the sources read; sources in `withheld` read as absent.
   */
  reads: Set<string> | undefined;
  withheld: ReadonlySet<string> | undefined;
}

/** Everything a stage gets besides the state. */
export interface StageContext {
  readonly requestId: string;
  readonly tenant: string;
  readonly trafficClass: string;
  /** Aborts on deadline, client disconnect, or (in parallel branches) when the branch lost. */
  readonly signal: AbortSignal;
  /** Monotonic ms (Clock.now) at which the budget runs out. */
  readonly deadlineAt: number;
  /** Monotonic ms (Clock.now) at which the journey started (route entries' `at` count from it). */
  readonly origin: number;
  /** Ms left of the budget, never negative. */
  remainingMs(): number;
  /** Monotonic ms. */
  now(): number;
  /** Wall-clock epoch ms (cache ages). */
  wall(): number;
  /** A call context for one model call (fresh attempts list, this stage's signal and span). */
  call(): CallContext;
  /** The span of the running stage (or of the journey between stages); undefined when untraced (#15). */
  readonly span?: TraceSpan;
  readonly services: StageServices;
  /** Notes what a stage read for the request's inference record (#15); absent: nobody keeps it. */
  readonly noteRead?: (read: {
    features?: readonly FeatureRead[];
    shards?: readonly ShardHit[];
  }) => void;
}

/** The ports stages use. Optional ones exist only when the gateway is configured with them. */
export interface StageServices {
  readonly models: ModelInvoker;
  readonly cache: Cache;
  readonly features?: FeatureSource;
  readonly retriever?: VectorRetriever;
  readonly policy?: PolicyModule;
}

export interface Stage {
  readonly id: string;
  readonly kind: string;
  /**
   * Runs the stage. A stage that needs no I/O (branch, transform, respond, policy) returns its
   * result as is: the runner goes on without a turn of the microtask queue.
   */
  run(ctx: StageContext, state: JourneyState): StageResult | Promise<StageResult>;
}
