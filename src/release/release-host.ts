import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import type { AuditSink } from '../contracts/audit.js';
import type { Logger } from '../contracts/logger.js';
import type {
  ExperimentRecord,
  ExperimentSpec,
  RegistryStore,
  VariantSpec,
  VersionRecord,
} from '../contracts/registry-store.js';
import type { Clock } from '../core/clock.js';
import type { Random } from '../core/random.js';
import { openRegistryStore, type StateSettings } from '../state/open-state.js';
import { StoreAuditSink } from '../state/store-audit-sink.js';
import { parsePublicKey } from './artifacts.js';
import { ModelRegistry } from './model-registry.js';
import { ReleaseManager } from './release-manager.js';

export { openRegistryStore, type StateSettings };

/** The `release:` config, as validated by the config schema. */
export interface ReleaseSettings {
  readonly registry_dir: string;
  readonly signing_keys: readonly {
    readonly id: string;
    readonly public_key?: string | undefined;
    readonly file?: string | undefined;
  }[];
  readonly evaluate_ms: number;
  readonly flush_ms: number;
  readonly poll_ms: number;
  readonly promote_on_complete: boolean;
  readonly feedback_ttl_s: number;
  readonly feedback_capacity: number;
  readonly exposure_wait_s: number;
  readonly shadow: {
    readonly max_in_flight: number;
    readonly timeout_ms: number;
    readonly max_lag_ms: number;
  };
  readonly layers: Readonly<Record<string, { readonly holdout: number }>>;
}

export interface ReleaseHostOptions {
  readonly state: StateSettings;
  /**
   * The state store, when the caller has opened it already (the gateway's audit trail lives in
   * it): one store, one sink. The caller then closes it; otherwise the host opens and closes it.
   */
  readonly shared?: { readonly store: RegistryStore; readonly audit: AuditSink };
  readonly release: ReleaseSettings;
  readonly experiments: readonly ExperimentSpec[];
  /** Relative paths (state file, registry dir, key files) resolve against this directory. */
  readonly dir: string;
  readonly clock: Clock;
  readonly random: Random;
  readonly logger?: Logger;
  /** The ONNX model store a registry model loads into, if it is served in process. */
  readonly storeFor?: (model: string) => string | undefined;
  /** Tells the model's backend its store changed (load/unload without a restart). */
  readonly storeChanged?: (model: string) => Promise<void>;
  /** True while the gateway sheds load: shadow copies go first. */
  readonly shedShadow?: () => boolean;
  readonly onDecision?: (d: { experiment: string; action: string; reason: string }) => void;
  /** Has the other processes sharing the store write their exposures now (`--workers N`). */
  readonly flushElsewhere?: () => Promise<void>;
}

/** Registry, release manager and durable audit over one state store. */
export interface ReleaseHost {
  readonly store: RegistryStore;
  readonly registry: ModelRegistry;
  readonly manager: ReleaseManager;
  readonly audit: AuditSink;
  close(): Promise<void>;
}

const at = (dir: string, p: string): string => (isAbsolute(p) ? p : join(dir, p));

export function pinnedKeys(release: ReleaseSettings, dir: string): Map<string, KeyObject> {
  return new Map(release.signing_keys.map((k) => [k.id, pinnedKey(k, dir)]));
}

/** One pinned key: its PEM inline or in a file (relative to the config). Throws when unusable. */
export function pinnedKey(key: ReleaseSettings['signing_keys'][number], dir: string): KeyObject {
  return parsePublicKey(key.public_key ?? readFileSync(at(dir, key.file!), 'utf8'));
}

/**
 * Opens release management: the state store, the registry with its pinned keys, and the release
 * manager with its loops; experiments declared in config are created when missing (audited as
 * `config`). Serving-stage changes of a model that runs in process are materialized into its ONNX
 * store (verified first) and the backend re-synced: load and unload without a restart.
 */
export async function openReleaseHost(o: ReleaseHostOptions): Promise<ReleaseHost> {
  const store = o.shared?.store ?? (await openRegistryStore(o.state, o.dir));
  const onStage = async (v: VersionRecord): Promise<void> => {
    const target = o.storeFor?.(v.model);
    if (target === undefined) return;
    if (v.stage === 'shadow' || v.stage === 'canary' || v.stage === 'production')
      await registry.materialize(v.model, v.version, target);
    else if (v.stage === 'retired') await registry.dematerialize(v.version, target);
    else return;
    await o.storeChanged?.(v.model);
  };
  const registry: ModelRegistry = new ModelRegistry({
    store,
    dir: at(o.dir, o.release.registry_dir),
    keys: pinnedKeys(o.release, o.dir),
    clock: o.clock,
    onStage,
  });
  const r = o.release;
  const manager = new ReleaseManager({
    store,
    clock: o.clock,
    random: o.random,
    ...(o.logger === undefined ? {} : { logger: o.logger }),
    evaluateMs: r.evaluate_ms,
    flushMs: r.flush_ms,
    pollMs: r.poll_ms,
    shadow: {
      maxInFlight: r.shadow.max_in_flight,
      timeoutMs: r.shadow.timeout_ms,
      maxLagMs: r.shadow.max_lag_ms,
      ...(o.shedShadow === undefined ? {} : { shed: o.shedShadow }),
    },
    layers: r.layers,
    feedbackTtlMs: r.feedback_ttl_s * 1000,
    feedbackCapacity: r.feedback_capacity,
    exposureWaitMs: r.exposure_wait_s * 1000,
    ...(o.onDecision === undefined ? {} : { onDecision: o.onDecision }),
    ...(o.flushElsewhere === undefined ? {} : { flushElsewhere: o.flushElsewhere }),
    // A canary that completed its ramp promotes its version in the registry (audited there).
    ...(r.promote_on_complete
      ? {
          complete: async (rec: ExperimentRecord, candidate: VariantSpec) => {
            const v =
              candidate.version === undefined
                ? undefined
                : await store.getVersion(candidate.model, candidate.version);
            if (v === undefined)
              return `${candidate.model}${candidate.version === undefined ? '' : `@${candidate.version}`} is not in the registry: nothing to promote`;
            if (v.stage === 'production') return `${v.model}@${v.version} is already in production`;
            await registry.promote(v.model, v.version, 'production', {
              actor: 'system',
              reason: `experiment ${rec.spec.id} completed its ramp`,
            });
            return `${v.model}@${v.version} promoted to production`;
          },
        }
      : {}),
  });
  await manager.start();
  for (const spec of o.experiments)
    await manager.ensure(spec, { actor: 'config', reason: 'declared in config' });
  const retireTimer = setInterval(() => {
    registry
      .retireDue()
      .catch((err: unknown) => o.logger?.error({ err: String(err) }, 'retirement sweep failed'));
  }, 60_000);
  retireTimer.unref();
  const audit = o.shared?.audit ?? new StoreAuditSink(store, o.logger);
  return {
    store,
    registry,
    manager,
    audit,
    close: async () => {
      clearInterval(retireTimer);
      await manager.close();
      if (o.shared !== undefined) return;
      await audit.flush?.();
      await store.close();
    },
  };
}
