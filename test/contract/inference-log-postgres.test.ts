import { PostgresInferenceLog } from '../../src/state/postgres-inference-log.js';
import { postgresSkip, schemaStores } from '../support/postgres.js';
import { inferenceLogContract } from './inference-log.contract.js';

// The scaled inference log: the same tables in a PostgreSQL schema shared by every replica.
inferenceLogContract(
  'PostgreSQL',
  async () => {
    const s = await schemaStores('sy_inference', (o) => PostgresInferenceLog.open(o));
    return { store: s.store, reopen: s.another, close: s.close };
  },
  await postgresSkip('the PostgreSQL inference log contract'),
);
