import { PostgresRegistryStore } from '../../src/state/postgres-registry-store.js';
import { postgresSkip, schemaStores } from '../support/postgres.js';
import { auditLogContract } from './audit.contract.js';

// The scaled audit log: table rs_audit in the state store's PostgreSQL schema.
auditLogContract(
  'PostgreSQL state store',
  async () => {
    const s = await schemaStores('sy_audit', (o) => PostgresRegistryStore.open(o));
    return { log: s.store, reopen: s.another, close: s.close };
  },
  await postgresSkip('the PostgreSQL audit log contract'),
);
