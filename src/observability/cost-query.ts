import {
  COST_DIMENSIONS,
  type CostDimension,
  type CostGroup,
  type CostQuery,
} from '../contracts/cost-ledger.js';
import type { JsonObject } from '../contracts/json.js';

/** The parameters of `GET /admin/costs` and `switchyard costs`. */
export const COST_PARAMS = ['group_by', 'since', 'until', 'tenant'] as const;
export type CostParam = (typeof COST_PARAMS)[number];

/** A bad parameter: the route answers 400 SY_ERR_INVALID_REQUEST, the CLI exits 2. */
export class CostQueryError extends Error {
  constructor(
    message: string,
    readonly param: CostParam,
  ) {
    super(message);
    this.name = 'CostQueryError';
  }
}

const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** A day as `YYYY-MM-DD` (UTC): an ISO date, an ISO time, or epoch ms. */
function day(param: CostParam, v: string): string {
  let ms: number;
  if (DAY.test(v)) ms = Date.parse(`${v}T00:00:00Z`);
  else if (/^\d{1,15}$/.test(v)) ms = Number(v);
  else ms = /^\d{4}-\d{2}-\d{2}T/.test(v) ? Date.parse(v) : NaN;
  if (!Number.isFinite(ms))
    throw new CostQueryError(
      `"${param}" must be a day (YYYY-MM-DD), an ISO 8601 time or epoch ms`,
      param,
    );
  return new Date(ms).toISOString().slice(0, 10);
}

export function parseCostQuery(p: Partial<Record<CostParam, string>>): CostQuery {
  const g = p.group_by ?? 'tenant';
  if (!(COST_DIMENSIONS as readonly string[]).includes(g))
    throw new CostQueryError(`"group_by" must be one of ${COST_DIMENSIONS.join(', ')}`, 'group_by');
  const since = p.since === undefined ? undefined : day('since', p.since);
  const until = p.until === undefined ? undefined : day('until', p.until);
  if (since !== undefined && until !== undefined && since > until)
    throw new CostQueryError('"since" is after "until"', 'since');
  if (p.tenant !== undefined && (p.tenant === '' || p.tenant.length > 128))
    throw new CostQueryError('"tenant" must be a tenant name', 'tenant');
  return {
    groupBy: g as CostDimension,
    ...(since === undefined ? {} : { since }),
    ...(until === undefined ? {} : { until }),
    ...(p.tenant === undefined ? {} : { tenant: p.tenant }),
  };
}

const ratio = (a: number, b: number): number | null => (b === 0 ? null : a / b);

/**
 * One group as the API shows it: the totals, and the unit economics derived from them (cost per
 * request and per conversion, cache hit rate, edge share, fallback rate). Cost is in the config's
 * currency unit; `cost_nanos` is the exact integer the ledger keeps.
 */
export function costGroupJson(g: CostGroup): JsonObject {
  const cost = g.costNanos / 1e9;
  return {
    key: g.key,
    requests: g.requests,
    calls: g.calls,
    input_tokens: g.inputTokens,
    output_tokens: g.outputTokens,
    estimated_calls: g.estimatedCalls,
    failed_calls: g.failedCalls,
    cost,
    cost_nanos: g.costNanos,
    conversions: g.conversions,
    feedback: g.feedback,
    cost_per_request: ratio(cost, g.requests),
    cost_per_conversion: ratio(cost, g.conversions),
    conversion_rate: ratio(g.conversions, g.requests),
    vector_reads: g.vectorReads,
    vector_reads_per_request: ratio(g.vectorReads, g.requests),
    cache_hit_rate: ratio(g.cacheHits, g.cacheLookups),
    edge_share: ratio(g.edgeCalls, g.calls),
    fallback_rate: ratio(g.fallbackCalls, g.calls),
    error_rate: ratio(g.failedCalls, g.calls),
  };
}
