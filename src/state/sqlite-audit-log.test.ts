import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, expect, it } from 'vitest';
import { SqliteAuditLog } from './sqlite-audit-log.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

it('adds before and after to an audit table written before they existed, keeping its entries', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-audit-old-'));
  dirs.push(dir);
  const file = join(dir, 'state.db');
  // The layout of rs_audit before #14 (release management wrote it).
  const old = new Database(file);
  old.exec(`CREATE TABLE rs_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, target TEXT NOT NULL, reason TEXT NOT NULL, detail TEXT)`);
  old
    .prepare(
      'INSERT INTO rs_audit (at, actor, action, target, reason, detail) VALUES (?, ?, ?, ?, ?, ?)',
    )
    .run(1, 'cli:ops', 'model.push', 'intent@1', 'first', '{"files":1}');
  old.close();

  const log = SqliteAuditLog.open(file);
  await log.appendAudit({
    at: 2,
    actor: 'key:abc',
    action: 'model.promote',
    target: 'intent@1',
    reason: 'ship',
    before: { stage: 'staging' },
    after: { stage: 'production' },
  });
  const [promote, push] = await log.listAudit();
  expect(push).toEqual({
    id: 1,
    at: 1,
    actor: 'cli:ops',
    action: 'model.push',
    target: 'intent@1',
    reason: 'first',
    detail: { files: 1 },
  });
  expect(promote).toMatchObject({ before: { stage: 'staging' }, after: { stage: 'production' } });
  await log.close();
});
