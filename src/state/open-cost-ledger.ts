import { isAbsolute, join } from 'node:path';
import type { CostLedgerStore } from '../contracts/cost-ledger.js';
import type { StateSettings } from './open-state.js';

const at = (dir: string, p: string): string => (isAbsolute(p) ? p : join(dir, p));

/**
 * Opens the cost ledger where a config keeps it: PostgreSQL (`state.postgres`, shared by every
 * replica), the state store's SQLite file, or the gateway's own `costs.sqlite` (relative to the
 * config's directory). The gateway and `switchyard costs` open the same store this way.
 */
export async function openCostLedger(o: {
  readonly state?: StateSettings | undefined;
  readonly costs: { readonly sqlite: string };
  readonly dir: string;
}): Promise<{ store: CostLedgerStore; where: string }> {
  if (o.state !== undefined && 'postgres' in o.state) {
    const { PostgresCostLedger } = await import('./postgres-cost-ledger.js');
    const store = await PostgresCostLedger.open({ url: o.state.postgres, schema: o.state.schema });
    return { store, where: `postgres:${o.state.schema ?? 'switchyard'}` };
  }
  const file = at(o.dir, o.state !== undefined ? o.state.sqlite : o.costs.sqlite);
  const { SqliteCostLedger } = await import('./sqlite-cost-ledger.js');
  return { store: SqliteCostLedger.open(file), where: `sqlite:${file}` };
}
