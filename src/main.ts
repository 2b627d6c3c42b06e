import type { AddressInfo } from 'node:net';
import type { Logger as Pino } from 'pino';
import { systemClock, type Clock } from './core/clock.js';
import { events, publish } from './core/events.js';
import { systemRandom, type Random } from './core/random.js';
import type { ConfigSnapshot } from './config/load.js';
import { ConfigReloader, reloadAuditEntry, type ReloadOutcome } from './config/reloader.js';
import type { AuditSink } from './contracts/audit.js';
import type { AdmissionController } from './admission/admission-controller.js';
import { KeyStore } from './frontdoor/auth.js';
import type { Runtime } from './frontdoor/runtime.js';
import { createFrontDoor, type FrontDoor, type RouteEntry } from './frontdoor/server.js';
import type { GrpcFrontDoor } from './frontdoor/grpc-server.js';
import { attachRequestLog, createLogger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { Router } from './orchestrator/router.js';
import { openAuditTrail } from './state/open-state.js';
import { openAdmission } from './wiring/admission.js';
import { openResponseCache } from './wiring/cache.js';
import { openConfigSync } from './wiring/config-sync.js';
import { openInferenceLog } from './wiring/inference-log.js';
import { openCosts } from './wiring/costs.js';
import { openModels } from './wiring/models.js';
import { openPersonalization } from './wiring/personalization.js';
import { openRelease } from './wiring/release.js';
import { openResponses } from './wiring/responses.js';
import { openBatches } from './wiring/batches.js';
import { buildRuntimeParts, type RuntimeInputs } from './wiring/runtime.js';
import type { WiringDeps } from './wiring/shared.js';
import { loadValidConfig } from './wiring/validate-config.js';
import { openVectors } from './wiring/vectors.js';
import { openTracing } from './wiring/tracing.js';
import type { WorkerLink } from './cluster/worker-link.js';
import { METRICS_COLLECT_TOPIC, METRICS_TOPIC } from './cluster/metrics-aggregate.js';

/**
 * The composition root: it only composes. Each capability is opened by its module under
 * `wiring/` (which picks the implementations), reconfigured on reload, and closed in reverse
 * order; the front door serves the runtime built from the current snapshot.
 */

interface BuiltRuntime extends Runtime {
  close(): Promise<void>;
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
  /** Where control-plane changes are audited; default: the config's durable audit trail. */
  readonly audit?: AuditSink;
  /** This process is worker N of `serve --workers N` (#17): what the workers share goes through it. */
  readonly cluster?: WorkerLink;
}

export interface Gateway {
  readonly url: string;
  readonly port: number;
  /** The KServe v2 gRPC port, when `server.grpc.enabled`. */
  readonly grpcPort: number | undefined;
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

/**
 * Loads and validates the config (the one validation `config check` and reloads run, #14), opens
 * every capability, builds the runtime, and serves until `close()`.
 */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const initial = await loadValidConfig(options.configPath);
  const deps: WiringDeps = {
    clock: options.clock ?? systemClock,
    random: options.random ?? systemRandom,
    logger: options.logger ?? createLogger(initial.config.log.level),
    metrics: new Metrics(),
    ...(options.cluster === undefined ? {} : { cluster: options.cluster }),
  };
  const cluster = options.cluster;
  const { logger, metrics } = deps;
  const closers: (() => Promise<void>)[] = [];
  let current: BuiltRuntime | undefined;
  try {
    // The durable audit trail (#14): in the state store, or the gateway's own audit file.
    const { state, audit: auditFile } = initial.config;
    const trail = await openAuditTrail({ state, audit: auditFile, dir: initial.dir, logger });
    closers.push(() => trail.close());
    const audit = options.audit ?? trail.sink;
    const tracing = await openTracing(initial, deps);
    closers.push(() => tracing.close());
    const admission = await openAdmission(initial, deps, audit);
    closers.push(() => admission.close());
    const costs = await openCosts(
      initial,
      deps,
      () => current?.snapshot ?? initial,
      () => current?.inferenceLog,
    );
    closers.push(() => costs.close());
    const models = openModels(deps, admission.controller);
    closers.push(() => models.close());
    const personal = await openPersonalization(initial, deps, audit);
    closers.push(() => personal.close());
    // The inference log (#15): closed after the front door, so every request's record is written.
    const inferenceLog = await openInferenceLog(initial, deps, personal.consent);
    if (inferenceLog !== undefined) closers.push(() => inferenceLog.close());
    const responses = await openResponses(initial, deps, personal.consent);
    closers.push(() => responses.close());
    // Files and batches (#16): the runner takes the current runtime at every step.
    const batches = await openBatches(initial, deps, () => current);
    closers.push(() => batches.close());
    const vectors = await openVectors(initial, deps, personal.consent);
    if (vectors !== undefined) closers.push(() => vectors.close());
    const release = await openRelease(initial, deps, {
      current: () => current?.snapshot ?? initial,
      storeChanged: (model) => models.storeChanged(model),
      shedShadow: () => admission.controller.modes.current().mode !== 'normal',
      trail,
    });
    if (release !== undefined) closers.push(() => release.close());
    const detachLog = attachRequestLog(logger);
    closers.push(() => Promise.resolve(detachLog()));
    const router = new Router(deps.clock);
    const cache = await openResponseCache(initial, deps);
    closers.push(() => cache.close());

    const build = async (snap: ConfigSnapshot): Promise<BuiltRuntime> => {
      const keys = new KeyStore(snap.config, snap.secrets.keySecret, snap.secrets.serviceKeys, () =>
        deps.clock.wall(),
      );
      const inputs: RuntimeInputs = {
        deps,
        models,
        admission: admission.controller,
        personalization: personal.reconfigure(snap),
        vectors,
        release,
        router,
        cache,
        mayUse: (tenant, model) => keys.mayUse(tenant, model),
        budget: costs.recorder,
      };
      const parts = await buildRuntimeParts(snap, inputs);
      const tracer = await tracing.reconfigure(snap);
      const batchHost = batches.current(snap);
      return {
        snapshot: snap,
        models: parts.models,
        pipeline: parts.pipeline,
        catalog: parts.catalog,
        journeys: parts.journeys,
        keys,
        createdAt: Math.floor(deps.clock.wall() / 1000),
        admission: admission.controller,
        audit,
        personalization: personal.current(),
        responses: responses.store,
        ...(batchHost === undefined ? {} : { batches: batchHost }),
        ...(vectors === undefined ? {} : { vectors }),
        ...(release === undefined ? {} : { release }),
        ...(inferenceLog === undefined ? {} : { inferenceLog: inferenceLog.reader }),
        costs,
        ...(tracer === undefined ? {} : { tracer }),
        close: () => parts.close(),
      };
    };
    current = await build(initial);
    let ready = false;
    // Replicas of a group share config changes (#17): published after a local reload, adopted
    // (validated like one) when another replica published them.
    const configSync = await openConfigSync(initial, deps, () => reloader);
    if (configSync !== undefined) closers.push(() => configSync.close());
    // With workers, a scrape of any one of them answers for all: the primary sums them (#17).
    cluster?.on(METRICS_COLLECT_TOPIC, () => metrics.registry.getMetricsAsJSON());
    const frontDoor: FrontDoor = createFrontDoor({
      state: {
        runtime: () => current!,
        ready: () => ready,
        configSync: () => configSync?.status(),
        ...(cluster === undefined
          ? {}
          : { worker: () => ({ id: cluster.id, pid: process.pid, of: cluster.workers }) }),
      },
      clock: deps.clock,
      renderMetrics:
        cluster === undefined
          ? () => metrics.render()
          : async () => String(await cluster.request(METRICS_TOPIC, null)),
      metricsContentType: metrics.contentType,
      ...(cluster === undefined
        ? {
            openMetrics: {
              render: () => metrics.openMetrics(),
              contentType: metrics.openMetricsContentType,
            },
          }
        : {}),
    });

    const reloader = new ConfigReloader(
      initial,
      async (next, previous) => {
        const built = await build(next);
        const old = current!;
        admission.reconfigure(next);
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
        await models.retire(next);
      },
      logger,
      (outcome) => {
        publish(events.configReload, { result: outcome.result });
        const entry = reloadAuditEntry(outcome, initial.source, deps.clock.wall());
        if (entry !== undefined) audit.record(entry);
        configSync?.outcome(outcome);
      },
      loadValidConfig,
    );
    if (options.watch !== false) reloader.start();
    // Broadcasts that arrived while opening (the last mode override, consent changes) apply now,
    // before this worker takes its first request.
    await cluster?.start();

    const host = options.host ?? initial.config.server.host;
    const port = options.port ?? initial.config.server.port;
    await new Promise<void>((resolve, reject) => {
      frontDoor.server.once('error', reject);
      frontDoor.server.listen(port, host, () => {
        frontDoor.server.off('error', reject);
        resolve();
      });
    });
    const g = initial.config.server.grpc;
    let grpcDoor: GrpcFrontDoor | undefined;
    if (g.enabled) {
      // gRPC (and its 4 MB of heap) loads only when the gRPC front door is on.
      const { startGrpcFrontDoor } = await import('./frontdoor/grpc-server.js');
      grpcDoor = await startGrpcFrontDoor(
        { runtime: () => current!, ready: () => ready },
        deps.clock,
        g.host ?? host,
        g.port,
      );
      const door = grpcDoor;
      closers.push(() => door.close());
    }
    ready = true;
    configSync?.start();
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
      grpcPort: grpcDoor?.port,
      metrics,
      logger,
      admission: admission.controller,
      routes: () => frontDoor.routes(),
      runtime: () => current!,
      reload: (trigger = 'api') => reloader.reload(trigger),
      close: () => {
        closing ??= (async () => {
          ready = false;
          reloader.stop();
          // Batch lines drain with the requests, before the runtime's upstream pools close.
          await Promise.all([
            frontDoor.close(current!.snapshot.config.server.drain_ms),
            batches.stop(),
          ]);
          await current!.close();
          for (const close of closers.reverse()) await close();
          metrics.close();
          logger.flush();
        })();
        return closing;
      },
    };
  } catch (err) {
    // A capability that failed to open leaves none of the others running.
    await current?.close().catch(() => undefined);
    for (const close of closers.reverse()) await close().catch(() => undefined);
    metrics.close();
    throw err;
  }
}
