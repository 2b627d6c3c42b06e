import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SqliteRegistryStore } from '../../src/state/sqlite-registry-store.js';
import { LEGACY_EXPOSURE, registryStoreContract } from './registry-store.contract.js';

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

describe('the SQLite registry store on a file made before #15', () => {
  it('adds the exposures tenant and segment; old rows read them as empty', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-registry-old-'));
    const path = join(dir, 'state.db');
    const old = new Database(path);
    old.exec(`CREATE TABLE rs_exposures (
      id INTEGER PRIMARY KEY AUTOINCREMENT, inference_id TEXT NOT NULL, at INTEGER NOT NULL,
      experiment TEXT NOT NULL, variant TEXT NOT NULL, seed TEXT NOT NULL, bucket INTEGER NOT NULL,
      model TEXT NOT NULL, version TEXT NOT NULL, unit TEXT NOT NULL)`);
    const { tenant: _t, segment: _s, ...legacy } = LEGACY_EXPOSURE;
    old
      .prepare(
        `INSERT INTO rs_exposures (inference_id, at, experiment, variant, seed, bucket, model, version, unit)
         VALUES (@inferenceId, @at, @experiment, @variant, @seed, @bucket, @model, @version, @unit)`,
      )
      .run(legacy);
    old.close();
    const store = new SqliteRegistryStore(path);
    try {
      expect(await store.listExposures({ inferenceId: 'old-1' })).toEqual([LEGACY_EXPOSURE]);
      const now = { ...LEGACY_EXPOSURE, inferenceId: 'new-1', tenant: 'acme', segment: 'geo=eu' };
      await store.appendExposures([now]);
      expect(await store.listExposures({ inferenceId: 'new-1', tenant: 'acme' })).toEqual([now]);
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
