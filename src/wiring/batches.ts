import { isAbsolute, join } from 'node:path';
import type { ConfigSnapshot } from '../config/load.js';
import type { BatchStore } from '../contracts/batch-store.js';
import { BatchRunner, type BatchRuntime } from '../pipeline/batch-runner.js';
import type { WiringDeps } from './shared.js';

export interface BatchesWiring {
  readonly store: BatchStore;
  readonly runner: BatchRunner;
  /** The store and the runner to wake, while `batches.enabled` (the routes answer 404 otherwise). */
  current(snap: ConfigSnapshot): { readonly store: BatchStore; kick(): void } | undefined;
  /** Stops the runner: in-flight lines drain for `server.drain_ms`, then are cut (interrupted). */
  stop(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Files and batches (#16): in the state store (`state.sqlite` file, or the `state.postgres`
 * schema), else in `batches.sqlite`. Opened once, they outlive reloads; the runner reads the
 * current runtime (its pipeline, admission and `batches.*`) at every step, so a reload applies to
 * the next line. Closing stops starting lines and waits for those in flight to commit.
 */
export async function openBatches(
  snap: ConfigSnapshot,
  deps: WiringDeps,
  runtime: () => BatchRuntime | undefined,
): Promise<BatchesWiring> {
  const { state, batches } = snap.config;
  const at = (p: string): string => (isAbsolute(p) ? p : join(snap.dir, p));
  let store: BatchStore;
  if (state !== undefined && 'postgres' in state) {
    const { PostgresBatchStore } = await import('../state/postgres-batch-store.js');
    store = await PostgresBatchStore.open({ url: state.postgres, schema: state.schema });
  } else {
    const { SqliteBatchStore } = await import('../state/sqlite-batch-store.js');
    store = new SqliteBatchStore(at(state === undefined ? batches.sqlite : state.sqlite));
  }
  const runner = new BatchRunner({
    store,
    clock: deps.clock,
    logger: deps.logger.child({ component: 'batches' }),
    runtime,
  });
  runner.start();
  const host = { store, kick: () => runner.kick() };
  return {
    store,
    runner,
    current: (s) => (s.config.batches.enabled ? host : undefined),
    stop: () => runner.close(),
    close: async () => {
      await runner.close();
      await store.close();
    },
  };
}
