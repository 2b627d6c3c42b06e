import { PostgresRegistryStore } from '../../src/state/postgres-registry-store.js';
import { freshSchema, PG_URL, postgresSkip } from '../support/postgres.js';
import { registryStoreContract } from './registry-store.contract.js';

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
  await postgresSkip('the PostgreSQL registry store contract'),
);
