import type { ConfigSnapshot } from '../config/load.js';
import type { CostLedgerStore } from '../contracts/cost-ledger.js';
import type { InferenceLogReader } from '../contracts/inference-log.js';
import { CostRecorder } from '../observability/cost-recorder.js';
import { OutcomeJoin } from '../observability/outcome-join.js';
import { openCostLedger } from '../state/open-cost-ledger.js';
import type { WiringDeps } from './shared.js';

/** The cost ledger (#15): its store, and the recorder that writes it and enforces budgets. */
export interface CostsWiring {
  readonly recorder: CostRecorder;
  readonly store: CostLedgerStore;
  /** `/v1/feedback` outcomes, joined to the request's row whichever replica served it. */
  readonly outcomes: OutcomeJoin;
  /** Where the totals are kept: `sqlite:<path>` or `postgres:<schema>`. */
  readonly where: string;
  /**
   * Writes what is recorded and not yet written: this process's, and with `serve --workers N`
   * every worker's (#17), so a read of the ledger right after shows every request answered.
   */
  flush(): Promise<void>;
  close(): Promise<void>;
}

const FLUSH_TOPIC = 'costs.flush';

/** The tenants' daily budgets of a snapshot (computed once per snapshot). */
const budgetsOf = new WeakMap<ConfigSnapshot, ReadonlyMap<string, number>>();
function budgets(snap: ConfigSnapshot): ReadonlyMap<string, number> {
  let m = budgetsOf.get(snap);
  if (m === undefined) {
    const out = new Map<string, number>();
    for (const [name, t] of Object.entries(snap.config.tenants))
      if (t.budget?.daily_spend !== undefined) out.set(name, t.budget.daily_spend);
    budgetsOf.set(snap, (m = out));
  }
  return m;
}

/**
 * Opens the ledger where the config keeps state: PostgreSQL (`state.postgres`, shared by every
 * replica), the state store's SQLite file, or the gateway's own `costs.sqlite`. Budgets follow
 * the current snapshot (`current`), so a reload changes them at once. Feedback on a request
 * another replica served finds its cost key in the inference log (`log`), when that is on.
 */
export async function openCosts(
  initial: ConfigSnapshot,
  deps: WiringDeps,
  current: () => ConfigSnapshot,
  log: () => InferenceLogReader | undefined = () => undefined,
): Promise<CostsWiring> {
  const { state, costs } = initial.config;
  const { store, where } = await openCostLedger({ state, costs, dir: initial.dir });
  const recorder = new CostRecorder({
    store,
    clock: deps.clock,
    flushMs: costs.flush_ms,
    budgets: () => budgets(current()),
    logger: deps.logger,
  });
  const flushMs = initial.config.inference_log.flush_ms; // the log's timers are set at start
  const outcomes = new OutcomeJoin({
    store,
    clock: deps.clock,
    local: (tenant, id) => recorder.attribution(tenant, id),
    log: () => {
      const reader = log();
      return reader === undefined ? undefined : { reader, flushMs };
    },
  });
  // Outcome claims are kept `outcome_retention_days` (the window in which a repeated feedback
  // counts once), then swept: the table would otherwise grow by one row per feedback forever.
  const keepMs = costs.outcome_retention_days * 86_400_000;
  const sweep = setInterval(
    () => {
      store.pruneOutcomes(deps.clock.wall() - keepMs).catch((err: unknown) => {
        deps.logger.warn({ err: String(err) }, 'costs: the outcome sweep failed');
      });
    },
    Math.min(3_600_000, Math.max(100, keepMs / 10)),
  );
  sweep.unref();
  const cluster = deps.cluster;
  cluster?.on(FLUSH_TOPIC, () => recorder.flush());
  return {
    recorder,
    store,
    outcomes,
    where,
    flush: async () => {
      await Promise.all([recorder.flush(), cluster?.broadcast(FLUSH_TOPIC, null)]);
    },
    close: async () => {
      clearInterval(sweep);
      await recorder.close();
      await store.close();
    },
  };
}
