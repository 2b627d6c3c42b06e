import { PostgresRegistryStore } from '../../src/state/postgres-registry-store.js';
import { freshSchema, PG_URL, postgresSkip } from '../support/postgres.js';
import { auditLogContract } from './audit.contract.js';

// The scaled audit log: table rs_audit in the state store's PostgreSQL schema.
auditLogContract(
  'PostgreSQL state store',
  async () => {
    const schema = freshSchema('sy_audit');
    const store = await PostgresRegistryStore.open({ url: PG_URL, schema });
    const reopened: PostgresRegistryStore[] = [];
    return {
      log: store,
      reopen: async () => {
        const again = await PostgresRegistryStore.open({ url: PG_URL, schema });
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
  await postgresSkip('the PostgreSQL audit log contract'),
);
