import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import type { AdmissionController } from '../admission/admission-controller.js';
import type { ConcurrencySpec } from '../admission/settings.js';
import type { Backend, BackendCall } from '../contracts/backend.js';
import type { DeepReadonly } from '../config/deep-freeze.js';
import type { ConfigSnapshot } from '../config/load.js';
import type { HttpModelConfig, OnnxModelConfig } from '../config/schema.js';
import { events, subscribe } from '../core/events.js';
import { priceOf } from '../core/cost.js';
import { AnthropicBackend } from '../backends/http/anthropic.js';
import { KServeBackend } from '../backends/http/kserve.js';
import { OpenAiBackend } from '../backends/http/openai.js';
import { SwitchyardBackend } from '../backends/http/switchyard.js';
import { staleCache } from '../backends/interceptors/stale-cache.js';
import { PoolRegistry } from '../backends/http/pools.js';
import { breakerInterceptor, CircuitBreaker } from '../backends/interceptors/breaker.js';
import { compose } from '../backends/interceptors/compose.js';
import { deadlineGuard } from '../backends/interceptors/deadline.js';
import { fallbackChain } from '../backends/interceptors/fallback.js';
import { recordAttempts } from '../backends/interceptors/record.js';
import { traceAttempts } from '../backends/interceptors/trace.js';
import { retryInterceptor, RetryBudget } from '../backends/interceptors/retry.js';
import { OnnxBackend, type OnnxBackendOptions } from '../backends/onnx/onnx-backend.js';
import { WorkerPool } from '../backends/onnx/worker-pool.js';
import type { ModelFacts, ModelHandle } from '../pipeline/model-pipeline.js';
import type { WiringDeps } from './shared.js';

type ModelConfig = ConfigSnapshot['config']['models'][string];

/** The models of one snapshot: handles, what config says of each, and how to let them go. */
export interface BuiltModels {
  readonly handles: ReadonlyMap<string, ModelHandle>;
  readonly facts: (model: string) => ModelFacts | undefined;
  /** False while a model cannot serve (breaker open, nothing loaded). */
  readonly available: (model: string) => boolean;
  release(): Promise<void>;
}

export interface ModelsWiring {
  /** Builds every model's backend and call chain for a snapshot (validated by validateConfig). */
  build(snap: ConfigSnapshot): Promise<BuiltModels>;
  /** Closes in-process models a new snapshot no longer has. */
  retire(snap: ConfigSnapshot): Promise<void>;
  /** Re-syncs the in-process backends of a model whose store changed (registry promotions). */
  storeChanged(model: string): Promise<void>;
  close(): Promise<void>;
}

/** Where a model runs (#17): its own region and jurisdiction, else the node's. */
export function locationOf(
  snap: ConfigSnapshot,
  mc: ModelConfig,
): { region: string; jurisdiction?: string } {
  const node = snap.config.node;
  // Only a location configured for the tree (#17) is checked as one: without it, model input
  // residency stays the node-set rule of privacy.jurisdictions.
  const jurisdiction = mc.jurisdiction ?? node.jurisdiction;
  return {
    region: mc.region ?? node.region,
    ...(jurisdiction === undefined ? {} : { jurisdiction }),
  };
}

/** Each snapshot's gate settings by model, made once (every call asks). */
const gateSpecs = new WeakMap<ConfigSnapshot, Map<string, ConcurrencySpec>>();

/** A model's gate settings: `admission.concurrency` under the model's own `concurrency`. */
export function gateSpec(snap: ConfigSnapshot, name: string): ConcurrencySpec {
  let specs = gateSpecs.get(snap);
  if (specs === undefined) gateSpecs.set(snap, (specs = new Map<string, ConcurrencySpec>()));
  let spec = specs.get(name);
  if (spec === undefined) specs.set(name, (spec = makeGateSpec(snap, name)));
  return spec;
}

function makeGateSpec(snap: ConfigSnapshot, name: string): ConcurrencySpec {
  const base = snap.config.admission.concurrency;
  const mc = snap.config.models[name];
  if (mc === undefined) return base;
  // In-process models queue in their batcher: a fixed limit that keeps batches full, and the
  // batch queue as the gate's queue, so the gate's priority queue and shed curve (and the mode's
  // signals) act on them without a latency-based limit misreading batching as congestion.
  const own: Partial<ConcurrencySpec> =
    mc.backend === 'onnx'
      ? {
          algorithm: 'fixed',
          initial_limit: Math.max(64, mc.batch.max * 4),
          max_limit: Math.max(64, mc.batch.max * 4),
          max_queue: mc.batch.queue,
        }
      : {};
  const set = Object.fromEntries(
    Object.entries(mc.concurrency ?? {}).filter(([, v]) => v !== undefined),
  ) as Partial<ConcurrencySpec>;
  const limits: ConcurrencySpec = { ...base, ...own, ...set };
  return { ...limits, min_limit: Math.min(limits.min_limit, limits.initial_limit) };
}

/**
 * Models (#2, #3): HTTP upstreams (pooled connections, breakers and retry budgets that outlive
 * reloads) and in-process ONNX models (their sessions stay loaded across reloads). Every model's
 * chain holds its concurrency gate (#14): in-process models included.
 */
export function openModels(deps: WiringDeps, admission: AdmissionController): ModelsWiring {
  const pools = new PoolRegistry();
  const breakers = new Map<string, CircuitBreaker>();
  const budgets = new Map<string, RetryBudget>();
  const onnx = new Map<string, OnnxBackend>();
  const onnxOpts = new Map<string, OnnxBackendOptions>();
  let workers: WorkerPool | undefined;
  let current: ConfigSnapshot | undefined;

  /** In-process batching waits longer in modes that say so (`batch_delay_scale`). */
  const withModeBatchDelay = (opts: OnnxBackendOptions): OnnxBackendOptions => {
    const scale = admission.switches().batch_delay_scale;
    if (scale === 1) return opts;
    return { ...opts, batch: { ...opts.batch, delay_us: Math.round(opts.batch.delay_us * scale) } };
  };
  const unsubscribeMode = subscribe(events.admissionMode, () => {
    for (const [key, opts] of onnxOpts) onnx.get(key)?.reconfigure(withModeBatchDelay(opts));
  });

  const pool = (snap: ConfigSnapshot): WorkerPool => {
    if (workers === undefined) {
      const configured = snap.config.onnx.workers;
      // One core per process for its event loop, the rest shared by the worker processes of
      // `serve --workers N` (#17): N x (1 + pool) stays within the cores.
      const processes = deps.cluster?.workers ?? 1;
      const size =
        configured > 0
          ? configured
          : Math.max(1, Math.floor(availableParallelism() / processes) - 1);
      const threads = processes * size * snap.config.onnx.intra_op_threads;
      if (processes > 1 && threads > availableParallelism())
        deps.logger.warn(
          { processes, pool: size, intra_op_threads: snap.config.onnx.intra_op_threads },
          `ONNX: ${threads} inference threads on ${availableParallelism()} cores; they will contend`,
        );
      workers = new WorkerPool(size, snap.config.onnx.intra_op_threads, deps.logger);
    }
    return workers;
  };

  const onnxBackend = async (
    name: string,
    mc: DeepReadonly<OnnxModelConfig>,
    snap: ConfigSnapshot,
  ): Promise<OnnxBackend> => {
    const store = resolve(snap.dir, mc.store);
    const opts: OnnxBackendOptions = {
      name,
      store,
      policy: mc.version_policy,
      defaultVersion: mc.default_version,
      batch: mc.batch,
      allowNonFinite: mc.allow_non_finite,
      tier: mc.tier,
      pool: pool(snap),
      clock: deps.clock,
      log: deps.logger,
      // Batch priority of a traffic class: the configured classes' (lower runs first).
      priorityOf: (trafficClass: string) => admission.priorityOf(trafficClass),
      watch: mc.watch,
    };
    const key = `${name}|${store}`;
    onnxOpts.set(key, opts);
    const existing = onnx.get(key);
    if (existing !== undefined) {
      existing.reconfigure(withModeBatchDelay(opts));
      await existing.sync();
      return existing;
    }
    const backend = new OnnxBackend(withModeBatchDelay(opts));
    await backend.start();
    onnx.set(key, backend);
    return backend;
  };

  /** One HTTP model: retries, attempt records, its gate, its breaker and the deadline guard. */
  const httpModel = (
    name: string,
    mc: DeepReadonly<HttpModelConfig>,
    snap: ConfigSnapshot,
  ): { backend: Backend; call: BackendCall; release: () => Promise<void> } => {
    const { clock, random } = deps;
    const poolOf = (u: string): ReturnType<PoolRegistry['acquire']> =>
      pools.acquire(new URL(u).origin, {
        connections: mc.pool.connections,
        keepAliveMs: mc.pool.keep_alive_ms,
      });
    const dispatcher = poolOf(mc.url);
    const dispatchers = [dispatcher];
    /** A breaker kept across reloads, by key. */
    const breakerFor = (key: string, label: string): CircuitBreaker => {
      let b = breakers.get(key);
      if (b === undefined) {
        b = new CircuitBreaker(label, mc.breaker, clock);
        breakers.set(key, b);
        deps.metrics.trackBreaker(label);
      } else b.configure(mc.breaker);
      return b;
    };
    const common = {
      name,
      baseUrl: mc.url,
      dispatcher,
      timeoutMs: mc.timeout_ms,
      firstByteTimeoutMs: mc.first_byte_timeout_ms,
      maxResponseBytes: mc.max_response_bytes,
      clock,
      upstreamModel: mc.upstream_model ?? name,
      apiKey: snap.secrets.modelKeys.get(name),
      extraHeaders: mc.headers,
      tier: mc.tier,
    };
    const key = `${name}|${mc.url}`;
    let budget = budgets.get(key);
    if (budget === undefined) {
      budget = new RetryBudget(mc.retry);
      budgets.set(key, budget);
    } else budget.configure(mc.retry);
    let backend: Backend;
    if (mc.backend === 'switchyard') {
      // A parent with replicas (#17): one breaker per replica, named `model@origin`, so one dead
      // replica is passed over while the model's own breaker sees the calls the others answered.
      const urls = [mc.url, ...mc.replicas];
      const endpoints = urls.map((u, i) => {
        const d = i === 0 ? dispatcher : poolOf(u);
        if (i > 0) dispatchers.push(d);
        return urls.length === 1
          ? { baseUrl: u, dispatcher: d }
          : {
              baseUrl: u,
              dispatcher: d,
              guard: breakerInterceptor(
                breakerFor(`${name}|replica|${u}`, `${name}@${new URL(u).host}`),
              ),
            };
      });
      const { baseUrl: _b, dispatcher: _d, ...rest } = common;
      backend = new SwitchyardBackend({
        ...rest,
        endpoints,
        operations: mc.operations,
        serviceKey: { id: mc.service_key.id, secret: snap.secrets.parentKeys.get(name)! },
        assertionTtlMs: mc.service_key.ttl_ms,
        wall: () => clock.wall(),
        // Failing over after a replica's 5xx is a retry: paid from the model's retry budget.
        budget,
      });
    } else
      backend =
        mc.backend === 'openai'
          ? new OpenAiBackend({ ...common, operations: mc.operations, responses: mc.responses })
          : mc.backend === 'anthropic'
            ? new AnthropicBackend({
                ...common,
                anthropicVersion: mc.anthropic_version,
                defaultMaxTokens: mc.default_max_tokens,
              })
            : new KServeBackend(common);
    const breaker = breakerFor(key, name);
    const retry = mc.retry;
    const node = snap.config.node;
    // An edge keeps its parent's last answers for when the parent cannot be reached (#17).
    const stale =
      mc.backend === 'switchyard' && node.role === 'edge' && node.stale_cache.entries > 0
        ? [staleCache(name, node.stale_cache, clock)]
        : [];
    const call = compose(
      backend,
      ...stale,
      retryInterceptor(name, () => retry, budget, clock, random),
      recordAttempts(name, clock),
      traceAttempts(name, backend.describe().upstream),
      admission.gateInterceptor(name, () => gateSpec(current ?? snap, name)),
      breakerInterceptor(breaker),
      deadlineGuard(clock),
    );
    return {
      backend,
      call,
      release: async () => {
        await Promise.all(dispatchers.map((d) => pools.release(d)));
      },
    };
  };

  const factsOf = (snap: ConfigSnapshot, mc: ModelConfig | undefined): ModelFacts | undefined =>
    mc === undefined
      ? undefined
      : {
          tier: mc.tier,
          price: priceOf(mc.cost),
          ...locationOf(snap, mc),
          ...(mc.backend === 'switchyard' ? { parent: true } : {}),
          ...(mc.backend === 'onnx' || mc.upstream_model === undefined
            ? {}
            : { upstreamModel: mc.upstream_model }),
        };

  return {
    async build(snap) {
      const { clock } = deps;
      const releases: (() => Promise<void>)[] = [];
      const guarded = new Map<string, BackendCall>();
      const backends = new Map<string, Backend>();
      for (const [name, mc] of Object.entries(snap.config.models)) {
        if (mc.backend === 'onnx') {
          const backend = await onnxBackend(name, mc, snap);
          backends.set(name, backend);
          // In-process: no retries or breaker (a failure would repeat); attempts, the gate and
          // the deadline still apply.
          guarded.set(
            name,
            compose(
              backend,
              recordAttempts(name, clock),
              traceAttempts(name, 'in-process'),
              admission.gateInterceptor(name, () => gateSpec(current ?? snap, name)),
              deadlineGuard(clock),
            ),
          );
          continue;
        }
        const model = httpModel(name, mc, snap);
        releases.push(model.release);
        backends.set(name, model.backend);
        guarded.set(name, model.call);
      }
      // Fallbacks serving what their model serves is checked by validateConfig (#14).
      const handles = new Map<string, ModelHandle>();
      for (const [name, mc] of Object.entries(snap.config.models)) {
        const backend = backends.get(name)!;
        const ops = backend.describe().operations;
        // A link followed by a fallback gets a share of the deadline left (first_byte_share).
        const chain = [name, ...mc.fallback].map((n) => {
          const link = snap.config.models[n]!;
          const share = link.backend === 'onnx' ? {} : { firstByteShare: link.first_byte_share };
          return { name: n, call: guarded.get(n)!, ...share };
        });
        handles.set(name, {
          name,
          backend,
          call: fallbackChain(name, chain, clock),
          operations: new Set(ops),
        });
      }
      const release = async (): Promise<void> => {
        await Promise.all(releases.map((r) => r()));
      };
      current = snap;
      return {
        handles,
        facts: (model) => factsOf(snap, snap.config.models[model]),
        available: (model) => {
          const mc = snap.config.models[model];
          if (mc === undefined) return false;
          if (mc.backend === 'onnx')
            return handles.get(model)?.backend.health().state !== 'unhealthy';
          return breakers.get(`${model}|${mc.url}`)?.state !== 'open';
        },
        release,
      };
    },
    async retire(snap) {
      const keep = new Set<string>();
      for (const [name, mc] of Object.entries(snap.config.models))
        if (mc.backend === 'onnx') keep.add(`${name}|${resolve(snap.dir, mc.store)}`);
      for (const [key, backend] of onnx) {
        if (keep.has(key)) continue;
        onnx.delete(key);
        onnxOpts.delete(key);
        await backend.close();
      }
    },
    async storeChanged(model) {
      for (const [key, backend] of onnx) if (key.startsWith(`${model}|`)) await backend.sync();
    },
    async close() {
      unsubscribeMode();
      await Promise.all([...onnx.values()].map((b) => b.close()));
      await workers?.close();
      await pools.closeAll();
    },
  };
}
