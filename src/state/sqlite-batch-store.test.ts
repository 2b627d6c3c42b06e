import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteBatchStore } from './sqlite-batch-store.js';

describe('SqliteBatchStore on a file made before file expiry (#16)', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('adds expires_at: old files read as kept until deleted, new ones keep their expiry', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-batch-old-'));
    dirs.push(dir);
    const file = join(dir, 'state.db');
    const old = new Database(file);
    old.exec(`CREATE TABLE rs_files (
      id TEXT NOT NULL, tenant TEXT NOT NULL, filename TEXT NOT NULL, purpose TEXT NOT NULL,
      bytes INTEGER NOT NULL, created_at INTEGER NOT NULL, content BLOB NOT NULL,
      PRIMARY KEY (tenant, id))`);
    old
      .prepare('INSERT INTO rs_files VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run('file-old', 'acme', 'in.jsonl', 'batch', 1, 5, Buffer.from('x'));
    old.close();
    const store = new SqliteBatchStore(file);
    try {
      expect(await store.getFile('acme', 'file-old')).toMatchObject({ expiresAt: null });
      await store.putFile(
        {
          id: 'file-new',
          tenant: 'acme',
          filename: 'n.jsonl',
          purpose: 'batch',
          bytes: 1,
          createdAt: 5,
          expiresAt: 10,
        },
        Buffer.from('y'),
      );
      expect(await store.sweepFiles(10)).toBe(1);
      expect((await store.listFiles('acme')).map((f) => f.id)).toEqual(['file-old']);
    } finally {
      await store.close();
    }
  });
});
