import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';

/** How long opening a file waits on another process holding it (and the busy timeout after). */
const WAIT_MS = 5_000;
const nap = new Int32Array(new SharedArrayBuffer(4));

/**
 * Opens a SQLite file (its directory made if missing) in WAL mode with a busy timeout. Several
 * processes may open one file at the same moment (`serve --workers N`, the CLI beside a running
 * gateway): switching the journal mode needs an exclusive lock, and SQLite answers SQLITE_BUSY at
 * once instead of waiting on it, so the switch is tried again for up to 5 s. A worker otherwise
 * died at start with "database is locked" (seen in CI with two workers opening the audit log).
 */
export function openWalSqlite(path: string): Database.Database {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path, { timeout: WAIT_MS });
  const until = Date.now() + WAIT_MS;
  for (;;) {
    try {
      db.pragma('journal_mode = WAL');
      return db;
    } catch (err) {
      if ((err as { code?: string }).code !== 'SQLITE_BUSY' || Date.now() >= until) {
        db.close();
        throw err;
      }
      // Only at open, before the process serves: a short synchronous wait, then again.
      Atomics.wait(nap, 0, 0, 10);
    }
  }
}
