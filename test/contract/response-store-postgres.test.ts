import { PostgresResponseStore } from '../../src/state/postgres-response-store.js';
import { freshSchema, PG_URL, postgresSkip } from '../support/postgres.js';
import { responseStoreContract } from './response-store.contract.js';

// Stored responses in the state store's PostgreSQL schema, shared by replicas.
responseStoreContract(
  'PostgreSQL state store',
  async () => {
    const schema = freshSchema('sy_resp');
    const store = await PostgresResponseStore.open({ url: PG_URL, schema });
    const reopened: PostgresResponseStore[] = [];
    return {
      store,
      reopen: async () => {
        const again = await PostgresResponseStore.open({ url: PG_URL, schema });
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
  await postgresSkip('the PostgreSQL response store contract'),
);
