import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteBatchStore } from '../../src/state/sqlite-batch-store.js';
import { SqliteRegistryStore } from '../../src/state/sqlite-registry-store.js';
import { batchStoreContract } from './batch-store.contract.js';

function sqlite(withRegistry: boolean) {
  return () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-batches-'));
    const file = join(dir, 'state.db');
    // The state store's own file, opened by the registry too (both connections write it).
    const registry = withRegistry ? new SqliteRegistryStore(file) : undefined;
    const opened = [new SqliteBatchStore(file)];
    return Promise.resolve({
      store: opened[0]!,
      reopen: () => Promise.resolve(opened[opened.push(new SqliteBatchStore(file)) - 1]!),
      close: async () => {
        for (const s of opened) await s.close();
        await registry?.close();
        rmSync(dir, { recursive: true, force: true });
      },
    });
  };
}

batchStoreContract('SQLite file of its own', sqlite(false));
batchStoreContract('SQLite state store', sqlite(true));
