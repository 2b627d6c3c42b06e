import { syError } from '../../core/errors.js';
import {
  COST_PARAMS,
  CostQueryError,
  costGroupJson,
  parseCostQuery,
  type CostParam,
} from '../../observability/cost-query.js';
import type { RequestContext } from '../context.js';
import { sendJson } from '../respond.js';

/**
 * `GET /admin/costs?group_by=tenant|journey|model|class|arm|day&since=&until=&tenant=` (#15): the
 * cost ledger's totals and unit economics. What this replica recorded is written first, so the
 * answer includes every request it finished. Admin keys only.
 */
export async function listCosts(ctx: RequestContext): Promise<void> {
  if (ctx.principal?.admin !== true)
    throw syError('SY_ERR_ADMIN_REQUIRED', `key ${ctx.principal?.fingerprint ?? 'none'}`);
  const url = ctx.req.url ?? '';
  const search = new URLSearchParams(url.includes('?') ? url.slice(url.indexOf('?') + 1) : '');
  const params: Partial<Record<CostParam, string>> = {};
  for (const [k, v] of search) {
    if (!(COST_PARAMS as readonly string[]).includes(k))
      throw syError(
        'SY_ERR_INVALID_REQUEST',
        `unknown parameter "${k.slice(0, 64)}"; use ${COST_PARAMS.join(', ')}`,
        { param: k.slice(0, 64) },
      );
    if (params[k as CostParam] !== undefined)
      throw syError('SY_ERR_INVALID_REQUEST', `"${k}" is given twice`, { param: k });
    params[k as CostParam] = v;
  }
  let query;
  try {
    query = parseCostQuery(params);
  } catch (err) {
    if (err instanceof CostQueryError)
      throw syError('SY_ERR_INVALID_REQUEST', err.message, { param: err.param });
    throw err;
  }
  const costs = ctx.runtime.costs;
  if (costs === undefined) throw syError('SY_ERR_NOT_READY', 'the cost ledger is not open');
  await (costs.flush?.() ?? costs.recorder.flush()); // every worker's with --workers N (#17)
  const groups = await costs.store.totals(query);
  sendJson(ctx, 200, { group_by: query.groupBy, groups: groups.map(costGroupJson) });
}
