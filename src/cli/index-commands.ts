import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import type { VectorRecord, VectorShardStats } from '../contracts/vector-index.js';
import { Pool, request } from '../core/undici.js';
import { isSwitchyardError } from '../core/errors.js';
import { startGateway, type Gateway } from '../main.js';
import { createLogger } from '../observability/logger.js';
import { vectorTag } from '../privacy/policy-engine.js';
import { progressBar } from '../retrieval/progress-bar.js';
import { parseWire, toRecord, wireRecord } from '../retrieval/shard-wire.js';
import { childSizes } from '../retrieval/shard-totals.js';
import type { VectorHost } from '../retrieval/vector-host.js';
import { CliUsageError, processIo, runCli, table, type CliIo } from './models-commands.js';

export const INDEX_USAGE = `  switchyard index build --config FILE --collection C --input FILE.jsonl [--tenant T]
  switchyard index stats (--config FILE | --url URL --key KEY) --collection C [--probe]
  switchyard index rebalance (--config FILE | --url URL --key KEY) --collection C --shard ID
`;

export const INDEX_HELP = `index build      Bulk-load vectors from JSON lines ({"id","vector","meta"} as in the upsert API)
                 into a stopped node's shards: every line is validated and admitted by the
                 consent policy first (nothing is written if one fails), then each HNSW shard
                 builds its graph in a worker with a progress bar, and is persisted.
index stats      Size, QPS, p95 and recall per shard: of a running gateway (--url, admin key),
                 or of a stopped node's files (--config; --probe measures recall first).
index rebalance  Split a hot local shard in two. With --url, online on the running gateway (queries
                 keep being answered); with --config, on a stopped node. The split persists.
`;

const options = {
  config: { type: 'string' },
  url: { type: 'string' },
  key: { type: 'string' },
  collection: { type: 'string' },
  input: { type: 'string' },
  tenant: { type: 'string' },
  shard: { type: 'string' },
  probe: { type: 'boolean' },
} as const;

function need(v: string | undefined, flag: string, sub: string): string {
  if (v === undefined || v === '') throw new CliUsageError(`index ${sub} needs ${flag}`);
  return v;
}

/**
 * Opens a stopped node's gateway in this process only to reach its shards (port 0, loopback),
 * runs `fn` on the collection's host, and closes it (shards persist on close).
 */
async function withNode<T>(
  config: string,
  collection: string,
  fn: (host: VectorHost, gw: Gateway) => Promise<T>,
): Promise<T> {
  const gw = await startGateway({
    configPath: config,
    port: 0,
    host: '127.0.0.1',
    watch: false,
    logger: createLogger('warn'),
  });
  try {
    const host = gw.runtime().vectors;
    if (host?.router.describe(collection) === undefined)
      throw new CliUsageError(`the config has no vector collection "${collection}"`);
    return await fn(host, gw);
  } finally {
    await gw.close();
  }
}

function statsTable(shards: readonly VectorShardStats[]): string {
  const f = (v: number | undefined, d: number): string => (v === undefined ? '-' : v.toFixed(d));
  return table([
    ['shard', 'size', 'qps', 'p95 ms', 'searches', 'recall', 'evicted', 'expired'],
    ...shards.map((s) => [
      s.id,
      String(s.size),
      f(s.qps, 1),
      f(s.p95Ms, 3),
      String(s.searches),
      f(s.recall, 3),
      String(s.evictedTotal),
      String(s.expiredTotal),
    ]),
  ]);
}

/** A JSON call to a running gateway with an admin key; its JSON error becomes the message. */
async function call(
  url: string,
  key: string,
  method: 'GET' | 'POST',
  path: string,
): Promise<Record<string, unknown>> {
  const base = new URL(url);
  const pool = new Pool(base.origin, { connections: 1 });
  let res;
  let body: Record<string, unknown>;
  try {
    res = await request(pool, {
      path: `${base.pathname.replace(/\/+$/, '')}${path}`,
      method,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      ...(method === 'POST' ? { body: '{}' } : {}),
    });
    body = (await res.body.json().catch(() => ({}))) as Record<string, unknown>;
  } finally {
    await pool.close();
  }
  if (res.statusCode >= 400) {
    const e = body['error'] as { code?: string; message?: string } | undefined;
    throw new Error(`${res.statusCode} ${e?.code ?? ''}: ${e?.message ?? 'request failed'}`);
  }
  return body;
}

/** Reads and validates every line first; returns the records or the first problems found. */
async function readRecords(
  file: string,
  tenant: string | undefined,
  gw: Gateway,
  io: CliIo,
): Promise<{ records: VectorRecord[]; problems: string[] }> {
  const policy = gw.runtime().personalization?.policy;
  const now = Date.now();
  const records: VectorRecord[] = [];
  const problems: string[] = [];
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  let n = 0;
  for await (const line of lines) {
    n++;
    if (line.trim() === '') continue;
    try {
      let raw: unknown;
      try {
        raw = JSON.parse(line);
      } catch {
        throw new Error('not JSON');
      }
      const r = parseWire(wireRecord, raw);
      const t = r.meta.tenant ?? tenant;
      if (t === undefined) throw new Error('meta.tenant is missing (or pass --tenant)');
      if (tenant !== undefined && t !== tenant) throw new Error(`meta.tenant is not ${tenant}`);
      const rec = toRecord(r, t, now);
      policy?.admit(vectorTag(rec.meta));
      records.push(rec);
    } catch (err) {
      problems.push(`line ${n}: ${err instanceof Error ? err.message : String(err)}`);
      if (problems.length >= 20) break;
    }
    if (n % 100_000 === 0) io.err(`read ${n} lines\n`);
  }
  return { records, problems };
}

async function build(values: Values, io: CliIo): Promise<number> {
  const config = need(values.config, '--config FILE', 'build');
  const collection = need(values.collection, '--collection C', 'build');
  const input = need(values.input, '--input FILE.jsonl', 'build');
  return withNode(config, collection, async (host, gw) => {
    const { records, problems } = await readRecords(input, values.tenant, gw, io);
    if (problems.length > 0) {
      io.err(`refused ${input}; nothing was written:\n  ${problems.join('\n  ')}\n`);
      return 1;
    }
    const bars = new Map<string, (done: number, total: number) => void>();
    const t0 = performance.now();
    const r = await host.bulkLoad(collection, records, (shard, done, total) => {
      let bar = bars.get(shard);
      if (bar === undefined)
        bars.set(shard, (bar = progressBar(`build ${shard}`, { isTTY: io.tty, write: io.err })));
      bar(done, total);
    });
    const secs = (performance.now() - t0) / 1000;
    io.out(
      `${collection}: ${r.inserted} inserted, ${r.updated} updated, ${r.evicted} evicted in ${secs.toFixed(1)} s\n`,
    );
    io.out(`${statsTable(await host.router.stats(collection))}\n`);
    return 0;
  });
}

async function stats(values: Values, io: CliIo): Promise<number> {
  const collection = need(values.collection, '--collection C', 'stats');
  if (values.url !== undefined) {
    const key = need(values.key, '--key KEY (an admin key)', 'stats');
    const body = await call(
      values.url,
      key,
      'GET',
      `/v1/vectors/${encodeURIComponent(collection)}/stats`,
    );
    io.out(`${statsTable(body['shards'] as VectorShardStats[])}\n`);
    return 0;
  }
  const config = need(values.config, '--config FILE or --url URL', 'stats');
  return withNode(config, collection, async (host) => {
    if (values.probe === true) await host.probeRecall();
    io.out(`${statsTable(await host.router.stats(collection))}\n`);
    return 0;
  });
}

async function rebalance(values: Values, io: CliIo): Promise<number> {
  const collection = need(values.collection, '--collection C', 'rebalance');
  const shard = need(values.shard, '--shard ID', 'rebalance');
  let children: { id: string; size: number }[];
  if (values.url !== undefined) {
    const key = need(values.key, '--key KEY (an admin key)', 'rebalance');
    const path = `/admin/vectors/${encodeURIComponent(collection)}/shards/${encodeURIComponent(shard)}/split`;
    children = (await call(values.url, key, 'POST', path))['shards'] as typeof children;
  } else {
    const config = need(values.config, '--config FILE or --url URL', 'rebalance');
    children = await withNode(config, collection, async (host) => {
      const bar = progressBar(`split ${shard}`, { isTTY: io.tty, write: io.err });
      return childSizes(await host.split(collection, shard, { onProgress: bar }));
    });
  }
  io.out(`split ${shard} into ${children.map((c) => `${c.id} (${c.size})`).join(', ')}\n`);
  return 0;
}

type Values = {
  readonly [K in keyof typeof options]?: (typeof options)[K] extends {
    type: 'boolean';
  }
    ? boolean
    : string;
};

/** `switchyard index build|stats|rebalance ...`; returns the exit code. */
export async function indexCommand(
  args: readonly string[],
  io: CliIo = processIo,
): Promise<number> {
  const [sub, ...rest] = args;
  const { values } = parseArgs({ args: rest, options });
  try {
    if (sub === 'build') return await build(values, io);
    if (sub === 'stats') return await stats(values, io);
    if (sub === 'rebalance') return await rebalance(values, io);
  } catch (err) {
    if (err instanceof CliUsageError) throw err;
    // Gateway and shard errors (a locked data directory, an unknown shard): one line, exit 1.
    const msg = isSwitchyardError(err)
      ? `${err.code}: ${err.message}`
      : err instanceof Error
        ? err.message
        : String(err);
    io.err(`switchyard: index ${sub}: ${msg}\n`);
    return 1;
  }
  throw new CliUsageError(`unknown index command "${sub ?? ''}"`);
}

export const runIndex = (args: readonly string[]): Promise<void> =>
  runCli(indexCommand, args, INDEX_USAGE);
