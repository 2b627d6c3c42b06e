import { loadConfigFile } from '../config/load.js';
import type { InferenceLogStore, RequestRecord } from '../contracts/inference-log.js';
import {
  parseRequestQuery,
  REQUEST_PARAMS,
  REQUESTS_MAX_LIMIT,
  requestDetailJson,
  requestJson,
  type RequestParam,
} from '../observability/inference-query.js';
import { openInferenceStore } from '../wiring/inference-log.js';
import { CliUserError, table, type CliIo } from './io.js';
import type { CommandKit } from './program.js';

interface ListOptions {
  readonly config: string;
  readonly tenant?: string;
  readonly journey?: string;
  readonly model?: string;
  readonly outcome?: string;
  readonly since?: string;
  readonly until?: string;
  readonly traceId?: string;
  readonly user?: string;
  readonly limit?: string;
  readonly cursor?: string;
  readonly json?: boolean;
}

interface ShowOptions {
  readonly config: string;
  readonly json?: boolean;
}

const time = (at: number): string => new Date(at).toISOString().replace('T', ' ').slice(0, 23);
const money = (n: number): string => (n === 0 ? '0' : n.toPrecision(4));

async function withStore<T>(
  configPath: string,
  fn: (store: InferenceLogStore) => Promise<T>,
): Promise<T> {
  const snap = await loadConfigFile(configPath);
  const store = await openInferenceStore(snap);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** `switchyard requests list`: the same store and query as `GET /admin/requests`. */
async function list(o: ListOptions, io: CliIo): Promise<void> {
  const given: Partial<Record<RequestParam, string>> = {};
  for (const k of REQUEST_PARAMS) {
    const v = k === 'trace_id' ? o.traceId : o[k];
    if (v !== undefined) given[k] = v;
  }
  // Parsed before anything is opened: a bad --since is a usage error (exit 2).
  const query = parseRequestQuery(given);
  const page = await withStore(o.config, (s) => s.query(query));
  if (o.json === true) {
    io.out(
      `${JSON.stringify({ requests: page.records.map(requestJson), next_cursor: page.nextCursor ?? null })}\n`,
    );
    return;
  }
  if (page.records.length === 0) {
    io.err('switchyard: no requests match\n');
    return;
  }
  const rows = page.records.map((r: RequestRecord) => [
    time(r.at),
    r.id,
    r.tenant,
    r.journey ?? r.model,
    String(r.status),
    r.outcome,
    r.durationMs.toFixed(1),
    String(r.inputTokens + r.outputTokens),
    money(r.cost),
    r.path.length > 48 ? `${r.path.slice(0, 47)}…` : r.path,
  ]);
  io.out(
    `${table([['time (UTC)', 'id', 'tenant', 'model/journey', 'status', 'outcome', 'ms', 'tokens', 'cost', 'route'], ...rows], 'left')}\n`,
  );
  if (page.nextCursor !== undefined)
    io.err(`switchyard: more requests: add --cursor ${page.nextCursor}\n`);
}

/** `switchyard requests show <id>`: the record with its model calls. */
async function show(id: string, o: ShowOptions, io: CliIo): Promise<void> {
  const d = await withStore(o.config, (s) => s.get(id));
  if (d === undefined)
    throw new CliUserError(`no request ${JSON.stringify(id)} in the inference log`);
  if (o.json === true) {
    io.out(`${JSON.stringify(requestDetailJson(d))}\n`);
    return;
  }
  const head: [string, string][] = [
    ['id', d.id],
    ['time (UTC)', time(d.at)],
    ['tenant', d.tenant],
    ['user', d.user ?? '-'],
    ['class', d.trafficClass],
    ['request', `${d.method} ${d.route} ${d.journey ?? d.model}`],
    ['status', `${d.status} ${d.outcome}`],
    ['ms', d.durationMs.toFixed(1)],
    [
      'tokens',
      `${d.inputTokens} in, ${d.outputTokens} out${d.tokensEstimated === true ? ' (estimated by the tokenizer)' : ''}`,
    ],
    ['cost', money(d.cost)],
    ['route', d.path],
    ['versions', d.versions.join(', ') || '-'],
    ['experiments', d.experiments.join(', ') || '-'],
    ['trace', d.traceId ?? '-'],
    ['payload', d.payload === undefined ? 'not kept' : 'kept (--json shows it)'],
  ];
  io.out(`${table(head, 'left')}\n`);
  if (d.stages !== undefined && d.stages.length > 0) {
    const rows = d.stages.map((s) => [
      s.stage,
      s.kind,
      s.outcome,
      s.code,
      s.ms.toFixed(1),
      s.reason,
    ]);
    io.out(`\n${table([['stage', 'kind', 'outcome', 'code', 'ms', 'reason'], ...rows], 'left')}\n`);
  }
  if (d.calls.length > 0) {
    const rows = d.calls.map((c) => [
      c.origin,
      c.op,
      c.model,
      c.servedBy,
      c.version,
      c.outcome,
      c.ms.toFixed(1),
      `${c.inputTokens}/${c.outputTokens}`,
      money(c.cost),
      c.reason,
    ]);
    io.out(
      `\n${table([['origin', 'op', 'model', 'served by', 'version', 'outcome', 'ms', 'tokens', 'cost', 'why'], ...rows], 'left')}\n`,
    );
  }
}

/** `requests list`, `requests show`. */
export function registerRequestsCommands(kit: CommandKit): void {
  const g = kit.group('requests');
  g.command('list')
    .description(
      "List inference log records, newest first. Reads the store the config's gateway writes " +
        '(inference_log.path, or its PostgreSQL schema).',
    )
    .requiredOption('-c, --config <file>', 'the gateway config')
    .option('--tenant <tenant>', 'only this tenant')
    .option('--journey <name>', 'only this journey')
    .option('--model <model>', 'only requests that named or called this model')
    .option('--outcome <outcome>', 'ok, or an error code such as SY_ERR_UPSTREAM_ERROR')
    .option('--since <time>', 'only requests at or after this time (epoch ms or ISO 8601)')
    .option('--until <time>', 'only requests at or before this time (epoch ms or ISO 8601)')
    .option('--trace-id <id>', 'only this trace (32 hex digits)')
    .option('--user <user>', 'only this user')
    .option('--limit <n>', `at most this many (1 to ${REQUESTS_MAX_LIMIT}, default 100)`)
    .option('--cursor <c>', 'the next page: the cursor the previous page printed')
    .option('--json', 'print JSON as GET /admin/requests answers')
    .action(kit.action((o: ListOptions) => list(o, kit.io)));
  g.command('show')
    .description('Show one request record with its route and its model calls.')
    .argument('<id>', 'the request id (x-request-id)')
    .requiredOption('-c, --config <file>', 'the gateway config')
    .option('--json', 'print JSON as GET /admin/requests/{id} answers')
    .action(kit.action((id: string, o: ShowOptions) => show(id, o, kit.io)));
}
