import type { Logger as Pino } from 'pino';
import { AdmissionController, type AdmissionSettings } from '../admission/admission-controller.js';
import { MemoryLimiter } from '../admission/memory-limiter.js';
import { PeerLimiter } from '../admission/peer-limiter.js';
import type { SharedOverride } from '../admission/mode-controller.js';
import type { ClusterPeer } from '../contracts/cluster.js';
import type { AuditSink } from '../contracts/audit.js';
import type { QuotaLimiter } from '../contracts/limiter.js';
import type { Clock } from '../core/clock.js';
import type { ConfigSnapshot } from '../config/load.js';
import type { WiringDeps } from './shared.js';

/** What admission reads from a snapshot. */
export function admissionSettings(snap: ConfigSnapshot): AdmissionSettings {
  const c = snap.config;
  return { classes: c.classes, admission: c.admission, modes: c.modes, tenants: c.tenants };
}

/**
 * The quota limiter: in process, or in Redis shared across replicas with a local fallback. The
 * workers of `serve --workers N` (#17) share the primary process's in-process limiter, and with
 * Redis each takes 1/N of the replica's local fallback share, so an outage multiplies nothing.
 */
async function openLimiter(
  snap: ConfigSnapshot,
  clock: Clock,
  logger: Pino,
  cluster: ClusterPeer | undefined,
): Promise<QuotaLimiter> {
  const l = snap.config.admission.limiter;
  if (l.store === 'memory' || l.url === undefined)
    return cluster === undefined ? new MemoryLimiter(clock) : new PeerLimiter(cluster);
  const { RedisLimiter } = await import('../admission/redis-limiter.js');
  const limiter = new RedisLimiter({
    url: l.url,
    prefix: l.prefix,
    commandTimeoutMs: l.command_timeout_ms,
    probeMs: l.probe_ms,
    localShare: l.local_share / (cluster?.workers ?? 1),
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

const MODE_TOPIC = 'mode.override';

export interface AdmissionWiring {
  readonly controller: AdmissionController;
  reconfigure(snap: ConfigSnapshot): void;
  close(): Promise<void>;
}

/** Admission control (#5): classes, quotas, gates and the mode; they outlive reloads. */
export async function openAdmission(
  snap: ConfigSnapshot,
  deps: WiringDeps,
  audit: AuditSink,
): Promise<AdmissionWiring> {
  const limiter = await openLimiter(snap, deps.clock, deps.logger, deps.cluster);
  const controller = new AdmissionController(admissionSettings(snap), {
    clock: deps.clock,
    random: deps.random,
    limiter,
    audit,
    logger: deps.logger,
  });
  const cluster = deps.cluster;
  if (cluster !== undefined) {
    // An override reaches every worker before the admin API acknowledges it; a worker started
    // later is handed the last one (#17).
    controller.modes.shareOverrides((o) => cluster.broadcast(MODE_TOPIC, o, { retain: true }));
    cluster.on(MODE_TOPIC, (o) => controller.modes.applyShared(o as SharedOverride));
  }
  return {
    controller,
    reconfigure: (next) => controller.configure(admissionSettings(next)),
    close: async () => {
      controller.close();
      await limiter.close();
    },
  };
}
