import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteRegistryStore } from '../../src/state/sqlite-registry-store.js';
import { registryStoreContract } from './registry-store.contract.js';

registryStoreContract('SQLite', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-registry-'));
  const store = new SqliteRegistryStore(join(dir, 'state.db'));
  return Promise.resolve({
    store,
    close: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  });
});
