import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import type { AuditSink } from '../contracts/audit.js';
import type { Logger } from '../contracts/logger.js';
import type { ExperimentSpec, RegistryStore, VersionRecord } from '../contracts/registry-store.js';
import type { Clock } from '../core/clock.js';
import type { Random } from '../core/random.js';
import { StoreAuditSink } from '../state/store-audit-sink.js';
import { parsePublicKey } from './artifacts.js';
import { ModelRegistry } from './model-registry.js';
import { ReleaseManager } from './release-manager.js';

/** The `state:` config: an embedded SQLite file or a PostgreSQL URL. */
export type StateSettings =
  { readonly sqlite: string } | { readonly postgres: string; readonly schema?: string | undefined };

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
  readonly feedback_ttl_s: number;
  readonly feedback_capacity: number;
  readonly shadow: {
    readonly max_in_flight: number;
    readonly timeout_ms: number;
    readonly max_lag_ms: number;
  };
  readonly layers: Readonly<Record<string, { readonly holdout: number }>>;
}

export interface ReleaseHostOptions {
  readonly state: StateSettings;
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

/** Opens the configured store; the driver (better-sqlite3 or pg) is loaded only when used. */
export async function openRegistryStore(state: StateSettings, dir: string): Promise<RegistryStore> {
  if ('sqlite' in state) {
    const { SqliteRegistryStore } = await import('../state/sqlite-registry-store.js');
    return new SqliteRegistryStore(at(dir, state.sqlite));
  }
  const { PostgresRegistryStore } = await import('../state/postgres-registry-store.js');
  return PostgresRegistryStore.open({
    url: state.postgres,
    ...(state.schema === undefined ? {} : { schema: state.schema }),
  });
}

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
  const store = await openRegistryStore(o.state, o.dir);
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
    ...(o.onDecision === undefined ? {} : { onDecision: o.onDecision }),
  });
  await manager.start();
  for (const spec of o.experiments) {
    if (manager.experiment(spec.id) !== undefined) continue;
    await manager.create(spec, { actor: 'config', reason: 'declared in config' });
  }
  const retireTimer = setInterval(() => {
    registry
      .retireDue()
      .catch((err: unknown) => o.logger?.error({ err: String(err) }, 'retirement sweep failed'));
  }, 60_000);
  retireTimer.unref();
  const audit = new StoreAuditSink(store, o.logger);
  return {
    store,
    registry,
    manager,
    audit,
    close: async () => {
      clearInterval(retireTimer);
      await manager.close();
      await audit.flush();
      await store.close();
    },
  };
}
