import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteInferenceLog } from '../../src/state/sqlite-inference-log.js';
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
