import { PostgresResponseStore } from '../../src/state/postgres-response-store.js';
import { postgresSkip, schemaStores } from '../support/postgres.js';
import { responseStoreContract } from './response-store.contract.js';

// Stored responses in the state store's PostgreSQL schema, shared by replicas.
responseStoreContract(
  'PostgreSQL state store',
  async () => {
    const s = await schemaStores('sy_resp', (o) => PostgresResponseStore.open(o));
    return { store: s.store, reopen: s.another, close: s.close };
  },
  await postgresSkip('the PostgreSQL response store contract'),
);
