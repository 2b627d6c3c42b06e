import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, expect, it } from 'vitest';
import type { AuditEntry, AuditLog } from '../contracts/audit.js';
import { events, subscribe } from '../core/events.js';
import { SqliteAuditLog } from './sqlite-audit-log.js';
import { StoreAuditSink } from './store-audit-sink.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tempFile = (): string => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-sink-'));
  dirs.push(dir);
  return join(dir, 'audit.db');
};
const entry = (n: number): AuditEntry => ({
  at: n,
  actor: 'key:abc',
  action: 'mode.override',
  target: 'admission.mode',
  reason: `r${n}`,
});

it('has a SQLite entry on disk by the time record returns, before any await', async () => {
  const file = tempFile();
  const log = SqliteAuditLog.open(file);
  const sink = new StoreAuditSink(log);
  sink.record(entry(1));
  // Another connection, as a restarted process would read the file.
  const other = new Database(file, { readonly: true });
  const rows = other.prepare('SELECT reason FROM rs_audit').all();
  other.close();
  expect(rows).toEqual([{ reason: 'r1' }]);
  await log.close();
});

it('writes entries in the order recorded even when an earlier write is still pending', async () => {
  const inner = SqliteAuditLog.open(tempFile());
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  // The first write waits on the gate (a slow database); the later ones must queue behind it.
  const slow: AuditLog = {
    appendAudit: async (e) => {
      if (e.at === 1) await gate;
      await inner.appendAudit(e);
    },
    listAudit: (q) => inner.listAudit(q),
  };
  const sink = new StoreAuditSink(slow);
  sink.record(entry(1));
  sink.record(entry(2));
  sink.record(entry(3));
  release();
  expect((await sink.list()).map((e) => e.at)).toEqual([3, 2, 1]);
  await inner.close();
});

it('logs, counts and publishes a failed write, and keeps writing the entries after it', async () => {
  const file = tempFile();
  const log = SqliteAuditLog.open(file);
  const errors: unknown[] = [];
  const logger = {
    error: (obj: unknown) => void errors.push(obj),
    warn: () => undefined,
    info: () => undefined,
    debug: () => undefined,
    child: () => logger,
  };
  const published: string[] = [];
  const stop = subscribe(events.auditWrite, (e) => published.push(e.result));
  const sink = new StoreAuditSink(log, logger);
  sink.record(entry(1));
  await log.close(); // the database goes away under the sink
  sink.record(entry(2));
  await sink.flush();
  stop();
  expect(sink.failed()).toBe(1);
  expect(published).toEqual(['ok', 'failed']);
  expect(errors).toMatchObject([{ action: 'mode.override' }]);
  const reopened = SqliteAuditLog.open(file);
  const again = new StoreAuditSink(reopened);
  again.record(entry(3));
  expect((await again.list()).map((e) => e.at)).toEqual([3, 1]);
  await reopened.close();
});
