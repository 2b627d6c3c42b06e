import { PostgresCostLedger } from '../../src/state/postgres-cost-ledger.js';
import { postgresSkip, schemaStores } from '../support/postgres.js';
import { costLedgerContract } from './cost-ledger.contract.js';

// The scaled ledger: replicas are separate pools on one schema.
costLedgerContract(
  'PostgreSQL',
  async () => {
    const s = await schemaStores('sy_costs', (o) => PostgresCostLedger.open(o));
    return { store: s.store, another: s.another, close: s.close };
  },
  await postgresSkip('the PostgreSQL cost ledger contract'),
);
