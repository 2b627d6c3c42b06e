import { PostgresInferenceLog } from '../../src/state/postgres-inference-log.js';
import { freshSchema, PG_URL, postgresSkip } from '../support/postgres.js';
import { inferenceLogContract } from './inference-log.contract.js';

// The scaled inference log: the same tables in a PostgreSQL schema shared by every replica.
inferenceLogContract(
  'PostgreSQL',
  async () => {
    const schema = freshSchema('sy_inference');
    const store = await PostgresInferenceLog.open({ url: PG_URL, schema });
    const reopened: PostgresInferenceLog[] = [];
    return {
      store,
      reopen: async () => {
        const again = await PostgresInferenceLog.open({ url: PG_URL, schema });
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
  await postgresSkip('the PostgreSQL inference log contract'),
);
