import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { openWalSqlite } from './sqlite-wal.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('openWalSqlite', () => {
  it('waits for another process that holds the file locked, then opens it in WAL mode', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-wal-'));
    dirs.push(dir);
    const file = join(dir, 'state.db');
    // Another process takes an exclusive lock on a fresh (not yet WAL) file for 400 ms.
    const holder = spawn(
      process.execPath,
      [
        '-e',
        `const D = require('better-sqlite3'); const db = new D(${JSON.stringify(file)});
         db.exec('CREATE TABLE t (x)'); db.exec('BEGIN EXCLUSIVE'); console.log('LOCKED');
         setTimeout(() => { db.exec('COMMIT'); db.close(); }, 400);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const [line] = (await once(holder.stdout, 'data')) as [Buffer];
    expect(line.toString()).toContain('LOCKED');
    const db = openWalSqlite(file);
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    } finally {
      db.close();
      await once(holder, 'exit');
    }
  });
});
