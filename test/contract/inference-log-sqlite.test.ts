import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteInferenceLog } from '../../src/state/sqlite-inference-log.js';
import { ThreadedSqliteInferenceLog } from '../../src/state/threaded-inference-log.js';
import { inferenceLogContract } from './inference-log.contract.js';

// The embedded inference log: a SQLite file of its own (WAL).
inferenceLogContract('SQLite file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-inference-'));
  const file = join(dir, 'var', 'inference.db');
  const opened = [SqliteInferenceLog.open(file)];
  return Promise.resolve({
    store: opened[0]!,
    reopen: () => Promise.resolve(opened[opened.push(SqliteInferenceLog.open(file)) - 1]!),
    close: async () => {
      for (const l of opened) await l.close();
      rmSync(dir, { recursive: true, force: true });
    },
  });
});

// The same file with its writes on a thread of their own (what the gateway opens).
inferenceLogContract('SQLite file, writer thread', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-inference-'));
  const file = join(dir, 'var', 'inference.db');
  const opened = [await ThreadedSqliteInferenceLog.open(file)];
  return {
    store: opened[0]!,
    reopen: async () => opened[opened.push(await ThreadedSqliteInferenceLog.open(file)) - 1]!,
    close: async () => {
      for (const l of opened) await l.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});
