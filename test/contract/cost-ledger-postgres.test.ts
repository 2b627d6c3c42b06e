import { PostgresCostLedger } from '../../src/state/postgres-cost-ledger.js';
import { freshSchema, PG_URL, postgresSkip } from '../support/postgres.js';
import { costLedgerContract } from './cost-ledger.contract.js';

// The scaled ledger: replicas are separate pools on one schema.
costLedgerContract(
  'PostgreSQL',
  async () => {
    const schema = freshSchema('sy_costs');
    const store = await PostgresCostLedger.open({ url: PG_URL, schema });
    const others: PostgresCostLedger[] = [];
    return {
      store,
      another: async () => {
        const o = await PostgresCostLedger.open({ url: PG_URL, schema });
        others.push(o);
        return o;
      },
      close: async () => {
        await Promise.all(others.map((o) => o.close()));
        await store.dropSchema();
        await store.close();
      },
    };
  },
  await postgresSkip('the PostgreSQL cost ledger contract'),
);
