import type { ConfigSyncStatus } from '../config/config-sync.js';
import type { ModelHandle, ModelPipeline } from '../pipeline/model-pipeline.js';
import type { ModelCatalog } from '../pipeline/journey-invoker.js';
import type { ConfigSnapshot } from '../config/load.js';
import type { Personalization } from '../contracts/policy.js';
import type { AdmissionController } from '../admission/admission-controller.js';
import type { AuditSink } from '../contracts/audit.js';
import type { InferenceLogReader } from '../contracts/inference-log.js';
import type { VectorHost } from '../retrieval/vector-host.js';
import type { ReleaseHost } from '../release/release-host.js';
import type { CompiledJourney } from '../orchestrator/compile.js';
import type { JourneyRunner } from '../orchestrator/runner.js';
import type { CostLedgerStore } from '../contracts/cost-ledger.js';
import type { CostRecorder } from '../observability/cost-recorder.js';
import type { OutcomeJoin } from '../observability/outcome-join.js';
import type { ResponseStore } from '../contracts/response-store.js';
import type { BatchStore } from '../contracts/batch-store.js';
import type { KeyStore } from './auth.js';
import type { RequestTracer } from '../observability/tracing.js';

export type { ModelHandle } from '../pipeline/model-pipeline.js';

/**
 * Everything built from one config snapshot. The front door reads it once per request, so a
 * reload (which swaps the whole Runtime) never mixes two configs within a request.
 */
export interface Runtime {
  readonly snapshot: ConfigSnapshot;
  readonly models: ReadonlyMap<string, ModelHandle>;
  /** The one path of every model call (#14): resolve, policy, admit, call, settle, record. */
  readonly pipeline: ModelPipeline;
  /** What journeys know of models, and the pipeline bound to a journey request. */
  readonly catalog: ModelCatalog;
  readonly keys: KeyStore;
  /** Epoch seconds the runtime was built; shown as `created` in /v1/models. */
  readonly createdAt: number;
  /** Admission control (#5); it outlives reloads. Absent in bare test runtimes: all admitted. */
  readonly admission?: AdmissionController;
  /** Where control-plane changes are recorded (mode overrides, ...). */
  readonly audit?: AuditSink;
  /** The feature store, consent registry and policy module (#7); absent in bare test runtimes. */
  readonly personalization?: Personalization;
  /** Vector collections, their shard router and the shard API (#7); absent in bare test runtimes. */
  readonly vectors?: VectorHost;
  /** Model registry, experiments and the release manager (#6); absent without `state:`. */
  readonly release?: ReleaseHost;
  /** Stored Responses (#16); absent in bare test runtimes (`store: true` is then refused). */
  readonly responses?: ResponseStore;
  /** Files and batches (#16): their store and the runner to wake; absent when `batches.enabled` is false. */
  readonly batches?: {
    readonly store: BatchStore;
    kick(): void;
  };
  /** Journeys (#4): compiled graphs and their runner; absent in bare test runtimes. */
  readonly journeys?: Journeys;
  /** The inference log (#15): its records, read after the buffer is written; absent when off. */
  readonly inferenceLog?: InferenceLogReader;
  /** The cost ledger (#15): totals, budgets, feedback outcomes; absent in bare test runtimes. */
  readonly costs?: {
    readonly recorder: CostRecorder;
    readonly store: CostLedgerStore;
    readonly outcomes: OutcomeJoin;
    /** Writes every worker's recorded costs (`serve --workers N`); else the recorder's flush. */
    flush?(): Promise<void>;
  };
  /** Traces (#15); absent while `tracing.enabled` is false: requests make no spans then. */
  readonly tracer?: RequestTracer;
}

/** The journeys of one config snapshot and the runner that runs them. */
export interface Journeys {
  readonly compiled: ReadonlyMap<string, CompiledJourney>;
  readonly runner: JourneyRunner;
}

export type { Personalization } from '../contracts/policy.js';

/** What the front door needs from the process around it. */
export interface GatewayState {
  /** The current runtime (swapped atomically on reload). */
  runtime(): Runtime;
  /** False while starting or draining: /readyz and /v2/health/ready answer 503. */
  ready(): boolean;
  /** This replica against its group's desired config, when `config_sync` is on (#17). */
  configSync?(): ConfigSyncStatus | undefined;
  /** Which worker process of `serve --workers N` this is (#17); absent in a single process. */
  worker?(): { readonly id: number; readonly pid: number; readonly of: number };
}
