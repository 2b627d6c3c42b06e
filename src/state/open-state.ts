import { isAbsolute, join } from 'node:path';
import type { AuditLog } from '../contracts/audit.js';
import type { Logger } from '../contracts/logger.js';
import type { RegistryStore } from '../contracts/registry-store.js';
import { StoreAuditSink } from './store-audit-sink.js';

/** The `state:` config: an embedded SQLite file or a PostgreSQL URL. */
export type StateSettings =
  { readonly sqlite: string } | { readonly postgres: string; readonly schema?: string | undefined };

/** The `audit:` config: the audit file used when there is no `state:`. */
export interface AuditSettings {
  readonly sqlite: string;
}

const at = (dir: string, p: string): string => (isAbsolute(p) ? p : join(dir, p));

/** Opens the configured state store; the driver (better-sqlite3 or pg) is loaded only when used. */
export async function openRegistryStore(state: StateSettings, dir: string): Promise<RegistryStore> {
  if ('sqlite' in state) {
    const { SqliteRegistryStore } = await import('./sqlite-registry-store.js');
    return new SqliteRegistryStore(at(dir, state.sqlite));
  }
  const { PostgresRegistryStore } = await import('./postgres-registry-store.js');
  return PostgresRegistryStore.open({
    url: state.postgres,
    ...(state.schema === undefined ? {} : { schema: state.schema }),
  });
}

/** The gateway's durable audit trail: where it is kept, and the one sink that writes it. */
export interface AuditTrail {
  readonly log: AuditLog;
  readonly sink: StoreAuditSink;
  /** The state store the trail lives in (absent without `state:`): share it, do not reopen it. */
  readonly store?: RegistryStore;
  /** Where it is kept, for logs and errors: `sqlite:<path>` or `postgres:<schema>`. */
  readonly where: string;
  /** Waits for pending writes, then closes the log (and the state store with it). */
  close(): Promise<void>;
}

/**
 * Opens the audit trail of a config: in the state store when `state:` is configured, else in
 * the gateway's own SQLite file `audit.sqlite` (relative to `dir`, the config's directory).
 * A file that cannot be opened fails the start: an audit that silently forgets is the bug this
 * replaces (#14).
 */
export async function openAuditTrail(o: {
  readonly state?: StateSettings | undefined;
  readonly audit: AuditSettings;
  readonly dir: string;
  readonly logger?: Logger;
}): Promise<AuditTrail> {
  let log: AuditLog & { close(): Promise<void> };
  let store: RegistryStore | undefined;
  let where: string;
  if (o.state !== undefined) {
    store = log = await openRegistryStore(o.state, o.dir);
    where =
      'sqlite' in o.state
        ? `sqlite:${at(o.dir, o.state.sqlite)}`
        : `postgres:${o.state.schema ?? 'switchyard'}`;
  } else {
    const file = at(o.dir, o.audit.sqlite);
    const { SqliteAuditLog } = await import('./sqlite-audit-log.js');
    try {
      log = SqliteAuditLog.open(file);
    } catch (err) {
      // Keeps the cause's code (EACCES, SQLITE_CANTOPEN, ...): the CLI shows such errors in one line.
      throw Object.assign(
        new Error(
          `cannot open the audit log ${file} (audit.sqlite): ${err instanceof Error ? err.message : String(err)}`,
          { cause: err },
        ),
        { code: (err as { code?: unknown }).code },
      );
    }
    where = `sqlite:${file}`;
  }
  const sink = new StoreAuditSink(log, o.logger);
  let closing: Promise<void> | undefined;
  return {
    log,
    sink,
    ...(store === undefined ? {} : { store }),
    where,
    close: () =>
      (closing ??= (async () => {
        await sink.flush();
        await log.close();
      })()),
  };
}
