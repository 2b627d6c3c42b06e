import { channel, type Channel } from 'node:diagnostics_channel';
import type { RecordReads } from '../contracts/inference-log.js';

/**
 * What hot code publishes. Metrics, logs and tracing subscribe in `observability/`; nothing in
 * the hot path calls an exporter. Publishing costs nothing when nobody listens.
 */
export interface RequestDoneEvent {
  readonly requestId: string;
  readonly method: string;
  /** The route pattern, such as `/v1/chat/completions` (never the raw URL). */
  readonly route: string;
  /** A configured model name, or '' when none was resolved. */
  readonly model: string;
  readonly tenant: string;
  readonly keyFingerprint: string;
  readonly trafficClass: string;
  readonly status: number;
  readonly code: string | undefined;
  readonly durationMs: number;
  readonly stream: boolean;
  /** The route the request took: the attempts made, in order. */
  readonly path: string;
  readonly error?: Error;
  /** Journey requests: the journey and its full route (the same one the response carries). */
  readonly journey?: string;
  readonly journeyRoute?: object;
  /** What the journey's stages read: features (values only where loggable) and vector shards. */
  readonly reads?: RecordReads;
  /** Degraded decisions taken (fallback, downgrade, stale answer): the log line is a warning. */
  readonly degraded?: readonly string[];
  /** The data subject (`x-switchyard-user`, the OpenAI `user` field, a journey's `user` attribute). */
  readonly user?: string;
  /** The W3C trace id of the request's span, when tracing is on. */
  readonly traceId?: string;
  /**
   * The request and its answer, already redacted by the privacy policy: set by the route only when
   * the inference log keeps payloads for this tenant and journey (#15), so they cost nothing otherwise.
   */
  readonly payload?: { readonly request?: unknown; readonly response?: unknown };
}

export interface UpstreamAttemptEvent {
  readonly backend: string;
  readonly outcome: string;
  readonly durationMs: number;
  readonly attempt: number;
}

export interface FirstTokenEvent {
  readonly model: string;
  readonly ms: number;
}

export interface BreakerStateEvent {
  readonly backend: string;
  readonly state: 'closed' | 'open' | 'half_open';
}

export interface RetryEvent {
  readonly backend: string;
  readonly decision: 'retried' | 'budget_exhausted' | 'no_time';
}

/** A call a parent gateway's replica failed moved to another replica of it (#17). */
export interface ParentFailoverEvent {
  readonly model: string;
  /** The error the replica's attempt ended with. */
  readonly code: string;
}

export interface FallbackEvent {
  readonly model: string;
  readonly from: string;
  readonly to: string;
  readonly code: string;
}

/** One journey run (issue #4): what metrics count as work avoided, escalated or degraded. */
export interface JourneyDoneEvent {
  readonly journey: string;
  readonly tenant: string;
  readonly outcome: 'respond' | 'fail';
  readonly code: string | undefined;
  /** `cache`, the tier of the model that answered, or `none`. */
  readonly answeredBy: string;
  /** `hit`, `semantic_hit`, `stale`, `miss` or `none`. */
  readonly cache: string;
  /** `escalation`, `downgrade`, `fallback`, `cache_hit`, `semantic_hit`, `stale_served`, `stale_features`. */
  readonly decisions: readonly string[];
  readonly cost: number;
  readonly ms: number;
  readonly stages: readonly {
    readonly kind: string;
    readonly outcome: string;
    readonly ms: number;
  }[];
}

export interface ConfigReloadEvent {
  readonly result: 'applied' | 'unchanged' | 'rejected';
}

/** One batch run by an in-process model version. */
export interface ModelBatchEvent {
  readonly model: string;
  readonly version: string;
  readonly rows: number;
  readonly requests: number;
  readonly queueDelaysMs: readonly number[];
  readonly inferMs: number;
  /** Clock ms: when the batch left the queue, and when its answer was back. */
  readonly startedAt: number;
  readonly finishedAt: number;
  /** An inference worker took it from its stage, or the gateway's event loop dispatched it. */
  readonly startedBy: 'worker' | 'gateway';
}

export interface ModelQueueEvent {
  readonly model: string;
  readonly version: string;
  readonly depth: number;
}

/** A request an in-process model refused (queue full) or dropped before it ran (deadline, cancel). */
export interface ModelDropEvent {
  readonly model: string;
  readonly version: string;
  readonly reason: 'queue_full' | 'deadline' | 'cancelled';
}

export interface ModelLoadEvent {
  readonly model: string;
  readonly version: string;
  readonly result: 'loaded' | 'failed' | 'unloaded';
}

// Admission control (#5).
/** One admission outcome: admitted at once, queued first, or refused (and why). */
export interface AdmissionEvent {
  readonly trafficClass: string;
  readonly outcome: 'admitted' | 'queued' | 'shed' | 'rate_limited' | 'quota_exceeded' | 'expired';
  /** `mode`, `curve`, `queue_full`, `evicted`, `queue_timeout`, `deadline`, or the quota's key kind. */
  readonly reason: string;
}

export interface AdmissionModeEvent {
  readonly mode: string;
  readonly previous: string;
  readonly reason: string;
  readonly forced: boolean;
}

/** A concurrency gate's state after its limit moved. */
export interface ConcurrencyLimitEvent {
  readonly gate: string;
  readonly limit: number;
  readonly inFlight: number;
  readonly queued: number;
}

export interface LimiterStateEvent {
  readonly state: 'local' | 'shared';
  readonly reason: string;
}

export interface LimiterLocalEvent {
  readonly decisions: number;
}

/**
 * One model call, whatever made it (a direct API call, a journey stage, a shadow copy, a
 * replay): the model-call pipeline's record step (#14). The inference log and cost ledger
 * subscribe to it.
 */
export interface ModelCallEvent {
  readonly requestId: string;
  readonly origin: 'direct' | 'journey' | 'shadow' | 'replay';
  readonly tenant: string;
  readonly trafficClass: string;
  readonly op: string;
  /** The name the caller asked for (a model, an alias, a release slot). */
  readonly requested: string;
  /** The model it resolved to, and the one that answered (a fallback may have moved on). */
  readonly model: string;
  readonly servedBy: string;
  readonly version: string;
  readonly tier: string;
  /** The kind of backend that answered (`openai`, `kserve`, `onnx`, ...): OTel `gen_ai.system`. */
  readonly system: string;
  /** Why that model: `default`, `mode:<model>`, an experiment's reason such as `exp:x/treatment`. */
  readonly reason: string;
  readonly experiment?: string;
  readonly variant?: string;
  readonly stream: boolean;
  readonly ms: number;
  readonly inputTokens: number;
  readonly outputTokens: number;
  /** The tokens were counted by the gateway's tokenizer (the upstream reported no usage, #15). */
  readonly estimated: boolean;
  readonly cost: number;
  /** `ok`, or the error code. */
  readonly outcome: string;
  /** Compact attempts: `chat-large#1:UPSTREAM_ERROR>chat-backup#1:ok`. */
  readonly attempts: string;
  /** Sources the model-input rule stripped from the call. */
  readonly withheld: number;
  /** The data subject of the request the call serves, when it named one. */
  readonly user?: string;
  /** The W3C trace id of the call's span, when tracing is on. */
  readonly traceId?: string;
  /** A replay's call that the inference log does not keep (replays are unlogged unless asked, #15). */
  readonly unlogged?: true;
}

/** The model-input rule stripped data from a model call, or refused the call (#14). */
export interface PolicyExceptionEvent {
  readonly tenant: string;
  readonly model: string;
  readonly origin: string;
  readonly action: 'strip' | 'refuse';
  readonly code: string;
  readonly label: string;
  readonly source: string;
}

/** Usage counted locally during a shared-store outage, written back when it returned (#13). */
export interface LimiterWriteBackEvent {
  readonly result: 'written' | 'failed';
  /** Shared counters changed. */
  readonly counters: number;
  /** Commands that had timed out and, as the write-back found, reached the store late... */
  readonly ranLate: number;
  /** ...or never did. */
  readonly neverRan: number;
}

/** A write refused because the tenant holds its storage cap of this kind (#13, finding 8). */
export interface TenantStorageFullEvent {
  readonly kind: 'vectors' | 'feature_values' | 'consent_records';
  readonly tenant: string;
}

function typed<T>(name: string): Channel<T> {
  return channel(name) as Channel<T>;
}

// Release management (#6).
/** A served request counted for an experiment's variant (`holdout` included). */
export interface ExperimentExposureEvent {
  readonly experiment: string;
  readonly variant: string;
}

/** An automatic or operator decision on an experiment: `ramp`, `rollback`, ... */
export interface ReleaseDecisionEvent {
  readonly experiment: string;
  readonly action: string;
  readonly reason: string;
}

/** One shadow copy: compared (and whether its label agreed), failed, or shed. */
export interface ShadowCopyEvent {
  readonly experiment: string;
  readonly result: 'agree' | 'disagree' | 'compared' | 'error' | 'shed';
  /** The copy's latency (compared copies only). */
  readonly ms?: number;
}

/** An answer this node gave degraded (#17): its parent gateway was unavailable, or said so. */
export interface DegradedAnswerEvent {
  readonly model: string;
  /**
   * `stale_cache`, `local_fallback`, `parent` (the parent's own answer was degraded), or
   * `stale_features` (the answer was built from feature values served stale because the feature
   * store could not be read; `model` is then the model they were read for, a `journey:` name, or
   * empty).
   */
  readonly reason: 'stale_cache' | 'local_fallback' | 'parent' | 'stale_features';
}

/** A batch line ran, or was put back (#16). */
export interface BatchLineEvent {
  readonly endpoint: string;
  /**
   * `completed` (200), `failed` (an error answer), `interrupted` (cut by a shutdown), or
   * `deferred` (admission refused it before any model call: it runs again later).
   */
  readonly outcome: 'completed' | 'failed' | 'interrupted' | 'deferred';
}

/** What became of a `/v1/feedback` outcome in the cost ledger (#15). */
export interface FeedbackOutcomeEvent {
  /** `counted` once per request on any replica; `duplicate` after that; `unknown` request. */
  readonly result: 'counted' | 'duplicate' | 'unknown';
}

/** A reward owed to an experiment that `/v1/feedback` could not credit: its exposure was lost. */
export interface FeedbackRewardLostEvent {
  readonly tenant: string;
}

/** A batch reached a final status (#16). */
export interface BatchEndEvent {
  readonly endpoint: string;
  readonly status: 'completed' | 'failed' | 'cancelled' | 'expired';
}

/** One audit entry written to the audit log (or failed to be: the change itself went ahead). */
export interface AuditWriteEvent {
  readonly action: string;
  readonly result: 'ok' | 'failed';
}

/** The shared response cache failed a command and answered a miss instead (#17: fails open). */
export interface CacheStoreErrorEvent {
  readonly op: 'get' | 'set' | 'nearest';
}

export const events = {
  requestDone: typed<RequestDoneEvent>('switchyard:request:done'),
  upstreamAttempt: typed<UpstreamAttemptEvent>('switchyard:upstream:attempt'),
  firstToken: typed<FirstTokenEvent>('switchyard:first-token'),
  breakerState: typed<BreakerStateEvent>('switchyard:breaker:state'),
  retry: typed<RetryEvent>('switchyard:retry'),
  fallback: typed<FallbackEvent>('switchyard:fallback'),
  configReload: typed<ConfigReloadEvent>('switchyard:config:reload'),
  journeyDone: typed<JourneyDoneEvent>('switchyard:journey:done'),
  modelBatch: typed<ModelBatchEvent>('switchyard:model:batch'),
  modelQueue: typed<ModelQueueEvent>('switchyard:model:queue'),
  modelDrop: typed<ModelDropEvent>('switchyard:model:drop'),
  modelLoad: typed<ModelLoadEvent>('switchyard:model:load'),
  admission: typed<AdmissionEvent>('switchyard:admission'),
  admissionMode: typed<AdmissionModeEvent>('switchyard:admission:mode'),
  concurrencyLimit: typed<ConcurrencyLimitEvent>('switchyard:admission:limit'),
  limiterState: typed<LimiterStateEvent>('switchyard:limiter:state'),
  limiterLocal: typed<LimiterLocalEvent>('switchyard:limiter:local'),
  limiterWriteBack: typed<LimiterWriteBackEvent>('switchyard:limiter:writeback'),
  experimentExposure: typed<ExperimentExposureEvent>('switchyard:release:exposure'),
  releaseDecision: typed<ReleaseDecisionEvent>('switchyard:release:decision'),
  shadowCopy: typed<ShadowCopyEvent>('switchyard:release:shadow'),
  modelCall: typed<ModelCallEvent>('switchyard:model:call'),
  policyException: typed<PolicyExceptionEvent>('switchyard:policy:exception'),
  auditWrite: typed<AuditWriteEvent>('switchyard:audit:write'),
  tenantStorageFull: typed<TenantStorageFullEvent>('switchyard:tenant:storage-full'),
  cacheStoreError: typed<CacheStoreErrorEvent>('switchyard:cache:store-error'),
  degradedAnswer: typed<DegradedAnswerEvent>('switchyard:tree:degraded'),
  batchLine: typed<BatchLineEvent>('switchyard:batch:line'),
  batchEnd: typed<BatchEndEvent>('switchyard:batch:end'),
  feedbackOutcome: typed<FeedbackOutcomeEvent>('switchyard:costs:outcome'),
  feedbackRewardLost: typed<FeedbackRewardLostEvent>('switchyard:release:reward-lost'),
  parentFailover: typed<ParentFailoverEvent>('switchyard:tree:failover'),
};

export function publish<T>(ch: Channel<T>, message: T): void {
  if (ch.hasSubscribers) ch.publish(message);
}

/** Subscribes with the channel's message type; returns the unsubscribe function. */
export function subscribe<T>(ch: Channel<T>, fn: (message: T) => void): () => void {
  const listener = (message: unknown): void => fn(message as T);
  ch.subscribe(listener);
  return () => {
    ch.unsubscribe(listener);
  };
}
