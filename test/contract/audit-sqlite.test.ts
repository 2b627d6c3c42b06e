import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteAuditLog } from '../../src/state/sqlite-audit-log.js';
import { SqliteRegistryStore } from '../../src/state/sqlite-registry-store.js';
import { auditLogContract } from './audit.contract.js';

/** A log in a temp file: `open` opens it (again), everything opened is closed at the end. */
function sqlite<T extends { close(): Promise<void> }>(open: (file: string) => T) {
  return () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-audit-'));
    const opened = [open(join(dir, 'audit.db'))];
    return Promise.resolve({
      log: opened[0]!,
      reopen: () => Promise.resolve(opened[opened.push(open(join(dir, 'audit.db'))) - 1]!),
      close: async () => {
        for (const l of opened) await l.close();
        rmSync(dir, { recursive: true, force: true });
      },
    });
  };
}

// The gateway's own audit file (no `state:`) and the embedded state store.
auditLogContract(
  'SQLite audit file',
  sqlite((f) => SqliteAuditLog.open(f)),
);
auditLogContract(
  'SQLite state store',
  sqlite((f) => new SqliteRegistryStore(f)),
);
