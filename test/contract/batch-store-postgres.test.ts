import { PostgresBatchStore } from '../../src/state/postgres-batch-store.js';
import { freshSchema, PG_URL, postgresSkip } from '../support/postgres.js';
import { batchStoreContract } from './batch-store.contract.js';

// Files and batches in the state store's PostgreSQL schema, shared by replicas.
batchStoreContract(
  'PostgreSQL state store',
  async () => {
    const schema = freshSchema('sy_batch');
    const store = await PostgresBatchStore.open({ url: PG_URL, schema });
    const reopened: PostgresBatchStore[] = [];
    return {
      store,
      reopen: async () => {
        const again = await PostgresBatchStore.open({ url: PG_URL, schema });
        reopened.push(again);
        return again;
      },
      close: async () => {
        await Promise.all(reopened.map((s) => s.close()));
        await store.dropSchema();
        await store.close();
      },
    };
  },
  await postgresSkip('the PostgreSQL batch store contract'),
);
