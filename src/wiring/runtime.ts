import type { AdmissionController } from '../admission/admission-controller.js';
import { ConfigError, type ConfigSnapshot } from '../config/load.js';
import type { ModelInvoker } from '../contracts/stage.js';
import { syError } from '../core/errors.js';
import type { CompiledJourney } from '../orchestrator/compile.js';
import type { Router } from '../orchestrator/router.js';
import { JourneyRunner } from '../orchestrator/runner.js';
import { ModelCatalog } from '../pipeline/journey-invoker.js';
import { ModelPipeline, type ModelHandle } from '../pipeline/model-pipeline.js';
import type { ReleaseHost } from '../release/release-host.js';
import type { VectorHost } from '../retrieval/vector-host.js';
import type { Cache } from '../contracts/cache.js';
import type { Personalization } from '../contracts/policy.js';
import type { SpendBudget } from '../contracts/cost-ledger.js';
import type { ModelsWiring } from './models.js';
import type { WiringDeps } from './shared.js';
import { compileConfigJourneys, describeModels } from './validate-config.js';

/** The long-lived capabilities a snapshot's runtime is built over. */
export interface RuntimeInputs {
  readonly deps: WiringDeps;
  readonly models: ModelsWiring;
  readonly admission: AdmissionController;
  readonly personalization: Personalization | undefined;
  readonly vectors: VectorHost | undefined;
  readonly release: ReleaseHost | undefined;
  /** Journeys (#4): learned latency profiles and the response cache outlive reloads. */
  readonly router: Router;
  readonly cache: Cache;
  /** Whether a tenant may call a model (the front door's key store of this snapshot). */
  readonly mayUse: (tenant: string, model: string) => boolean;
  /** Tenants' spend budgets from the cost ledger (#15). */
  readonly budget?: SpendBudget;
}

/** Everything per snapshot that serves model calls: handles, the one pipeline, journeys. */
export interface RuntimeParts {
  readonly models: ReadonlyMap<string, ModelHandle>;
  readonly pipeline: ModelPipeline;
  readonly catalog: ModelCatalog;
  readonly journeys: {
    readonly compiled: ReadonlyMap<string, CompiledJourney>;
    readonly runner: JourneyRunner;
  };
  close(): Promise<void>;
}

/**
 * A journey runs only inside a request's scope (`JourneyRequest.models`); the runner's default
 * invoker refuses, so no model call can ever skip admission, policy or the record.
 */
const UNSCOPED: Omit<ModelInvoker, 'info'> = {
  chat: () => Promise.reject(unscoped()),
  embed: () => Promise.reject(unscoped()),
  classify: () => Promise.reject(unscoped()),
  infer: () => Promise.reject(unscoped()),
};

function unscoped(): Error {
  return syError('SY_ERR_INTERNAL', 'a journey stage called a model outside a request scope');
}

/** Builds one snapshot's models, pipeline and journeys; a bad snapshot throws a ConfigError. */
export async function buildRuntimeParts(
  snap: ConfigSnapshot,
  inputs: RuntimeInputs,
): Promise<RuntimeParts> {
  // Journeys compile against what the config's models serve, with the pieces `validateConfig`
  // uses (#14): the runtime never has a second copy of the checks.
  const shapes = await describeModels(snap);
  if (shapes.problems.length > 0) throw new ConfigError(snap.source, shapes.problems);
  const built = await inputs.models.build(snap);
  try {
    const pipeline = new ModelPipeline({
      models: built.handles,
      facts: built.facts,
      mayUse: inputs.mayUse,
      clock: inputs.deps.clock,
      defaultOutputTokens: snap.config.admission.estimate.output_tokens,
      admission: inputs.admission,
      release: inputs.release?.manager,
      policy: inputs.personalization?.policy,
      budget: inputs.budget,
    });
    const catalog = new ModelCatalog(
      pipeline,
      (model) => snap.config.models[model]?.latency?.prior_ms,
      built.available,
    );
    const personal = inputs.personalization;
    const retriever = inputs.vectors?.router;
    const { journeys, problems } = compileConfigJourneys(snap, shapes.models, inputs.router);
    if (problems.length > 0) throw new ConfigError(snap.source, problems);
    const runner = new JourneyRunner(
      {
        models: { info: (m) => catalog.info(m), ...UNSCOPED },
        cache: inputs.cache,
        ...(personal === undefined ? {} : { features: personal.features, policy: personal.policy }),
        ...(retriever === undefined ? {} : { retriever }),
      },
      inputs.deps.clock,
    );
    return {
      models: built.handles,
      pipeline,
      catalog,
      journeys: { compiled: journeys, runner },
      close: () => built.release(),
    };
  } catch (err) {
    void built.release();
    throw err;
  }
}
