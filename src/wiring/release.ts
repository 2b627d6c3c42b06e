import { resolve } from 'node:path';
import type { ExperimentSpec } from '../contracts/registry-store.js';
import type { ConfigSnapshot } from '../config/load.js';
import { openReleaseHost, type ReleaseHost } from '../release/release-host.js';
import type { AuditTrail } from '../state/open-state.js';
import type { WiringDeps } from './shared.js';

export interface ReleaseHooks {
  /** The current snapshot (a registry version loads into the store its model has now). */
  readonly current: () => ConfigSnapshot;
  /** Tells a model's in-process backends that their store changed. */
  readonly storeChanged: (model: string) => Promise<void>;
  /** True while the gateway sheds load: shadow copies go first. */
  readonly shedShadow: () => boolean;
  /** The gateway's audit trail: when it lives in the state store, the release host shares it. */
  readonly trail: AuditTrail;
}

const FLUSH_TOPIC = 'release.flush';

/**
 * Release management (#6): registry, experiments, rollback loop; only with `state:`. With `serve
 * --workers N`, a worker looking up an exposure another worker made has every worker write its
 * buffered exposures first (#15), as the inference log's reads do.
 */
export async function openRelease(
  snap: ConfigSnapshot,
  deps: WiringDeps,
  hooks: ReleaseHooks,
): Promise<ReleaseHost | undefined> {
  const { state, release, experiments } = snap.config;
  if (state === undefined) return undefined;
  const trail = hooks.trail;
  const cluster = deps.cluster;
  const host = await openReleaseHost({
    state,
    ...(trail.store === undefined ? {} : { shared: { store: trail.store, audit: trail.sink } }),
    release,
    experiments: experiments as unknown as ExperimentSpec[],
    dir: snap.dir,
    clock: deps.clock,
    random: deps.random,
    logger: deps.logger,
    // Registry versions of an in-process model are loaded into its store (verified first).
    storeFor: (model) => {
      const cur = hooks.current();
      const mc = cur.config.models[model];
      return mc?.backend === 'onnx' ? resolve(cur.dir, mc.store) : undefined;
    },
    storeChanged: hooks.storeChanged,
    shedShadow: hooks.shedShadow,
    ...(cluster === undefined
      ? {}
      : { flushElsewhere: () => cluster.broadcast(FLUSH_TOPIC, null) }),
  });
  // A failed write keeps the rows buffered; the asking worker just finds none yet.
  cluster?.on(FLUSH_TOPIC, () => host.manager.flush().catch(() => undefined));
  return host;
}
