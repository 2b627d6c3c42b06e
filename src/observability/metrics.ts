import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  openMetricsContentType,
  Registry,
  type OpenMetricsContentType,
} from 'prom-client';
import { HotCounter, HotHistogram } from './hot-metrics.js';
import { events, subscribe, type TenantStorageFullEvent } from '../core/events.js';
import { channel, type Channel } from 'node:diagnostics_channel';
import {
  PERSONALIZATION_CHANNELS,
  type ConsentChangeEvent,
  type FeatureCacheEvent,
  type FeatureOpEvent,
  type PolicyDeniedEvent,
} from '../contracts/policy.js';
import type { VectorShardStats } from '../contracts/vector-index.js';

const LATENCY_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];
// The OpenTelemetry GenAI semantic conventions' advice for gen_ai.client.token.usage.
const TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304];
const BREAKER_VALUE = { closed: 0, open: 1, half_open: 2 } as const;
const MODE_VALUE: Readonly<Record<string, number>> = { normal: 0, surge: 1, emergency: 2 };

/**
 * Prometheus metrics, fed only by `core/events` subscriptions: the hot path publishes, this
 * module counts. One registry per gateway instance (tests run several in one process).
 * GenAI names follow the OpenTelemetry semantic conventions, in Prometheus form. The metrics
 * recorded on every request are `hot-metrics.ts` ones: prom-client's exposition, without its
 * per-record label work.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly unsubscribe: (() => void)[] = [];

  readonly requests = new HotCounter({
    name: 'switchyard_requests_total',
    help: 'Requests answered, by route, model, status and traffic class.',
    labelNames: ['route', 'model', 'status', 'class'] as const,
    registers: [this.registry],
  });
  /**
   * Exemplar-capable (#15): the Prometheus text ignores exemplars and the OpenMetrics rendering
   * (`openMetrics()`) shows the trace id of a sampled request per bucket.
   */
  readonly requestDuration = new HotHistogram({
    name: 'switchyard_request_duration_seconds',
    help: 'Time from request to the end of the answer.',
    labelNames: ['route', 'model', 'status', 'class'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  /** Trace-id exemplars on the request-duration histogram: on while tracing is (#15). */
  private exemplars = false;
  private readonly om = openMetricsRegistry();
  readonly upstreamDuration = new HotHistogram({
    name: 'switchyard_upstream_duration_seconds',
    help: 'Time of each upstream attempt (to its answer, or to the first event of a stream).',
    labelNames: ['backend', 'outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly tokenUsage = new HotHistogram({
    name: 'gen_ai_client_token_usage',
    help: 'Tokens used per model call (OpenTelemetry gen_ai.client.token.usage).',
    labelNames: [
      'gen_ai_operation_name',
      'gen_ai_system',
      'gen_ai_request_model',
      'gen_ai_response_model',
      'gen_ai_token_type',
    ] as const,
    buckets: TOKEN_BUCKETS,
    registers: [this.registry],
  });
  readonly operationDuration = new HotHistogram({
    name: 'gen_ai_client_operation_duration_seconds',
    help: 'Duration of each model call, to its answer or its stream end (OpenTelemetry gen_ai.client.operation.duration).',
    labelNames: [
      'gen_ai_operation_name',
      'gen_ai_system',
      'gen_ai_request_model',
      'gen_ai_response_model',
      'error_type',
    ] as const,
    // The OpenTelemetry GenAI advice for gen_ai.client.operation.duration.
    buckets: [
      0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    ],
    registers: [this.registry],
  });
  readonly tokensTotal = new HotCounter({
    name: 'switchyard_tokens_total',
    help: 'Tokens used, by model and type (input or output).',
    labelNames: ['model', 'type'] as const,
    registers: [this.registry],
  });
  readonly modelCalls = new HotCounter({
    name: 'switchyard_model_calls_total',
    help: 'Model calls through the one pipeline, by resolved model, origin (direct, journey, shadow, replay) and outcome.',
    labelNames: ['model', 'origin', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly modelCost = new HotCounter({
    name: 'switchyard_model_cost_total',
    help: 'Cost of model calls (the one cost function), by the model that answered and tenant.',
    labelNames: ['model', 'tenant'] as const,
    registers: [this.registry],
  });
  readonly inferenceLogDropped = new Counter({
    name: 'switchyard_inference_log_dropped_total',
    help: 'Inference log records (requests and model calls) dropped: overflow (the buffer was full) or write_failed.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly inferenceLogWritten = new Counter({
    name: 'switchyard_inference_log_written_total',
    help: 'Inference log records written to the store, by kind (request or call).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly policyExceptions = new Counter({
    name: 'switchyard_policy_exceptions_total',
    help: 'Model-input policy exceptions: data stripped from a call, or a call refused; by action, code, label and origin.',
    labelNames: ['action', 'code', 'label', 'origin'] as const,
    registers: [this.registry],
  });
  readonly timeToFirstToken = new HotHistogram({
    name: 'gen_ai_server_time_to_first_token_seconds',
    help: 'Time to the first streamed event (OpenTelemetry gen_ai.server.time_to_first_token).',
    labelNames: ['gen_ai_request_model'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly breakerState = new Gauge({
    name: 'switchyard_breaker_state',
    help: 'Circuit breaker state per backend: 0 closed, 1 open, 2 half-open.',
    labelNames: ['backend'] as const,
    // Summed over the workers of `serve --workers N` it would mean nothing (#17).
    aggregator: 'max',
    registers: [this.registry],
  });
  readonly retries = new Counter({
    name: 'switchyard_retries_total',
    help: 'Retry decisions: retried, budget_exhausted, or no_time (the deadline left no room).',
    labelNames: ['backend', 'decision'] as const,
    registers: [this.registry],
  });
  readonly fallbacks = new Counter({
    name: 'switchyard_fallbacks_total',
    help: 'Moves down a fallback chain, by model, from and to backend, and the error that caused it.',
    labelNames: ['model', 'from', 'to', 'code'] as const,
    registers: [this.registry],
  });
  // The gateway tree (#17).
  readonly degradedAnswers = new Counter({
    name: 'switchyard_degraded_answers_total',
    help: 'Answers given degraded because a parent gateway was unavailable (stale_cache, local_fallback), answered degraded (parent), or the feature store could not be read (stale_features), by model.',
    labelNames: ['model', 'reason'] as const,
    registers: [this.registry],
  });
  readonly batchLines = new Counter({
    name: 'switchyard_batch_lines_total',
    help: 'Batch lines run (completed, failed, interrupted) or put back by admission (deferred), by endpoint.',
    labelNames: ['endpoint', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly feedbackOutcomes = new Counter({
    name: 'switchyard_feedback_outcomes_total',
    help: 'Feedback outcomes joined to the cost ledger: counted (once per request, on any replica), duplicate, or unknown request.',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly feedbackRewardsLost = new Counter({
    name: 'switchyard_feedback_rewards_lost_total',
    help: 'Experiment rewards /v1/feedback could not credit: the exposure was still not written release.exposure_wait_s after the request (the serving replica lost it).',
    registers: [this.registry],
  });
  readonly batchesEnded = new Counter({
    name: 'switchyard_batches_total',
    help: 'Batches that reached a final status (completed, failed, cancelled, expired), by endpoint.',
    labelNames: ['endpoint', 'status'] as const,
    registers: [this.registry],
  });
  readonly parentFailovers = new Counter({
    name: 'switchyard_parent_failovers_total',
    help: 'Calls moved from one replica of a parent gateway to another, by model and the error of the replica left.',
    labelNames: ['model', 'code'] as const,
    registers: [this.registry],
  });
  // Journeys (#4): where answers came from, and the work avoided.
  readonly journeyRequests = new Counter({
    name: 'switchyard_journey_requests_total',
    help: 'Journey runs by journey, outcome, what answered (cache, edge, regional, central, none) and cache result.',
    labelNames: ['journey', 'outcome', 'answered_by', 'cache'] as const,
    registers: [this.registry],
  });
  readonly journeyDecisions = new Counter({
    name: 'switchyard_journey_decisions_total',
    help: 'Work avoided and degradations: cache_hit, semantic_hit, stale_served, stale_features, escalation, downgrade, fallback.',
    labelNames: ['journey', 'decision'] as const,
    registers: [this.registry],
  });
  readonly journeyCost = new Counter({
    name: 'switchyard_journey_cost_total',
    help: 'Model cost of journey runs, in the models’ configured currency units.',
    labelNames: ['journey', 'tenant'] as const,
    registers: [this.registry],
  });
  readonly journeyStageDuration = new Histogram({
    name: 'switchyard_journey_stage_duration_seconds',
    help: 'Time per journey stage, by journey, stage kind and outcome.',
    labelNames: ['journey', 'kind', 'outcome'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly configReloads = new Counter({
    name: 'switchyard_config_reloads_total',
    help: 'Config reloads by result: applied, unchanged, rejected (the last good config kept serving).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly cacheStoreErrors = new Counter({
    name: 'switchyard_cache_store_errors_total',
    help: 'Shared response cache commands that failed and were answered as a miss (Redis away), by operation.',
    labelNames: ['op'] as const,
    registers: [this.registry],
  });
  readonly auditWrites = new Counter({
    name: 'switchyard_audit_writes_total',
    help: 'Audit entries written to the audit log, by result (failed: logged, the change went ahead).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly modelQueueDepth = new Gauge({
    name: 'switchyard_model_queue_depth',
    help: "Rows waiting in an in-process model version's batch queue.",
    labelNames: ['model', 'version'] as const,
    registers: [this.registry],
  });
  readonly modelBatchSize = new Histogram({
    name: 'switchyard_model_batch_size',
    help: 'Rows per batch run by an in-process model version.',
    labelNames: ['model', 'version'] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [this.registry],
  });
  readonly modelBatches = new Counter({
    name: 'switchyard_model_batches_total',
    help: 'Batches run by an in-process model version, by who started them: an inference worker taking its staged batch, or the gateway dispatching it.',
    labelNames: ['model', 'version', 'started_by'] as const,
    registers: [this.registry],
  });
  readonly modelQueueDelay = new Histogram({
    name: 'switchyard_model_queue_delay_seconds',
    help: 'Time a request waited in the batch queue before its batch ran.',
    labelNames: ['model', 'version'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly modelInference = new Histogram({
    name: 'switchyard_model_inference_seconds',
    help: 'Inference time per batch (in the worker thread).',
    labelNames: ['model', 'version'] as const,
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly modelDropped = new Counter({
    name: 'switchyard_model_dropped_total',
    help: 'Requests refused (queue_full) or dropped before running (deadline, cancelled) by a model version.',
    labelNames: ['model', 'version', 'reason'] as const,
    registers: [this.registry],
  });
  readonly modelLoads = new Counter({
    name: 'switchyard_model_loads_total',
    help: 'Model version loads, failed loads and unloads.',
    labelNames: ['model', 'version', 'result'] as const,
    registers: [this.registry],
  });

  // Feature store, consent and the policy module (#7), fed by their diagnostics channels.
  readonly policyDenials = new Counter({
    name: 'switchyard_policy_denials_total',
    help: 'Data refused (ingestion), filtered (retrieval), stripped (model_input) or redacted (logging) by the policy module.',
    labelNames: ['point', 'code', 'label'] as const,
    registers: [this.registry],
  });
  readonly consentChanges = new Counter({
    name: 'switchyard_consent_changes_total',
    help: 'Consent changes: revoke (something was revoked and purged) or update.',
    labelNames: ['action'] as const,
    registers: [this.registry],
  });
  readonly consentPurged = new Counter({
    name: 'switchyard_consent_purged_total',
    help: 'Items purged after consent revocations, per store (purge hook).',
    labelNames: ['store'] as const,
    registers: [this.registry],
  });
  readonly consentPurgeFailures = new Counter({
    name: 'switchyard_consent_purge_failures_total',
    help: 'Purge hooks that failed during a consent revocation (the audit entry names them).',
    registers: [this.registry],
  });
  readonly featureValues = new Counter({
    name: 'switchyard_feature_values_total',
    help: 'Feature values read (hit, miss) and written (ok, invalid, full, unavailable).',
    labelNames: ['op', 'result'] as const,
    registers: [this.registry],
  });
  readonly featureCache = new Counter({
    name: 'switchyard_feature_cache_total',
    help: 'Feature values asked of the local cache of a remote store: hit, miss (read remotely), stale (served because the store could not be read), error (neither).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  private readonly personalizationSubscribed = this.subscribePersonalization();

  private subscribePersonalization(): true {
    const on = <T>(name: string, fn: (e: T) => void): void => {
      this.unsubscribe.push(subscribe(channel(name) as Channel<T>, fn));
    };
    on<PolicyDeniedEvent>(PERSONALIZATION_CHANNELS.denied, (e) => {
      this.policyDenials.labels(e.point, e.code, e.label).inc();
    });
    on<ConsentChangeEvent>(PERSONALIZATION_CHANNELS.consent, (e) => {
      this.consentChanges.labels(e.action).inc();
      for (const [store, n] of Object.entries(e.purged)) this.consentPurged.labels(store).inc(n);
      if (e.failed > 0) this.consentPurgeFailures.inc(e.failed);
    });
    on<FeatureOpEvent>(PERSONALIZATION_CHANNELS.features, (e) => {
      this.featureValues.labels(e.op, e.result).inc(e.count);
    });
    on<FeatureCacheEvent>(PERSONALIZATION_CHANNELS.featureCache, (e) => {
      this.featureCache.labels(e.result).inc(e.count);
    });
    return true;
  }

  // Admission control (#5).
  readonly admissionMode = new Gauge({
    name: 'switchyard_admission_mode',
    help: 'The admission mode (0 normal, 1 surge, 2 emergency), labelled with the mode and why it was entered.',
    labelNames: ['mode', 'reason'] as const,
    // Summed over the workers of `serve --workers N` it would mean nothing (#17).
    aggregator: 'max',
    registers: [this.registry],
  });
  // Once per admitted request: a HotCounter, as the other per-request metrics.
  readonly admitted = new HotCounter({
    name: 'switchyard_admission_admitted_total',
    help: 'Requests admitted by admission control, by traffic class.',
    labelNames: ['class'] as const,
    registers: [this.registry],
  });
  readonly queued = new Counter({
    name: 'switchyard_admission_queued_total',
    help: 'Requests that waited in a concurrency queue, by traffic class.',
    labelNames: ['class'] as const,
    registers: [this.registry],
  });
  readonly shed = new Counter({
    name: 'switchyard_admission_shed_total',
    help: 'Requests shed (503) or dropped unstarted, by class and reason: mode, curve, queue_full, evicted, queue_timeout, deadline, cancelled.',
    labelNames: ['class', 'reason'] as const,
    registers: [this.registry],
  });
  readonly quotaRefused = new Counter({
    name: 'switchyard_quota_refused_total',
    help: 'Requests refused (429) by a quota, by class and what ran out: requests, tokens or spend.',
    labelNames: ['class', 'kind'] as const,
    registers: [this.registry],
  });
  readonly concurrencyLimit = new Gauge({
    name: 'switchyard_admission_concurrency_limit',
    help: 'The adaptive concurrency limit of each gate (model).',
    labelNames: ['gate'] as const,
    registers: [this.registry],
  });
  readonly limiterShared = new Gauge({
    name: 'switchyard_limiter_shared',
    help: '1 while quotas are counted in the shared store (Redis), 0 while counted locally.',
    // Summed over the workers of `serve --workers N` it would mean nothing (#17).
    aggregator: 'min',
    registers: [this.registry],
  });
  readonly limiterLocal = new Counter({
    name: 'switchyard_limiter_local_fallback_total',
    help: 'Quota decisions taken by the local fallback because the shared store (Redis) was unreachable.',
    registers: [this.registry],
  });
  readonly limiterWriteBacks = new Counter({
    name: 'switchyard_limiter_writeback_total',
    help: 'Write-backs to the shared store (Redis) of quota usage counted locally during an outage, by result: written or failed (kept for the next try).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly limiterTimedOut = new Counter({
    name: 'switchyard_limiter_timed_out_commands_total',
    help: 'Quota commands that timed out (their usage was counted locally), by what the write-back found: ran_late in Redis (taken back there, so counted once) or never_ran.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  // Release management (#6).
  readonly experimentExposures = new Counter({
    name: 'switchyard_experiment_exposures_total',
    help: 'Requests served by an experiment variant (holdout included).',
    labelNames: ['experiment', 'variant'] as const,
    registers: [this.registry],
  });
  readonly releaseDecisions = new Counter({
    name: 'switchyard_release_decisions_total',
    help: 'Automatic release decisions: canary ramp steps and rollbacks, by the rule that fired.',
    labelNames: ['experiment', 'action', 'reason'] as const,
    registers: [this.registry],
  });
  readonly shadowCopies = new Counter({
    name: 'switchyard_shadow_copies_total',
    help: 'Shadow copies by result: agree, disagree, compared (no label), error, shed.',
    labelNames: ['experiment', 'result'] as const,
    registers: [this.registry],
  });
  readonly shadowDuration = new Histogram({
    name: 'switchyard_shadow_duration_seconds',
    help: 'Latency of shadow copies that answered.',
    labelNames: ['experiment'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.unsubscribe.push(
      subscribe(events.requestDone, (e) => {
        const labels = [e.route, e.model, String(e.status), e.trafficClass] as const;
        this.requests.inc(labels);
        this.requestDuration.observe(
          labels,
          e.durationMs / 1000,
          this.exemplars && e.traceId !== undefined ? { trace_id: e.traceId } : undefined,
        );
      }),
      subscribe(events.upstreamAttempt, (e) => {
        this.upstreamDuration.observe([e.backend, e.outcome], e.durationMs / 1000);
      }),
      subscribe(events.modelCall, (e) => {
        this.modelCalls.inc([e.model, e.origin, e.outcome]);
        // A replay is a what-if (#15): counted by origin above, never as cost, latency or tokens.
        if (e.origin === 'replay') return;
        if (e.cost > 0) this.modelCost.inc([e.servedBy, e.tenant], e.cost);
        // GenAI conventions: the request model is the name asked for, the response model what
        // answered (its version when it has one).
        const response = e.version === '' ? e.servedBy : e.version;
        this.operationDuration.observe(
          [e.op, e.system, e.requested, response, e.outcome === 'ok' ? '' : e.outcome],
          e.ms / 1000,
        );
        if (e.outcome !== 'ok' && e.inputTokens === 0 && e.outputTokens === 0) return;
        if (e.op !== 'chat' && e.op !== 'embeddings' && e.inputTokens === 0) return;
        this.tokenUsage.observe([e.op, e.system, e.requested, response, 'input'], e.inputTokens);
        this.tokensTotal.inc([e.model, 'input'], e.inputTokens);
        if (e.outputTokens > 0 || e.op === 'chat') {
          this.tokenUsage.observe(
            [e.op, e.system, e.requested, response, 'output'],
            e.outputTokens,
          );
          this.tokensTotal.inc([e.model, 'output'], e.outputTokens);
        }
      }),
      subscribe(events.policyException, (e) => {
        this.policyExceptions.labels(e.action, e.code, e.label, e.origin).inc();
      }),
      subscribe(events.firstToken, (e) => {
        this.timeToFirstToken.observe([e.model], e.ms / 1000);
      }),
      subscribe(events.breakerState, (e) => {
        this.breakerState.labels(e.backend).set(BREAKER_VALUE[e.state]);
      }),
      subscribe(events.retry, (e) => {
        this.retries.labels(e.backend, e.decision).inc();
      }),
      subscribe(events.fallback, (e) => {
        this.fallbacks.labels(e.model, e.from, e.to, e.code).inc();
      }),
      subscribe(events.degradedAnswer, (e) => {
        this.degradedAnswers.labels(e.model, e.reason).inc();
      }),
      subscribe(events.batchLine, (e) => {
        this.batchLines.labels(e.endpoint, e.outcome).inc();
      }),
      subscribe(events.feedbackOutcome, (e) => {
        this.feedbackOutcomes.labels(e.result).inc();
      }),
      subscribe(events.feedbackRewardLost, () => {
        this.feedbackRewardsLost.inc();
      }),
      subscribe(events.batchEnd, (e) => {
        this.batchesEnded.labels(e.endpoint, e.status).inc();
      }),
      subscribe(events.parentFailover, (e) => {
        this.parentFailovers.labels(e.model, e.code).inc();
      }),
      subscribe(events.experimentExposure, (e) => {
        this.experimentExposures.labels(e.experiment, e.variant).inc();
      }),
      subscribe(events.releaseDecision, (e) => {
        this.releaseDecisions.labels(e.experiment, e.action, e.reason).inc();
      }),
      subscribe(events.shadowCopy, (e) => {
        this.shadowCopies.labels(e.experiment, e.result).inc();
        if (e.ms !== undefined) this.shadowDuration.labels(e.experiment).observe(e.ms / 1000);
      }),
      subscribe(events.configReload, (e) => {
        this.configReloads.labels(e.result).inc();
      }),
      subscribe(events.cacheStoreError, (e) => {
        this.cacheStoreErrors.labels(e.op).inc();
      }),
      subscribe(events.auditWrite, (e) => {
        this.auditWrites.labels(e.result).inc();
      }),
      subscribe(events.journeyDone, (e) => {
        this.journeyRequests.labels(e.journey, e.outcome, e.answeredBy, e.cache).inc();
        for (const d of e.decisions) this.journeyDecisions.labels(e.journey, d).inc();
        if (e.cost > 0) this.journeyCost.labels(e.journey, e.tenant).inc(e.cost);
        for (const s of e.stages)
          this.journeyStageDuration.labels(e.journey, s.kind, s.outcome).observe(s.ms / 1000);
      }),
      subscribe(events.modelQueue, (e) => {
        this.modelQueueDepth.labels(e.model, e.version).set(e.depth);
      }),
      subscribe(events.modelBatch, (e) => {
        this.modelBatchSize.labels(e.model, e.version).observe(e.rows);
        this.modelBatches.labels(e.model, e.version, e.startedBy).inc();
        this.modelInference.labels(e.model, e.version).observe(e.inferMs / 1000);
        const delay = this.modelQueueDelay.labels(e.model, e.version);
        for (const ms of e.queueDelaysMs) delay.observe(ms / 1000);
      }),
      subscribe(events.modelDrop, (e) => {
        this.modelDropped.labels(e.model, e.version, e.reason).inc();
      }),
      subscribe(events.modelLoad, (e) => {
        this.modelLoads.labels(e.model, e.version, e.result).inc();
      }),
      subscribe(events.admission, (e) => {
        if (e.outcome === 'admitted') this.admitted.inc([e.trafficClass]);
        else if (e.outcome === 'queued') this.queued.labels(e.trafficClass).inc();
        else if (e.outcome === 'shed' || e.outcome === 'expired')
          this.shed.labels(e.trafficClass, e.reason).inc();
        else this.quotaRefused.labels(e.trafficClass, e.reason).inc();
      }),
      subscribe(events.admissionMode, (e) => {
        this.admissionMode.reset();
        this.admissionMode.labels(e.mode, e.reason).set(MODE_VALUE[e.mode] ?? -1);
      }),
      subscribe(events.concurrencyLimit, (e) => {
        this.concurrencyLimit.labels(e.gate).set(e.limit);
      }),
      subscribe(events.limiterState, (e) => {
        this.limiterShared.set(e.state === 'shared' ? 1 : 0);
      }),
      subscribe(events.tenantStorageFull, (e) => {
        this.tenantStorageFull.labels(e.kind, e.tenant).inc();
      }),
      subscribe(events.limiterLocal, (e) => {
        this.limiterLocal.inc(e.decisions);
      }),
      subscribe(events.limiterWriteBack, (e) => {
        this.limiterWriteBacks.labels(e.result).inc();
        if (e.ranLate > 0) this.limiterTimedOut.labels('ran_late').inc(e.ranLate);
        if (e.neverRan > 0) this.limiterTimedOut.labels('never_ran').inc(e.neverRan);
      }),
    );
  }

  /**
   * Per-shard vector numbers (#7), read from the shards at scrape time: size, QPS, p95, the
   * last recall probe, searches, and vectors evicted by size caps and expired by TTL.
   */
  trackVectorShards(stats: () => Promise<readonly VectorShardStats[]>): void {
    let cached: { at: number; value: Promise<readonly VectorShardStats[]> } | undefined;
    const read = (): Promise<readonly VectorShardStats[]> => {
      const now = Date.now();
      if (cached === undefined || now - cached.at > 1_000) cached = { at: now, value: stats() };
      return cached.value;
    };
    const gauge = (
      name: string,
      help: string,
      pick: (s: VectorShardStats) => number | undefined,
    ): void => {
      new Gauge({
        name,
        help,
        labelNames: ['shard'] as const,
        registers: [this.registry],
        async collect() {
          this.reset();
          for (const s of await read().catch(() => [])) {
            const v = pick(s);
            if (v !== undefined) this.labels(s.id).set(v);
          }
        },
      });
    };
    gauge('switchyard_vector_shard_size', 'Live vectors per shard.', (s) => s.size);
    gauge(
      'switchyard_vector_shard_qps',
      'Searches per second per shard (last 10 s).',
      (s) => s.qps,
    );
    gauge(
      'switchyard_vector_shard_search_p95_seconds',
      'p95 search time per shard (last 2048).',
      (s) => s.p95Ms / 1000,
    );
    gauge(
      'switchyard_vector_shard_recall',
      'Last recall@10 probe against exact search.',
      (s) => s.recall,
    );
    gauge(
      'switchyard_vector_shard_searches',
      'Searches served per shard since start.',
      (s) => s.searches,
    );
    gauge(
      'switchyard_vector_shard_evicted',
      'Vectors evicted by the size cap since start.',
      (s) => s.evictedTotal,
    );
    gauge(
      'switchyard_vector_shard_expired',
      'Vectors expired by TTL since start.',
      (s) => s.expiredTotal,
    );
  }

  private readonly storageSources = new Map<
    TenantStorageFullEvent['kind'],
    () => Promise<ReadonlyMap<string, number>>
  >();

  /**
   * What tenants store, per kind (#13, finding 8), read from the stores at scrape time: the
   * numbers the per-tenant caps count.
   */
  trackTenantStorage(
    kind: TenantStorageFullEvent['kind'],
    read: () => Promise<ReadonlyMap<string, number>>,
  ): void {
    this.storageSources.set(kind, read);
  }

  readonly tenantStored = new Gauge({
    name: 'switchyard_tenant_stored',
    help: 'Items each tenant stores on this node (vectors, feature_values, consent_records): what the per-tenant caps count.',
    labelNames: ['kind', 'tenant'] as const,
    // Summed over the workers of `serve --workers N` it would mean nothing (#17).
    aggregator: 'max',
    registers: [this.registry],
    collect: async () => {
      this.tenantStored.reset();
      for (const [kind, read] of this.storageSources)
        for (const [tenant, n] of await read().catch(() => new Map<string, number>()))
          this.tenantStored.labels(kind, tenant).set(n);
    },
  });
  readonly tenantStorageFull = new Counter({
    name: 'switchyard_tenant_storage_full_total',
    help: 'Writes refused because the tenant held its storage cap (SY_ERR_TENANT_STORAGE_FULL).',
    labelNames: ['kind', 'tenant'] as const,
    registers: [this.registry],
  });

  /** Declares a backend's breaker as closed so the gauge exists before its first change. */
  trackBreaker(backend: string): void {
    this.breakerState.labels(backend).set(0);
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Exemplars carry trace ids while tracing is on (#15). */
  useExemplars(on: boolean): void {
    this.exemplars = on;
  }

  /**
   * The same metrics as OpenMetrics text with exemplars, for a scraper that asks for
   * `application/openmetrics-text`; undefined while exemplars are off (Prometheus text serves).
   */
  async openMetrics(): Promise<string | undefined> {
    if (!this.exemplars) return undefined;
    const parts: string[] = [];
    const om = this.om as unknown as { getMetricsAsString(m: PromMetric): Promise<string> };
    for (const m of this.registry.getMetricsAsArray() as unknown as PromMetric[]) {
      // OpenMetrics names a counter without `_total` and adds it to its samples. (prom-client's
      // own OpenMetrics rendering renames the metric in place, which would break the text one.)
      const metric: PromMetric =
        m.type === 'counter'
          ? {
              type: m.type,
              get: async () => {
                const d = await m.get();
                return { ...d, name: d.name.replace(/_total$/, '') };
              },
            }
          : m;
      parts.push(await om.getMetricsAsString(metric));
    }
    return `${parts.join('\n')}\n# EOF\n`;
  }

  get openMetricsContentType(): string {
    return this.om.contentType;
  }

  close(): void {
    for (const u of this.unsubscribe) u();
    this.unsubscribe.length = 0;
    this.registry.clear();
  }
}

/** What prom-client's registry renders of a metric (its internal shape). */
interface PromMetric {
  readonly type: string;
  get(): Promise<{ name: string } & Record<string, unknown>>;
}

function openMetricsRegistry(): Registry<OpenMetricsContentType> {
  const r = new Registry<OpenMetricsContentType>();
  r.setContentType(openMetricsContentType);
  return r;
}
