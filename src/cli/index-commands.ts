import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { VectorRecord, VectorShardStats } from '../contracts/vector-index.js';
import { Pool, request } from '../core/undici.js';
import { isSwitchyardError } from '../core/errors.js';
import type { Gateway } from '../main.js';
import { createLogger } from '../observability/logger.js';
import { vectorTag } from '../privacy/policy-engine.js';
import { parseWire, toRecord, wireRecord } from '../retrieval/shard-wire.js';
import { childSizes } from '../retrieval/shard-totals.js';
import type { VectorHost } from '../retrieval/vector-host.js';
import { CliUsageError, CliUserError, table, type CliIo } from './io.js';
import type { CommandKit } from './program.js';
import { createProgress } from './progress.js';

interface IndexOptions {
  readonly config?: string;
  readonly url?: string;
  readonly key?: string;
  readonly collection: string;
  readonly input?: string;
  readonly tenant?: string;
  readonly shard?: string;
  readonly probe?: boolean;
}

/** `--config FILE` or `--url URL --key KEY`: one of the two is needed. */
function target(o: IndexOptions, sub: string): { url: string; key: string } | { config: string } {
  if (o.url !== undefined) {
    if (o.key === undefined)
      throw new CliUsageError(`index ${sub} --url needs --key KEY (an admin key)`);
    return { url: o.url, key: o.key };
  }
  if (o.config === undefined)
    throw new CliUsageError(`index ${sub} needs --config FILE or --url URL`);
  return { config: o.config };
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
  const { startGateway } = await import('../main.js');
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
      throw new CliUserError(`the config has no vector collection "${collection}"`);
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
    throw new CliUserError(`${res.statusCode} ${e?.code ?? ''}: ${e?.message ?? 'request failed'}`);
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

async function build(
  o: IndexOptions & { config: string; input: string },
  io: CliIo,
): Promise<number> {
  const { collection, input } = o;
  return withNode(o.config, collection, async (host, gw) => {
    const { records, problems } = await readRecords(input, o.tenant, gw, io);
    if (problems.length > 0) {
      io.err(`refused ${input}; nothing was written:\n  ${problems.join('\n  ')}\n`);
      return 1;
    }
    const progress = createProgress(io);
    const bars = new Map<string, (done: number, total: number) => void>();
    const t0 = performance.now();
    let r;
    try {
      r = await host.bulkLoad(collection, records, (shard, done, total) => {
        let bar = bars.get(shard);
        if (bar === undefined) bars.set(shard, (bar = progress.bar(`build ${shard}`)));
        bar(done, total);
      });
    } finally {
      progress.stop();
    }
    const secs = (performance.now() - t0) / 1000;
    io.out(
      `${collection}: ${r.inserted} inserted, ${r.updated} updated, ${r.evicted} evicted in ${secs.toFixed(1)} s\n`,
    );
    io.out(`${statsTable(await host.router.stats(collection))}\n`);
    return 0;
  });
}

async function stats(o: IndexOptions, io: CliIo): Promise<number> {
  const { collection } = o;
  const t = target(o, 'stats');
  if ('url' in t) {
    const body = await call(
      t.url,
      t.key,
      'GET',
      `/v1/vectors/${encodeURIComponent(collection)}/stats`,
    );
    io.out(`${statsTable(body['shards'] as VectorShardStats[])}\n`);
    return 0;
  }
  return withNode(t.config, collection, async (host) => {
    if (o.probe === true) await host.probeRecall();
    io.out(`${statsTable(await host.router.stats(collection))}\n`);
    return 0;
  });
}

async function rebalance(o: IndexOptions & { shard: string }, io: CliIo): Promise<number> {
  const { collection, shard } = o;
  const t = target(o, 'rebalance');
  let children: { id: string; size: number }[];
  if ('url' in t) {
    const path = `/admin/vectors/${encodeURIComponent(collection)}/shards/${encodeURIComponent(shard)}/split`;
    children = (await call(t.url, t.key, 'POST', path))['shards'] as typeof children;
  } else {
    children = await withNode(t.config, collection, async (host) => {
      const progress = createProgress(io);
      try {
        return childSizes(
          await host.split(collection, shard, { onProgress: progress.bar(`split ${shard}`) }),
        );
      } finally {
        progress.stop();
      }
    });
  }
  io.out(`split ${shard} into ${children.map((c) => `${c.id} (${c.size})`).join(', ')}\n`);
  return 0;
}

/**
 * Gateway and shard errors (a locked data directory, an unknown shard) are the user's: one line
 * naming the command, exit 1.
 */
function oneLine<O>(sub: string, fn: (o: O, io: CliIo) => Promise<number>, kit: CommandKit) {
  return kit.action(async (o: O) => {
    try {
      return await fn(o, kit.io);
    } catch (err) {
      if (err instanceof CliUsageError || !(err instanceof Error)) throw err;
      if (isSwitchyardError(err))
        throw new CliUserError(`index ${sub}: ${err.code}: ${err.message}`);
      if (err instanceof CliUserError) throw new CliUserError(`index ${sub}: ${err.message}`);
      throw err;
    }
  });
}

/** `index build|stats|rebalance`. */
export function registerIndexCommands(kit: CommandKit): void {
  const index = kit.group('index');
  const collection = ['--collection <name>', 'the vector collection'] as const;
  const remote = (cmd: ReturnType<CommandKit['group']>) =>
    cmd
      .option('-c, --config <file>', 'a stopped node: its gateway config')
      .option('--url <url>', 'a running gateway')
      .option('--key <key>', 'an admin key of the running gateway (with --url)');
  index
    .command('build')
    .description(
      'Bulk-load vectors from JSON lines ({"id","vector","meta"} as in the upsert API) into a ' +
        "stopped node's shards: every line is validated and admitted by the consent policy first " +
        '(nothing is written if one fails), then each HNSW shard builds its graph in a worker, ' +
        'with a progress bar, and is persisted.',
    )
    .requiredOption('-c, --config <file>', "the node's gateway config")
    .requiredOption(...collection)
    .requiredOption('--input <file>', 'the vectors, one JSON object per line')
    .option('--tenant <tenant>', 'the tenant of lines without meta.tenant')
    .action(oneLine('build', build, kit));
  remote(
    index
      .command('stats')
      .description(
        'Size, QPS, p95 and recall per shard: of a running gateway (--url, admin key) or of a ' +
          "stopped node's files (--config; --probe measures recall first).",
      ),
  )
    .requiredOption(...collection)
    .option('--probe', 'measure recall first (--config only)')
    .action(oneLine('stats', stats, kit));
  remote(
    index
      .command('rebalance')
      .description(
        'Split a hot local shard in two. With --url, online on the running gateway (queries keep ' +
          'being answered); with --config, on a stopped node. The split persists.',
      ),
  )
    .requiredOption(...collection)
    .requiredOption('--shard <id>', 'the shard to split')
    .action(oneLine('rebalance', rebalance, kit));
}
