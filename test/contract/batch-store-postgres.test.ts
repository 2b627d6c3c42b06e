import { PostgresBatchStore } from '../../src/state/postgres-batch-store.js';
import { postgresSkip, schemaStores } from '../support/postgres.js';
import { batchStoreContract } from './batch-store.contract.js';

// Files and batches in the state store's PostgreSQL schema, shared by replicas.
batchStoreContract(
  'PostgreSQL state store',
  async () => {
    const s = await schemaStores('sy_batch', (o) => PostgresBatchStore.open(o));
    return { store: s.store, reopen: s.another, close: s.close };
  },
  await postgresSkip('the PostgreSQL batch store contract'),
);
