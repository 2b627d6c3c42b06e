import { loadConfigFile } from '../config/load.js';
import { COST_DIMENSIONS, type CostGroup } from '../contracts/cost-ledger.js';
import { COST_PARAMS, costGroupJson, parseCostQuery } from '../observability/cost-query.js';
import { openCostLedger } from '../state/open-cost-ledger.js';
import { table, type CliIo } from './io.js';
import type { CommandKit } from './program.js';

interface CostsOptions {
  readonly config: string;
  readonly groupBy?: string;
  readonly since?: string;
  readonly until?: string;
  readonly tenant?: string;
  readonly json?: boolean;
}

const num = (v: number | null, digits: number): string => (v === null ? '-' : v.toFixed(digits));
const pct = (v: number | null): string => (v === null ? '-' : `${(v * 100).toFixed(1)}%`);

/** `switchyard costs`: the same store and the same query as `GET /admin/costs`. */
async function costs(o: CostsOptions, io: CliIo): Promise<void> {
  // Parsed before anything is opened: a bad --since is a usage error (exit 2).
  const given: Record<string, string | undefined> = {
    group_by: o.groupBy,
    since: o.since,
    until: o.until,
    tenant: o.tenant,
  };
  const query = parseCostQuery(
    Object.fromEntries(COST_PARAMS.flatMap((k) => (given[k] === undefined ? [] : [[k, given[k]]]))),
  );
  const snap = await loadConfigFile(o.config);
  const { state, costs: settings } = snap.config;
  const { store, where } = await openCostLedger({ state, costs: settings, dir: snap.dir });
  let groups: CostGroup[];
  try {
    groups = await store.totals(query);
  } finally {
    await store.close();
  }
  if (o.json === true) {
    io.out(`${JSON.stringify({ group_by: query.groupBy, groups: groups.map(costGroupJson) })}\n`);
    return;
  }
  if (groups.length === 0) {
    io.err(`switchyard: no costs recorded for this query (${where})\n`);
    return;
  }
  const rows = groups.map((g) => {
    const j = costGroupJson(g);
    return [
      g.key === '' ? '(none)' : g.key,
      String(g.requests),
      String(g.calls),
      String(g.inputTokens),
      String(g.outputTokens),
      num(j['cost'] as number, 6),
      num(j['cost_per_request'] as number | null, 6),
      String(g.conversions),
      num(j['cost_per_conversion'] as number | null, 6),
      pct(j['cache_hit_rate'] as number | null),
      pct(j['edge_share'] as number | null),
      pct(j['fallback_rate'] as number | null),
    ];
  });
  const head = [
    query.groupBy,
    'requests',
    'calls',
    'in tokens',
    'out tokens',
    'cost',
    'cost/request',
    'conversions',
    'cost/conversion',
    'cache hits',
    'edge',
    'fallback',
  ];
  io.out(`${table([head, ...rows])}\n`);
}

/** `costs`. */
export function registerCostsCommands(kit: CommandKit): void {
  kit.program
    .command('costs')
    .description(
      'Show the cost ledger: spend, tokens and unit economics (cost per request and per ' +
        'conversion, cache hit rate, edge share, fallback rate) grouped by tenant, journey, ' +
        "model, class, experiment arm or day. Reads the store the config's gateway writes.",
    )
    .requiredOption('-c, --config <file>', 'the gateway config')
    .option('--group-by <dimension>', `one of ${COST_DIMENSIONS.join(', ')} (default tenant)`)
    .option('--since <day>', 'from this UTC day (YYYY-MM-DD, ISO 8601 or epoch ms)')
    .option('--until <day>', 'to this UTC day, inclusive')
    .option('--tenant <name>', 'only this tenant')
    .option('--json', 'print JSON as GET /admin/costs answers')
    .action(kit.action((o: CostsOptions) => costs(o, kit.io)));
}
