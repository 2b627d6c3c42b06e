import {
  COUNT_FIELDS,
  NO_COUNTS,
  type CostCounts,
  type CostDelta,
  type CostGroup,
  type CostQuery,
  type OutcomeClaim,
} from '../contracts/cost-ledger.js';

/** The ledger table's key columns, in primary-key order. */
export const KEY_COLUMNS = ['day', 'tenant', 'journey', 'model', 'class', 'experiment', 'arm'];

/** Count field → column. */
export const COUNT_COLUMNS: Record<keyof CostCounts, string> = {
  requests: 'requests',
  calls: 'calls',
  inputTokens: 'input_tokens',
  outputTokens: 'output_tokens',
  estimatedCalls: 'estimated_calls',
  costNanos: 'cost_nanos',
  edgeCalls: 'edge_calls',
  fallbackCalls: 'fallback_calls',
  failedCalls: 'failed_calls',
  cacheLookups: 'cache_lookups',
  cacheHits: 'cache_hits',
  vectorReads: 'vector_reads',
  conversions: 'conversions',
  feedback: 'feedback',
};

const COUNTS = COUNT_FIELDS.map((f) => COUNT_COLUMNS[f]);

/** `CREATE TABLE` of the ledger (`bigint`: the integer type, `table`: its qualified name). */
export function ledgerTable(table: string, bigint: string): string {
  return `CREATE TABLE IF NOT EXISTS ${table} (
  ${KEY_COLUMNS.map((c) => `${c} TEXT NOT NULL`).join(', ')},
  ${COUNTS.map((c) => `${c} ${bigint} NOT NULL DEFAULT 0`).join(', ')},
  PRIMARY KEY (${KEY_COLUMNS.join(', ')}))`;
}

/**
 * One upsert adding a delta to its row: `INSERT ... ON CONFLICT DO UPDATE SET c = t.c +
 * excluded.c`. The database applies it atomically, so replicas adding at once never lose a count.
 * SQLite and PostgreSQL share the syntax; `p(n)` spells the n-th parameter.
 */
export function upsertSql(table: string, p: (n: number) => string): string {
  const cols = [...KEY_COLUMNS, ...COUNTS];
  return `INSERT INTO ${table} AS t (${cols.join(', ')}) VALUES (${cols.map((_, i) => p(i + 1)).join(', ')})
  ON CONFLICT (${KEY_COLUMNS.join(', ')}) DO UPDATE SET ${COUNTS.map((c) => `${c} = t.${c} + excluded.${c}`).join(', ')}`;
}

export function upsertParams(d: CostDelta): (string | number)[] {
  return [
    d.day,
    d.tenant,
    d.journey,
    d.model,
    d.trafficClass,
    d.experiment,
    d.arm,
    ...COUNT_FIELDS.map((f) => Math.round(d[f])),
  ];
}

/**
 * `CREATE TABLE` of the outcomes given (#15): one row per tenant and request id, so a feedback
 * repeated on any replica finds the row taken and counts nothing.
 */
export function outcomesTable(table: string, bigint: string, real: string): string {
  return `CREATE TABLE IF NOT EXISTS ${table} (
  tenant TEXT NOT NULL, request_id TEXT NOT NULL, day TEXT NOT NULL, reward ${real} NOT NULL,
  at ${bigint} NOT NULL, PRIMARY KEY (tenant, request_id))`;
}

/** Deletes the outcome claims made before a time (wall ms). */
export function outcomePruneSql(table: string, p: (n: number) => string): string {
  return `DELETE FROM ${table} WHERE at < ${p(1)}`;
}

/** Takes an outcome's row; affects no row when the request already has one. */
export function outcomeInsertSql(table: string, p: (n: number) => string): string {
  return `INSERT INTO ${table} (tenant, request_id, day, reward, at)
  VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)}) ON CONFLICT (tenant, request_id) DO NOTHING`;
}

/** Finds a request's outcome row, if it has one (params: tenant, request id). */
export function outcomeExistsSql(table: string, p: (n: number) => string): string {
  return `SELECT 1 AS taken FROM ${table} WHERE tenant = ${p(1)} AND request_id = ${p(2)}`;
}

export function outcomeInsertParams(o: OutcomeClaim): (string | number)[] {
  return [o.key.tenant, o.requestId, o.key.day, o.reward, Math.round(o.at)];
}

/** What an outcome adds to its request's row. */
export function outcomeDelta(o: OutcomeClaim): CostDelta {
  return { ...o.key, ...NO_COUNTS, feedback: 1, conversions: o.reward > 0 ? 1 : 0 };
}

const GROUP_EXPR: Record<CostQuery['groupBy'], string> = {
  tenant: 'tenant',
  journey: 'journey',
  model: 'model',
  class: 'class',
  day: 'day',
  arm: "experiment || '/' || arm",
};

/** The totals query: sums of every count, grouped, filtered by day range and tenant. */
export function totalsSql(
  table: string,
  q: CostQuery,
  p: (n: number) => string,
): { sql: string; params: string[] } {
  const where: string[] = [];
  const params: string[] = [];
  if (q.since !== undefined) {
    params.push(q.since);
    where.push(`day >= ${p(params.length)}`);
  }
  if (q.until !== undefined) {
    params.push(q.until);
    where.push(`day <= ${p(params.length)}`);
  }
  if (q.tenant !== undefined) {
    params.push(q.tenant);
    where.push(`tenant = ${p(params.length)}`);
  }
  // Grouped by arm: only rows in an experiment.
  if (q.groupBy === 'arm') where.push(`experiment <> ''`);
  // Grouped by model: only model calls (a request's own row has model '').
  if (q.groupBy === 'model') where.push(`model <> ''`);
  const g = GROUP_EXPR[q.groupBy];
  const sql = `SELECT ${g} AS k, ${COUNTS.map((c) => `SUM(${c}) AS ${c}`).join(', ')} FROM ${table}
  ${where.length === 0 ? '' : `WHERE ${where.join(' AND ')}`} GROUP BY ${g} ORDER BY ${g}`;
  return { sql, params };
}

export function groupOf(row: Record<string, unknown>): CostGroup {
  const out: Record<string, number | string> = { key: String(row['k']) };
  for (const f of COUNT_FIELDS) out[f] = Number(row[COUNT_COLUMNS[f]] ?? 0);
  return out as unknown as CostGroup;
}
