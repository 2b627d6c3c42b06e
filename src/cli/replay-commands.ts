import { writeFile } from 'node:fs/promises';
import type { JsonObject, JsonValue } from '../contracts/json.js';
import { RequestAbortController } from '../core/abort.js';
import { Pool, request } from '../core/undici.js';
import { createLogger } from '../observability/logger.js';
import { InvalidArgumentError } from 'commander';
import { wholeNumber } from './args.js';
import { CliUsageError, CliUserError, table, type CliIo } from './io.js';
import type { CommandKit } from './program.js';
import { createProgress } from './progress.js';

interface ReplayCliOptions {
  readonly url?: string;
  readonly key?: string;
  readonly config?: string;
  readonly candidate?: string;
  readonly tenant?: string;
  readonly journey?: string;
  readonly model?: string;
  readonly outcome?: string;
  readonly since?: string;
  readonly until?: string;
  readonly traceId?: string;
  readonly user?: string;
  readonly limit?: number;
  readonly ids?: string;
  readonly log?: boolean;
  readonly timeoutMs?: number;
  readonly minCosine?: number;
  readonly json?: boolean;
  readonly out?: string;
}

/** `[<replaces>=]<model>[@<version>]`: `intent@2`, `intent=intent-int8`, `intent=intent@2`. */
export function parseCandidateSpec(spec: string): JsonObject {
  const m = /^(?:([^=@\s]+)=)?([^=@\s]+)(?:@([^=@\s]+))?$/.exec(spec);
  if (m === null)
    throw new CliUsageError(
      `--candidate ${JSON.stringify(spec)}: use <model>[@<version>] or <replaced>=<model>[@<version>]`,
    );
  const [, replaces, model, version] = m;
  return {
    model: model!,
    ...(version === undefined ? {} : { version }),
    ...(replaces === undefined ? {} : { replaces }),
  };
}

/** The body of `POST /admin/replay` the options describe (the in-process run parses the same). */
function bodyOf(o: ReplayCliOptions): JsonObject {
  const body: JsonObject = {};
  if (o.candidate !== undefined) body['candidate'] = parseCandidateSpec(o.candidate);
  for (const k of ['tenant', 'journey', 'model', 'outcome', 'since', 'until', 'user'] as const) {
    const v = o[k];
    if (v !== undefined) body[k] = v;
  }
  if (o.traceId !== undefined) body['trace_id'] = o.traceId;
  if (o.limit !== undefined) body['limit'] = o.limit;
  if (o.ids !== undefined) body['ids'] = o.ids.split(',').filter((s) => s !== '');
  if (o.log === true) body['log'] = true;
  if (o.timeoutMs !== undefined) body['timeout_ms'] = o.timeoutMs;
  if (o.minCosine !== undefined) body['min_cosine'] = o.minCosine;
  return body;
}

type Progress = (done: number, total: number) => void;

function cosineBound(value: string): number {
  const n = value.trim() === '' ? NaN : Number(value);
  if (!(n >= -1 && n <= 1)) throw new InvalidArgumentError('It must be a number from -1 to 1.');
  return n;
}

/** POST /admin/replay on a running gateway, streamed: progress lines, then the report. */
async function remote(url: string, key: string, body: JsonObject, progress: Progress) {
  let base: URL;
  try {
    base = new URL(url);
  } catch {
    throw new CliUsageError(`--url ${JSON.stringify(url)} is not a URL`);
  }
  const pool = new Pool(base.origin, { connections: 1 });
  try {
    const res = await request(pool, {
      path: `${base.pathname.replace(/\/+$/, '')}/admin/replay`,
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ...body, stream: true }),
      // A long replay sends a line per request; no line for a while is not a dead gateway.
      bodyTimeout: 0,
      headersTimeout: 0,
    });
    if (res.statusCode >= 400) {
      const b = (await res.body.json().catch(() => ({}))) as {
        error?: { code?: string; message?: string };
      };
      throw new CliUserError(
        `${res.statusCode} ${b.error?.code ?? ''}: ${b.error?.message ?? 'the replay failed'}`,
      );
    }
    let rest = '';
    let report: JsonObject | undefined;
    for await (const chunk of res.body) {
      rest += (chunk as Buffer).toString('utf8');
      let nl: number;
      while ((nl = rest.indexOf('\n')) >= 0) {
        const line = JSON.parse(rest.slice(0, nl)) as {
          progress?: { done: number; total: number };
          report?: JsonObject;
        };
        rest = rest.slice(nl + 1);
        if (line.progress !== undefined) progress(line.progress.done, line.progress.total);
        if (line.report !== undefined) report = line.report;
      }
    }
    if (report === undefined)
      throw new CliUserError('the gateway ended the replay without a report');
    return report;
  } finally {
    await pool.close();
  }
}

/** Opens the config's gateway in this process (loopback, port 0) and replays through it. */
async function local(config: string, body: JsonObject, progress: Progress) {
  const { startGateway } = await import('../main.js');
  const { parseReplayRequest, runReplay } = await import('../frontdoor/replay-request.js');
  const gw = await startGateway({
    configPath: config,
    port: 0,
    host: '127.0.0.1',
    watch: false,
    logger: createLogger('warn'),
  });
  try {
    const runtime = gw.runtime();
    const parsed = parseReplayRequest(runtime, body);
    const report = await runReplay(runtime, parsed, new RequestAbortController().signal, progress);
    return report!;
  } finally {
    await gw.close();
  }
}

const num = (v: JsonValue | undefined, digits: number): string =>
  typeof v === 'number' ? v.toFixed(digits) : '-';
const signed = (v: JsonValue | undefined, digits: number): string =>
  typeof v === 'number' ? `${v >= 0 ? '+' : ''}${v.toFixed(digits)}` : '-';
const yes = (v: JsonValue | undefined): string => (v === true ? 'yes' : v === false ? 'no' : '-');

/** The report as tables: one row per request, then the summary. */
export function replayTable(report: JsonObject): string {
  const rows: string[][] = [
    [
      'id',
      'target',
      'agree',
      'label',
      'cosine',
      'base ms',
      'cand ms',
      'Δ ms',
      'Δ cost',
      'route',
      'outcome',
    ],
  ];
  const skips: string[] = [];
  for (const e of report['requests'] as JsonObject[]) {
    if (typeof e['skipped'] === 'string') {
      skips.push(`${e['id'] as string} (${e['skipped']})`);
      continue;
    }
    const b = e['baseline'] as JsonObject;
    const c = e['candidate'] as JsonObject;
    rows.push([
      e['id'] as string,
      e['target'] as string,
      yes(e['agree']),
      yes(e['same_label']),
      num(e['cosine'], 4),
      num(b['ms'], 2),
      num(c['ms'], 2),
      signed(e['latency_delta_ms'], 2),
      signed(e['cost_delta'], 6),
      e['route_changed'] === true ? 'changed' : 'same',
      c['outcome'] as string,
    ]);
  }
  const s = report['summary'] as JsonObject;
  const lat = s['latency_delta_ms'] as JsonObject | null;
  const cost = s['cost'] as JsonObject;
  const skipped = s['skipped'] as Record<string, number>;
  const skippedTotal = Object.values(skipped).reduce((n, x) => n + x, 0);
  const rate = (v: JsonValue | undefined): string =>
    typeof v === 'number' ? `${(v * 100).toFixed(1)}%` : '-';
  const summary: string[][] = [
    ['replayed', num(s['replayed'], 0)],
    [
      'skipped',
      skippedTotal === 0
        ? '0'
        : `${skippedTotal} (${Object.entries(skipped)
            .filter(([, n]) => n > 0)
            .map(([k, n]) => `${k} ${n}`)
            .join(', ')})`,
    ],
    ['agreement', `${rate(s['agreement_rate'])} (${num(s['agreed'], 0)}/${num(s['compared'], 0)})`],
    ['exact match', rate(s['exact_rate'])],
    ['candidate errors', num(s['candidate_errors'], 0)],
    ['route changes', num(s['route_changes'], 0)],
    [
      'latency Δ ms',
      lat === null
        ? '-'
        : `p50 ${signed(lat['p50'], 2)}, p95 ${signed(lat['p95'], 2)}, mean ${signed(lat['mean'], 2)}`,
    ],
    [
      'cost',
      `baseline ${num(cost['baseline'], 6)}, candidate ${num(cost['candidate'], 6)}, Δ ${signed(cost['delta'], 6)}`,
    ],
  ];
  const parts = [];
  if (rows.length > 1) parts.push(table(rows, 'left'));
  if (skips.length > 0) parts.push(`skipped: ${skips.join(', ')}`);
  parts.push(table(summary, 'left'));
  return `${parts.join('\n\n')}\n`;
}

async function replay(o: ReplayCliOptions, io: CliIo): Promise<void> {
  if (o.url !== undefined && o.config !== undefined)
    throw new CliUsageError('give --url (a running gateway) or --config (open it here), not both');
  if (o.url === undefined && o.config === undefined)
    throw new CliUsageError(
      'replay needs --url URL --key KEY (a running gateway) or --config FILE',
    );
  if (o.url !== undefined && o.key === undefined)
    throw new CliUsageError('replay --url needs --key KEY (an admin key)');
  if (o.ids !== undefined && o.ids.split(',').every((s) => s === ''))
    throw new CliUsageError('--ids needs request ids, comma-separated');
  const body = bodyOf(o);
  const progress = createProgress(io);
  const bar = progress.bar('replay');
  let report: JsonObject;
  try {
    report =
      o.url !== undefined
        ? await remote(o.url, o.key!, body, bar)
        : await local(o.config!, body, bar);
  } finally {
    progress.stop();
  }
  const json = `${JSON.stringify(report)}\n`;
  if (o.out !== undefined) await writeFile(o.out, json);
  io.out(o.json === true ? json : replayTable(report));
}

/** `switchyard replay`. */
export function registerReplayCommands(kit: CommandKit): void {
  kit.program
    .command('replay')
    .description(
      'Re-run logged requests (inference log records with a kept payload) against a candidate ' +
        'model or version, in shadow: no quota, budget, ledger, cache, exposure or log records. ' +
        'Reports per-request agreement (same label, cosine, exact match), latency and cost ' +
        'deltas and route changes, and a summary. Runs on a running gateway (--url, ' +
        'POST /admin/replay) or opens the config’s gateway in this process (--config).',
    )
    .option('--url <url>', 'a running gateway')
    .option('--key <key>', 'an admin key of the running gateway (with --url)')
    .option('-c, --config <file>', 'open this gateway config here instead (loopback, port 0)')
    .option(
      '--candidate <spec>',
      '<model>[@<version>] or <replaced>=<model>[@<version>]: what calls to the model (or release slot) run on; none: replay as configured',
    )
    .option('--tenant <tenant>', 'only this tenant')
    .option('--journey <name>', 'only this journey')
    .option('--model <model>', 'only requests that named or called this model')
    .option('--outcome <outcome>', 'ok, or an error code')
    .option('--since <time>', 'only requests at or after this time (epoch ms or ISO 8601)')
    .option('--until <time>', 'only requests at or before this time (epoch ms or ISO 8601)')
    .option('--trace-id <id>', 'only this trace (32 hex digits)')
    .option('--user <user>', 'only this user')
    .option(
      '--limit <n>',
      'at most this many, newest (1 to 1000, default 100)',
      wholeNumber(1, 1000),
    )
    .option('--ids <ids>', 'these request ids, comma-separated (instead of filters)')
    .option('--log', "keep the replay's model calls in the inference log (origin replay)")
    .option(
      '--timeout-ms <ms>',
      'deadline of each replayed request (default 30000)',
      wholeNumber(1, 600_000),
    )
    .option(
      '--min-cosine <x>',
      'embeddings agree at this cosine or more (-1 to 1, default 0.99)',
      cosineBound,
    )
    .option('--json', 'print the report as JSON')
    .option('--out <file>', 'also write the JSON report to this file')
    .action(kit.action((o: ReplayCliOptions) => replay(o, kit.io)));
}
