import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { PostgresRegistryStore } from '../../src/state/postgres-registry-store.js';
import { freshSchema, PG_URL, postgresSkip } from '../support/postgres.js';
import { LEGACY_EXPOSURE, registryStoreContract } from './registry-store.contract.js';

const skip = await postgresSkip('the PostgreSQL registry store contract');

registryStoreContract(
  'PostgreSQL',
  async () => {
    const store = await PostgresRegistryStore.open({ url: PG_URL, schema: freshSchema('sy_reg') });
    return {
      store,
      close: async () => {
        await store.dropSchema();
        await store.close();
      },
    };
  },
  skip,
);

describe.skipIf(skip !== false)('the PostgreSQL registry store on a schema made before #15', () => {
  it('adds the exposures tenant and segment; old rows read them as empty', async () => {
    const schema = freshSchema('sy_reg_old');
    const client = new pg.Client({ connectionString: PG_URL });
    await client.connect();
    try {
      await client.query(`CREATE SCHEMA ${schema};
        CREATE TABLE ${schema}.rs_exposures (
          id BIGSERIAL PRIMARY KEY, inference_id TEXT NOT NULL, at BIGINT NOT NULL,
          experiment TEXT NOT NULL, variant TEXT NOT NULL, seed TEXT NOT NULL,
          bucket INTEGER NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL, unit TEXT NOT NULL)`);
      const e = LEGACY_EXPOSURE;
      await client.query(
        `INSERT INTO ${schema}.rs_exposures
           (inference_id, at, experiment, variant, seed, bucket, model, version, unit)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [
          e.inferenceId,
          e.at,
          e.experiment,
          e.variant,
          e.seed,
          e.bucket,
          e.model,
          e.version,
          e.unit,
        ],
      );
    } finally {
      await client.end();
    }
    const store = await PostgresRegistryStore.open({ url: PG_URL, schema });
    try {
      expect(await store.listExposures({ inferenceId: 'old-1' })).toEqual([LEGACY_EXPOSURE]);
      const now = { ...LEGACY_EXPOSURE, inferenceId: 'new-1', tenant: 'acme', segment: 'geo=eu' };
      await store.appendExposures([now]);
      expect(await store.listExposures({ inferenceId: 'new-1', tenant: 'acme' })).toEqual([now]);
    } finally {
      await store.dropSchema();
      await store.close();
    }
  });
});
