import type { AddressInfo } from 'node:net';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import type { Logger as Pino } from 'pino';
import type { Backend, BackendCall } from './contracts/backend.js';
import { systemClock, type Clock } from './core/clock.js';
import { events, publish } from './core/events.js';
import { systemRandom, type Random } from './core/random.js';
import { ConfigError, loadConfigFile, resolveSecret, type ConfigSnapshot } from './config/load.js';
import { ConfigReloader, type ReloadOutcome } from './config/reloader.js';
import type { HttpModelConfig, OnnxModelConfig } from './config/schema.js';
import type { DeepReadonly } from './config/deep-freeze.js';
import { KServeBackend } from './backends/http/kserve.js';
import { OnnxBackend } from './backends/onnx/onnx-backend.js';
import { WorkerPool } from './backends/onnx/worker-pool.js';
import { OpenAiBackend } from './backends/http/openai.js';
import { PoolRegistry } from './backends/http/pools.js';
import { breakerInterceptor, CircuitBreaker } from './backends/interceptors/breaker.js';
import { compose } from './backends/interceptors/compose.js';
import { deadlineGuard } from './backends/interceptors/deadline.js';
import { fallbackChain } from './backends/interceptors/fallback.js';
import { recordAttempts } from './backends/interceptors/record.js';
import { retryInterceptor, RetryBudget } from './backends/interceptors/retry.js';
import { KeyStore } from './frontdoor/auth.js';
import type { ModelHandle, Runtime } from './frontdoor/runtime.js';
import { createFrontDoor, type FrontDoor, type RouteEntry } from './frontdoor/server.js';
import { attachRequestLog, createLogger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { AdmissionController, type AdmissionSettings } from './admission/admission-controller.js';
import type { ExperimentSpec } from './contracts/registry-store.js';
import { openReleaseHost, type ReleaseHost } from './release/release-host.js';
import { MemoryLimiter } from './admission/memory-limiter.js';
import type { OnnxBackendOptions } from './backends/onnx/onnx-backend.js';
import type { QuotaLimiter } from './contracts/limiter.js';
import { subscribe } from './core/events.js';
import { MemoryAuditSink as ControlAuditSink } from './observability/audit-memory.js';
import type { AuditSink } from './contracts/audit.js';
import type { Personalization } from './frontdoor/runtime.js';
import {
  openFeatureStore,
  toFeatureDefinitions,
  type OpenedFeatureStore,
} from './features/open-feature-store.js';
import { setLogRedactor } from './observability/logger.js';
import { ConsentBook, type ConsentPersistence } from './privacy/consent-book.js';
import { PolicyEngine } from './privacy/policy-engine.js';
import { ResidencyMap } from './privacy/residency.js';
// Optional parts backed by native or network clients (Redis, SQLite, usearch) are imported only
// when the config asks for them, so a gateway without them does not carry them in memory.
import type { VectorHost } from './retrieval/vector-host.js';
import { compileJourneys } from './orchestrator/compile.js';
import { configuredSlots } from './orchestrator/default-slots.js';
import { releaseSlots } from './orchestrator/release-slots.js';
import { Router } from './orchestrator/router.js';
import { JourneyRunner } from './orchestrator/runner.js';
import { MemoryCache } from './state/cache-memory.js';
import { RuntimeModelInvoker } from './frontdoor/model-invoker.js';
import type { Journeys } from './frontdoor/runtime.js';

/**
 * The composition root: the only place that picks concrete implementations and wires them.
 */

/** What outlives a config reload: warm connections, breaker states, retry budgets, loaded models. */
interface Shared {
  readonly clock: Clock;
  readonly random: Random;
  readonly logger: Pino;
  readonly pools: PoolRegistry;
  readonly breakers: Map<string, CircuitBreaker>;
  readonly budgets: Map<string, RetryBudget>;
  readonly metrics: Metrics;
  /** In-process models by `name|store`: their sessions stay loaded across reloads. */
  readonly onnx: Map<string, OnnxBackend>;
  workers: WorkerPool | undefined;
  /** Admission control (#5): classes, quotas, gates and the mode outlive reloads. */
  readonly admission: AdmissionController;
  /** Control-plane audit records (mode overrides). */
  readonly controlAudit: ControlAuditSink;
  /** In-process models' options as configured, so a mode can scale their batching delay. */
  readonly onnxOpts: Map<string, OnnxBackendOptions>;
  /** Journeys (#4): learned latency profiles and the response cache outlive reloads. */
  readonly router: Router;
  readonly cache: MemoryCache;
  /** Feature store and consent records (#7): they outlive reloads; the policy is rebuilt per snapshot. */
  personal?: SharedPersonal;
  /** Vector shards (#7): opened once from the first config; shard changes need a restart. */
  vectors?: VectorHost | undefined;
  /** Release management (#6): registry, experiments, rollback loop; needs `state:`. */
  release?: ReleaseHost | undefined;
}

interface SharedPersonal {
  readonly features: OpenedFeatureStore;
  readonly consent: ConsentBook;
  readonly audit: AuditSink;
  policy: PolicyEngine | undefined;
  close(): Promise<void>;
}

const purposeDefaults = (snap: ConfigSnapshot) => {
  const p = snap.config.privacy.purposes;
  return {
    behavioral_inference: p.behavioral_inference.default,
    cross_service_personalization: p.cross_service_personalization.default,
    location: p.location.default,
  };
};

/** Opens the feature store and consent records, and makes revocation purge the user's features. */
async function openPersonalization(
  snap: ConfigSnapshot,
  shared: Shared,
  audit: AuditSink,
): Promise<SharedPersonal> {
  const { clock, logger } = shared;
  const { features: fc, privacy } = snap.config;
  const features = await openFeatureStore(fc.store, toFeatureDefinitions(fc.definitions), {
    dir: snap.dir,
    clock,
    logger,
  });
  const consentFile = privacy.consent_sqlite;
  const consentRedis = privacy.consent_redis;
  let persistence: ConsentPersistence | undefined;
  if (consentFile !== undefined) {
    const { SqliteConsentStore } = await import('./privacy/sqlite-consent-store.js');
    persistence = new SqliteConsentStore(resolve(snap.dir, consentFile));
  } else if (consentRedis !== undefined) {
    const { RedisConsentStore } = await import('./privacy/redis-consent-store.js');
    const store = new RedisConsentStore({
      url: consentRedis.url,
      prefix: consentRedis.prefix,
      commandTimeoutMs: consentRedis.command_timeout_ms,
      logger,
    });
    if (!(await store.ready(2_000)))
      logger.warn({}, 'consent store: Redis is not reachable yet; consent changes fail with 503');
    persistence = store;
  }
  const consent = new ConsentBook({
    clock,
    audit,
    defaults: purposeDefaults(snap),
    logger,
    ...(persistence === undefined ? {} : { persistence }),
  });
  await consent.ready();
  consent.onPurge({
    name: 'features',
    purge: (r) => features.purgeUser(r.tenant, r.userId, r.all ? undefined : r.purposes),
  });
  const personal: SharedPersonal = {
    features,
    consent,
    audit,
    policy: undefined,
    close: async () => {
      setLogRedactor(logger, undefined);
      await features.close();
      await consent.close();
    },
  };
  // The logging enforcement point: every log line goes through the current policy.
  setLogRedactor(logger, (obj) => personal.policy?.redact(obj) ?? obj);
  return personal;
}

/** The policy module of one snapshot, over the shared store and consent records. */
function personalizationFor(snap: ConfigSnapshot, shared: Shared): Personalization | undefined {
  const personal = shared.personal;
  if (personal === undefined) return undefined;
  personal.features.setDefinitions(toFeatureDefinitions(snap.config.features.definitions));
  personal.consent.setDefaults(purposeDefaults(snap));
  personal.policy = new PolicyEngine(snap.config.privacy, personal.consent);
  return {
    features: personal.features,
    consent: personal.consent,
    policy: personal.policy,
    logger: shared.logger,
  };
}

/** Opens the node's vector shards (local from disk, remote as clients) and the router over them. */
async function openVectors(snap: ConfigSnapshot, shared: Shared): Promise<VectorHost | undefined> {
  const v = snap.config.vectors;
  if (Object.keys(v.collections).length === 0) return undefined;
  const node = snap.config.privacy.node.id;
  const collections = Object.fromEntries(
    Object.entries(v.collections).map(([name, c]) => [
      name,
      {
        dims: c.dims,
        metric: c.metric,
        index: c.index,
        hnsw: {
          connectivity: c.hnsw.connectivity,
          expansionAdd: c.hnsw.expansion_add,
          expansionSearch: c.hnsw.expansion_search,
          quantization: c.hnsw.quantization,
        },
        shards: c.shards.map((s) => ({
          ...s,
          entityTypes: s.entity_types,
          maxSize: s.max_size,
          ttlMs: s.ttl_ms,
          apiKey: s.api_key === undefined ? undefined : resolveSecret(s.api_key, snap.dir),
        })),
      },
    ]),
  );
  const { VectorHost: Host } = await import('./retrieval/vector-host.js');
  const host = await Host.open(
    {
      node,
      dataDir: v.data_dir === undefined ? undefined : resolve(snap.dir, v.data_dir),
      scanWorkers: v.scan_workers,
      view: v.view,
      remoteTimeoutMs: v.remote_timeout_ms,
      collections,
    },
    {
      clock: shared.clock,
      random: shared.random,
      residency: new ResidencyMap(snap.config.privacy),
      logger: shared.logger,
    },
  );
  // Revoking consent shrinks the user's vector memory at once: everything on a full revocation,
  // the vectors serving a revoked purpose (`attrs.purpose`, as the policy module reads it) otherwise.
  shared.personal?.consent.onPurge({
    name: 'vectors',
    purge: (r) =>
      host.purgeWhere(
        r.tenant,
        r.all
          ? { userIds: [r.userId] }
          : { userIds: [r.userId], attrs: { purpose: [...r.purposes] } },
      ),
  });
  shared.metrics.trackVectorShards(() => host.router.stats());
  return host;
}

interface BuiltRuntime extends Runtime {
  close(): Promise<void>;
}

function workerPool(snap: ConfigSnapshot, shared: Shared): WorkerPool {
  if (shared.workers === undefined) {
    const configured = snap.config.onnx.workers;
    const size = configured > 0 ? configured : Math.max(1, availableParallelism() - 1);
    shared.workers = new WorkerPool(size, snap.config.onnx.intra_op_threads, shared.logger);
  }
  return shared.workers;
}

async function onnxBackend(
  name: string,
  mc: DeepReadonly<OnnxModelConfig>,
  snap: ConfigSnapshot,
  shared: Shared,
): Promise<OnnxBackend> {
  const store = resolve(snap.dir, mc.store);
  const opts = {
    name,
    store,
    policy: mc.version_policy,
    defaultVersion: mc.default_version,
    batch: mc.batch,
    allowNonFinite: mc.allow_non_finite,
    tier: mc.tier,
    pool: workerPool(snap, shared),
    clock: shared.clock,
    log: shared.logger,
    // Batch priority of a traffic class: the configured classes' (lower runs first).
    priorityOf: (trafficClass: string) => shared.admission.priorityOf(trafficClass),
    watch: mc.watch,
  };
  const key = `${name}|${store}`;
  shared.onnxOpts.set(key, opts);
  const scaled = withModeBatchDelay(opts, shared);
  const existing = shared.onnx.get(key);
  if (existing !== undefined) {
    existing.reconfigure(scaled);
    await existing.sync();
    return existing;
  }
  const backend = new OnnxBackend(scaled);
  await backend.start();
  shared.onnx.set(key, backend);
  return backend;
}

/** One HTTP model: its backend wrapped in retries, attempt records, its breaker and the deadline guard. */
function httpModel(
  name: string,
  mc: DeepReadonly<HttpModelConfig>,
  snap: ConfigSnapshot,
  shared: Shared,
): { backend: Backend; call: BackendCall; release: () => Promise<void> } {
  const { clock, random } = shared;
  const url = new URL(mc.url);
  const pool = shared.pools.acquire(url.origin, {
    connections: mc.pool.connections,
    keepAliveMs: mc.pool.keep_alive_ms,
  });
  const common = {
    name,
    baseUrl: mc.url,
    dispatcher: pool,
    timeoutMs: mc.timeout_ms,
    firstByteTimeoutMs: mc.first_byte_timeout_ms,
    maxResponseBytes: mc.max_response_bytes,
    clock,
    upstreamModel: mc.upstream_model ?? name,
    apiKey: snap.secrets.modelKeys.get(name),
    extraHeaders: mc.headers,
    tier: mc.tier,
  };
  const backend =
    mc.backend === 'openai'
      ? new OpenAiBackend({ ...common, operations: mc.operations })
      : new KServeBackend(common);
  const key = `${name}|${mc.url}`;
  let breaker = shared.breakers.get(key);
  if (breaker === undefined) {
    breaker = new CircuitBreaker(name, mc.breaker, clock);
    shared.breakers.set(key, breaker);
    shared.metrics.trackBreaker(name);
  } else breaker.configure(mc.breaker);
  let budget = shared.budgets.get(key);
  if (budget === undefined) {
    budget = new RetryBudget(mc.retry);
    shared.budgets.set(key, budget);
  } else budget.configure(mc.retry);
  const retry = mc.retry;
  const call = compose(
    backend,
    retryInterceptor(name, () => retry, budget, clock, random),
    recordAttempts(name, clock),
    breakerInterceptor(breaker),
    deadlineGuard(clock),
  );
  return { backend, call, release: () => shared.pools.release(pool) };
}

/**
 * Journeys (#4) are compiled here rather than in config/load.ts: compiling needs the built models
 * (operations, an in-process model's card) and the stage registry of orchestrator/, which config/
 * may not import. A bad graph throws a ConfigError listing every problem with its path, so startup
 * fails and a reload keeps the last good config, like any other config error.
 */
function buildJourneys(
  snap: ConfigSnapshot,
  shared: Shared,
  models: ReadonlyMap<string, ModelHandle>,
): Journeys {
  const available = (model: string): boolean => {
    const mc = snap.config.models[model];
    if (mc === undefined) return false;
    if (mc.backend === 'onnx') return models.get(model)?.backend.health().state !== 'unhealthy';
    return shared.breakers.get(`${model}|${mc.url}`)?.state !== 'open';
  };
  const invoker = new RuntimeModelInvoker(models, snap.config, available);
  const personal = personalizationFor(snap, shared);
  const retriever = shared.vectors?.router;
  const { journeys, problems } = compileJourneys(snap.config.journeys, {
    models: (n) => invoker.info(n),
    services: {
      features: personal !== undefined,
      retriever: retriever !== undefined,
      policy: personal !== undefined,
    },
    router: shared.router,
  });
  if (problems.length > 0) throw new ConfigError(snap.source, problems);
  const runner = new JourneyRunner(
    {
      models: invoker,
      slots: shared.release === undefined ? configuredSlots : releaseSlots(shared.release.manager),
      cache: shared.cache,
      ...(personal === undefined ? {} : { features: personal.features, policy: personal.policy }),
      ...(retriever === undefined ? {} : { retriever }),
    },
    shared.clock,
  );
  return { compiled: journeys, runner };
}

/** Builds every model's backend and call chain for one config snapshot. */
export async function buildRuntime(snap: ConfigSnapshot, shared: Shared): Promise<BuiltRuntime> {
  const { clock } = shared;
  const releases: (() => Promise<void>)[] = [];
  const guarded = new Map<string, BackendCall>();
  const backends = new Map<string, Backend>();
  for (const [name, mc] of Object.entries(snap.config.models)) {
    if (mc.backend === 'onnx') {
      const backend = await onnxBackend(name, mc, snap, shared);
      backends.set(name, backend);
      // In-process: no retries or breaker (a failure would repeat); attempts and the deadline still apply.
      guarded.set(name, compose(backend, recordAttempts(name, clock), deadlineGuard(clock)));
      continue;
    }
    const model = httpModel(name, mc, snap, shared);
    releases.push(model.release);
    backends.set(name, model.backend);
    guarded.set(name, model.call);
  }
  const models = new Map<string, ModelHandle>();
  const problems: string[] = [];
  for (const [name, mc] of Object.entries(snap.config.models)) {
    const backend = backends.get(name)!;
    const ops = backend.describe().operations;
    for (const target of mc.fallback) {
      const missing = ops.filter((op) => !backends.get(target)!.describe().operations.includes(op));
      if (missing.length > 0)
        problems.push(`models.${name}.fallback: ${target} does not serve ${missing.join(', ')}`);
    }
    const chain = [name, ...mc.fallback].map((n) => {
      const link = snap.config.models[n]!;
      const share = link.backend === 'onnx' ? {} : { firstByteShare: link.first_byte_share };
      return { name: n, call: guarded.get(n)!, ...share };
    });
    const call = fallbackChain(name, chain, clock);
    models.set(name, { name, backend, call, operations: new Set(ops) });
  }
  const close = async (): Promise<void> => {
    await Promise.all(releases.map((r) => r()));
  };
  if (problems.length > 0) {
    void close();
    throw new ConfigError(snap.source, problems);
  }
  let journeys: Journeys;
  try {
    journeys = buildJourneys(snap, shared, models);
  } catch (err) {
    void close();
    throw err;
  }
  return {
    snapshot: snap,
    models,
    keys: new KeyStore(snap.config, snap.secrets.keySecret),
    createdAt: Math.floor(clock.wall() / 1000),
    admission: shared.admission,
    audit: shared.controlAudit,
    ...optionalPersonalization(personalizationFor(snap, shared)),
    ...(shared.vectors === undefined ? {} : { vectors: shared.vectors }),
    ...(shared.release === undefined ? {} : { release: shared.release }),
    journeys,
    close,
  };
}

/** Closes in-process models the new config no longer has. */
async function retireOnnx(snap: ConfigSnapshot, shared: Shared): Promise<void> {
  const keep = new Set<string>();
  for (const [name, mc] of Object.entries(snap.config.models))
    if (mc.backend === 'onnx') keep.add(`${name}|${resolve(snap.dir, mc.store)}`);
  for (const [key, backend] of shared.onnx) {
    if (keep.has(key)) continue;
    shared.onnx.delete(key);
    await backend.close();
  }
}

const optionalPersonalization = (p: Personalization | undefined) =>
  p === undefined ? {} : { personalization: p };

/** Release management (#6), when a state store is configured. */
async function openRelease(
  snap: ConfigSnapshot,
  shared: Shared,
  currentSnapshot: () => ConfigSnapshot,
): Promise<ReleaseHost | undefined> {
  const { state, release, experiments } = snap.config;
  if (state === undefined) return undefined;
  return openReleaseHost({
    state,
    release,
    experiments: experiments as unknown as ExperimentSpec[],
    dir: snap.dir,
    clock: shared.clock,
    random: shared.random,
    logger: shared.logger,
    // Registry versions of an in-process model are loaded into its store (verified first).
    storeFor: (model) => {
      const cur = currentSnapshot();
      const mc = cur.config.models[model];
      return mc?.backend === 'onnx' ? resolve(cur.dir, mc.store) : undefined;
    },
    storeChanged: async (model) => {
      for (const [key, backend] of shared.onnx)
        if (key.startsWith(`${model}|`)) await backend.sync();
    },
    shedShadow: () => shared.admission.modes.current().mode !== 'normal',
  });
}

/** What admission reads from a snapshot. */
function admissionSettings(snap: ConfigSnapshot): AdmissionSettings {
  const c = snap.config;
  return { classes: c.classes, admission: c.admission, modes: c.modes, tenants: c.tenants };
}

/** The quota limiter: in process, or in Redis shared across replicas with a local fallback. */
async function openLimiter(
  snap: ConfigSnapshot,
  clock: Clock,
  logger: Pino,
): Promise<QuotaLimiter> {
  const l = snap.config.admission.limiter;
  if (l.store === 'memory' || l.url === undefined) return new MemoryLimiter(clock);
  const { RedisLimiter } = await import('./admission/redis-limiter.js');
  const limiter = new RedisLimiter({
    url: l.url,
    prefix: l.prefix,
    commandTimeoutMs: l.command_timeout_ms,
    probeMs: l.probe_ms,
    localShare: l.local_share,
    clock,
    logger,
  });
  if (!(await limiter.ready(1_000)))
    logger.warn(
      { limiter: 'redis' },
      'quota limiter: Redis not reachable at start, counting locally',
    );
  return limiter;
}

/** In-process batching waits longer in modes that say so (`batch_delay_scale`). */
function withModeBatchDelay(opts: OnnxBackendOptions, shared: Shared): OnnxBackendOptions {
  const scale = shared.admission.switches().batch_delay_scale;
  if (scale === 1) return opts;
  return { ...opts, batch: { ...opts.batch, delay_us: Math.round(opts.batch.delay_us * scale) } };
}

function rescaleBatching(shared: Shared): void {
  for (const [key, opts] of shared.onnxOpts)
    shared.onnx.get(key)?.reconfigure(withModeBatchDelay(opts, shared));
}

export interface GatewayOptions {
  /** The config file; watched for changes unless `watch` is false. */
  readonly configPath: string;
  readonly port?: number;
  readonly host?: string;
  readonly watch?: boolean;
  readonly logger?: Pino;
  readonly clock?: Clock;
  readonly random?: Random;
  /** Where consent changes are audited; default: in memory. */
  readonly audit?: AuditSink;
}

export interface Gateway {
  readonly url: string;
  readonly port: number;
  readonly metrics: Metrics;
  readonly logger: Pino;
  /** Admission control: its mode, gates and classes (#5). */
  readonly admission: AdmissionController;
  /** The front door's routes (method and pattern), for tests and diagnostics. */
  routes(): readonly RouteEntry[];
  runtime(): Runtime;
  reload(trigger?: 'file' | 'signal' | 'api'): Promise<ReloadOutcome>;
  close(): Promise<void>;
}

/** Loads the config, builds the runtime, and serves until `close()`. */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const initial = await loadConfigFile(options.configPath);
  const logger = options.logger ?? createLogger(initial.config.log.level);
  const metrics = new Metrics();
  const clock = options.clock ?? systemClock;
  const limiter = await openLimiter(initial, clock, logger);
  const controlAudit = new ControlAuditSink();
  const admission = new AdmissionController(admissionSettings(initial), {
    clock,
    random: options.random ?? systemRandom,
    limiter,
    audit: controlAudit,
    logger,
  });
  const shared: Shared = {
    clock: options.clock ?? systemClock,
    random: options.random ?? systemRandom,
    logger,
    pools: new PoolRegistry(),
    breakers: new Map(),
    budgets: new Map(),
    metrics,
    onnx: new Map(),
    workers: undefined,
    admission,
    controlAudit,
    onnxOpts: new Map(),
    router: new Router(clock),
    cache: new MemoryCache({ clock }),
  };
  const unsubscribeMode = subscribe(events.admissionMode, () => rescaleBatching(shared));
  // Consent changes go to the same control-plane audit trail as mode overrides.
  shared.personal = await openPersonalization(initial, shared, options.audit ?? controlAudit);
  shared.vectors = await openVectors(initial, shared);
  shared.release = await openRelease(initial, shared, () => current.snapshot);
  const detachLog = attachRequestLog(logger);
  let current = await buildRuntime(initial, shared);
  let ready = false;
  const frontDoor: FrontDoor = createFrontDoor({
    state: { runtime: () => current, ready: () => ready },
    clock: shared.clock,
    renderMetrics: () => metrics.render(),
    metricsContentType: metrics.contentType,
  });

  const reloader = new ConfigReloader(
    initial,
    async (next, previous) => {
      const built = await buildRuntime(next, shared);
      const old = current;
      admission.configure(admissionSettings(next));
      current = built; // the atomic swap: requests already running keep the runtime they started with
      logger.level = next.config.log.level;
      const s0 = previous.config.server;
      const s1 = next.config.server;
      if (
        s0.port !== s1.port ||
        s0.host !== s1.host ||
        JSON.stringify(s0.limits) !== JSON.stringify(s1.limits)
      ) {
        logger.warn(
          {},
          'server.host, server.port and server.limits changes take effect after a restart',
        );
      }
      setTimeout(() => void old.close(), next.config.server.drain_ms).unref();
      await retireOnnx(next, shared);
    },
    logger,
    (outcome) => publish(events.configReload, { result: outcome.result }),
  );
  if (options.watch !== false) reloader.start();

  const host = options.host ?? initial.config.server.host;
  const port = options.port ?? initial.config.server.port;
  await new Promise<void>((resolve, reject) => {
    frontDoor.server.once('error', reject);
    frontDoor.server.listen(port, host, () => {
      frontDoor.server.off('error', reject);
      resolve();
    });
  });
  ready = true;
  const addr = frontDoor.server.address() as AddressInfo;
  const shownHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  logger.info(
    {
      url: `http://${shownHost}:${addr.port}`,
      config: initial.source,
      digest: initial.digest,
      models: [...current.models.keys()],
    },
    'switchyard listening',
  );

  let closing: Promise<void> | undefined;
  return {
    url: `http://${shownHost}:${addr.port}`,
    port: addr.port,
    metrics,
    logger,
    admission,
    routes: () => frontDoor.routes(),
    runtime: () => current,
    reload: (trigger = 'api') => reloader.reload(trigger),
    close: () => {
      closing ??= (async () => {
        ready = false;
        reloader.stop();
        await frontDoor.close(current.snapshot.config.server.drain_ms);
        await current.close();
        unsubscribeMode();
        admission.close();
        await limiter.close();
        await shared.personal?.close();
        await shared.vectors?.close();
        await shared.release?.close();
        await Promise.all([...shared.onnx.values()].map((b) => b.close()));
        await shared.workers?.close();
        await shared.pools.closeAll();
        detachLog();
        metrics.close();
        logger.flush();
      })();
      return closing;
    },
  };
}
