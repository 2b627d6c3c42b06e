import { isAbsolute, join } from 'node:path';
import type { ConfigSnapshot } from '../config/load.js';
import type { ConsentRegistry } from '../contracts/policy.js';
import type { ResponseStore } from '../contracts/response-store.js';
import type { WiringDeps } from './shared.js';

export interface ResponsesWiring {
  readonly store: ResponseStore;
  close(): Promise<void>;
}

/**
 * Stored Responses (#16): in the state store (`state.sqlite` file, or the `state.postgres`
 * schema), else in `responses.sqlite`. Opened once, they outlive reloads. Expired responses are
 * swept every `responses.sweep_s` (reads never return one either); revoking any consent purpose
 * of a user deletes that user's stored conversations.
 */
export async function openResponses(
  snap: ConfigSnapshot,
  deps: WiringDeps,
  consent: Pick<ConsentRegistry, 'onPurge'>,
): Promise<ResponsesWiring> {
  const { state, responses } = snap.config;
  const at = (p: string): string => (isAbsolute(p) ? p : join(snap.dir, p));
  let store: ResponseStore;
  if (state !== undefined && 'postgres' in state) {
    const { PostgresResponseStore } = await import('../state/postgres-response-store.js');
    store = await PostgresResponseStore.open({ url: state.postgres, schema: state.schema });
  } else {
    const { SqliteResponseStore } = await import('../state/sqlite-response-store.js');
    store = new SqliteResponseStore(at(state === undefined ? responses.sqlite : state.sqlite));
  }
  const off = consent.onPurge({
    name: 'responses',
    purge: (r) => store.purgeUser(r.tenant, r.userId),
  });
  const sweep = setInterval(() => {
    store.sweep(deps.clock.wall()).catch((err: unknown) => {
      deps.logger.warn({ err: String(err) }, 'responses: the expiry sweep failed');
    });
  }, responses.sweep_s * 1000);
  sweep.unref();
  return {
    store,
    close: async () => {
      clearInterval(sweep);
      off();
      await store.close();
    },
  };
}
