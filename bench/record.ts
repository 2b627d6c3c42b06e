import { execFile, execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import Database from 'better-sqlite3';
import { Pool } from 'undici';
import { compileScript } from './lib/compile.js';
import { formatSummary, summarise } from './profile-summary.js';
import { BENCH_MODEL, writeGatewayConfig } from './lib/gateway-config.js';
import { launchFlags, startPinnedGateway } from './lib/launch.js';
import { installCleanup, spawnPinned, type Pinned } from './lib/processes.js';
import { cpuMs, threadCpuMs } from './lib/proc-stats.js';
import { percentile, runOpenLoop } from './lib/open-loop.js';
import { seededRandom } from '../src/core/random.js';
import type {
  LoadCommand,
  LoadReply,
  ProbeResult,
  Target,
  ThroughputResult,
} from './lib/protocol.js';

/**
 * `npm run bench:record`: what the inference record costs and loses (#15), in one run.
 *
 * 1. Overhead: the same gateway and load with the record off (tracing and inference log off) and
 *    on (tracing with sampler 1.0, exporting OTLP/HTTP protobuf to a sink in this driver, plus the
 *    inference log in SQLite with payloads off). Per case: the gateway's CPU ms per proxied
 *    request under closed-loop load (from /proc, all threads, measured phase only), then a steady
 *    phase at `steadyRate` req/s open loop, well below saturation, with its event loop's p99 delay
 *    (prom-client's `nodejs_eventloop_lag_p99_seconds`, whose histogram is reset at each scrape:
 *    scraped once before the phase and once after). Targets: CPU ≤ 1.25× off, steady p99 delay
 *    ≤ 5 ms (a saturated loop's delay is its backlog, and is reported too). Between them, tracing
 *    alone and the log alone: where the cost of `on` comes from (no targets).
 * 2. Embedded log rate: bench/record-log.ts, the gateway's compiled recorder and SQLite store in a
 *    child on the gateway's core, offered `logRate` records/s; the file is read back (target
 *    ≥ 20,000 records/s, none dropped). Again at the `on` case's record rate: the longest batch
 *    write is the writer's stall per flush (≤ 5 ms).
 * 3. SIGTERM: every request answered 2xx has its record in the file afterwards.
 * 4. kill -9: SIGKILL under steady load; the answered requests without a record, and how long
 *    before the kill the oldest of them was answered, against `inference_log.flush_ms`.
 *
 * Placement as bench:overhead: the gateway (and the log child) alone on core 0 (BENCH_SUT_CORE);
 * load generator, bench upstream, the OTLP sink and this driver on core 1 (BENCH_LOAD_CORE).
 *
 * Flags: --quick (a smoke run of a few seconds per phase; writes no -latest file), --profile (the
 * overhead cases' gateways under --cpu-prof, summarised after the report; inflates their CPU).
 */
const execFileAsync = promisify(execFile);
const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

interface Settings {
  readonly quick: boolean;
  /** Run both overhead cases' gateways under --cpu-prof and print where their CPU goes. */
  readonly profile: boolean;
  readonly durationS: number;
  readonly warmupS: number;
  readonly connections: number;
  readonly sutCore: number;
  readonly loadCore: number;
  /** The embedded log's write rate: records/s offered (half requests, half calls), and for how long. */
  readonly logRate: number;
  readonly logDurationS: number;
  /** Graceful shutdown: requests sent before SIGTERM. */
  readonly shutdownRequests: number;
  /** kill -9: the gateway's `inference_log.flush_ms`. */
  readonly killFlushMs: number;
  /** The steady phase of each case: requests/s offered open loop (well below saturation), and for how long. */
  readonly steadyRate: number;
  readonly steadyS: number;
  /** Extra node flags for the gateways (BENCH_SUT_NODE_ARGS): experiments, such as GC settings. */
  readonly sutNodeArgs: readonly string[];
}

interface CaseDef {
  readonly name: 'off' | 'trace' | 'log' | 'on';
  readonly label: string;
  readonly tracing: boolean;
  /** The inference log (`inference_log.enabled`, SQLite, payloads off: the default). */
  readonly inferenceLog: boolean;
}

const CASES: readonly CaseDef[] = [
  {
    name: 'off',
    label: 'record off (tracing and inference log off)',
    tracing: false,
    inferenceLog: false,
  },
  // The two halves of `on` alone: where its cost comes from (no target of their own).
  {
    name: 'trace',
    label: 'tracing only (sampler 1.0)',
    tracing: true,
    inferenceLog: false,
  },
  {
    name: 'log',
    label: 'inference log only (payloads off)',
    tracing: false,
    inferenceLog: true,
  },
  {
    name: 'on',
    label: 'record on (tracing sampler 1.0 + inference log, payloads off)',
    tracing: true,
    inferenceLog: true,
  },
];

/** The config lines that turn the record on, appended to the bench gateway's config. */
function recordConfig(def: CaseDef, otlpEndpoint: string, logPath: string): string[] {
  const lines: string[] = [];
  if (def.tracing)
    lines.push(
      'tracing:',
      '  enabled: true',
      '  sample_ratio: 1',
      `  otlp: { endpoint: ${otlpEndpoint} }`,
    );
  if (def.inferenceLog) lines.push(...inferenceLogConfig(logPath));
  return lines;
}

/** The inference log on (SQLite at `path`, payloads off: no `payloads` rules). */
function inferenceLogConfig(path: string, flushMs?: number): string[] {
  return [
    'inference_log:',
    '  enabled: true',
    `  path: ${JSON.stringify(path)}`,
    ...(flushMs === undefined ? [] : [`  flush_ms: ${flushMs}`]),
  ];
}

interface CaseResult {
  readonly name: string;
  readonly label: string;
  readonly throughput: ThroughputResult;
  readonly cpuMsPerRequest: number;
  /** Of which the event loop's thread (schedstat, ns resolution). */
  readonly mainThreadCpuMsPerRequest: number;
  /** Of which every other thread: the log writer, libuv's pool, V8's GC and compiler threads. */
  readonly otherThreadsCpuMsPerRequest: number;
  readonly sutCpuPercent: number;
  readonly eventLoopDelayP99Ms: number;
  /**
   * The same gateway at a steady open-loop rate well below saturation: its event loop's p99 delay
   * is then what the record's own work (span export, log flushes) adds, not the backlog of a
   * saturated loop, whose p99 is long with the record off too.
   */
  readonly steady: SteadyResult;
  /** Tracing on: spans the OTLP sink received during the case (proof the record was on). */
  readonly exports: { readonly requests: number; readonly bytes: number };
  /** Inference log on: request records in its SQLite file after the gateway stopped. */
  readonly logRequestRecords: number;
}

interface SteadyResult {
  readonly offeredPerS: number;
  readonly sent: number;
  readonly ok: number;
  readonly latencyP50Ms: number;
  readonly latencyP99Ms: number;
  readonly eventLoopDelayP99Ms: number;
}

function settingsFromArgs(): Settings {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: npm run bench:record -- [--quick] [--profile]\n' +
        'env: BENCH_DURATION_S BENCH_WARMUP_S BENCH_CONNECTIONS BENCH_SUT_CORE BENCH_LOAD_CORE\n' +
        '     BENCH_LOG_RATE BENCH_LOG_DURATION_S BENCH_SHUTDOWN_REQUESTS BENCH_KILL_FLUSH_MS\n' +
        '     BENCH_STEADY_RATE BENCH_STEADY_S BENCH_SUT_NODE_ARGS\n' +
        '     BENCH_INTERLEAVED (two cases, default off,on) BENCH_INTERLEAVED_ONLY=1 (only those)\n',
    );
    process.exit(0);
  }
  const quick = values.quick;
  const num = (name: string, normal: number, fast: number): number => {
    const raw = process.env[name];
    const n = raw === undefined || raw === '' ? (quick ? fast : normal) : Number(raw);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number`);
    return n;
  };
  return {
    quick,
    profile: values.profile,
    durationS: num('BENCH_DURATION_S', 15, 3),
    warmupS: num('BENCH_WARMUP_S', 3, 1),
    connections: num('BENCH_CONNECTIONS', 50, 50),
    sutCore: num('BENCH_SUT_CORE', 0, 0),
    loadCore: num('BENCH_LOAD_CORE', 1, 1),
    logRate: num('BENCH_LOG_RATE', 30_000, 30_000),
    logDurationS: num('BENCH_LOG_DURATION_S', 10, 3),
    shutdownRequests: num('BENCH_SHUTDOWN_REQUESTS', 3_000, 500),
    killFlushMs: num('BENCH_KILL_FLUSH_MS', 1_000, 1_000),
    steadyRate: num('BENCH_STEADY_RATE', 1_000, 1_000),
    steadyS: num('BENCH_STEADY_S', 10, 3),
    sutNodeArgs: (process.env['BENCH_SUT_NODE_ARGS'] ?? '').split(/\s+/).filter((a) => a !== ''),
  };
}

type DistributiveOmitId<T> = T extends unknown ? Omit<T, 'id'> : never;

/** The load generator child (bench/load.ts) and its request/reply channel. */
class LoadClient {
  private next = 1;
  private readonly waiting = new Map<number, (r: LoadReply) => void>();

  constructor(readonly proc: Pinned) {
    proc.child.on('message', (msg: LoadReply) => {
      this.waiting.get(msg.id)?.(msg);
      this.waiting.delete(msg.id);
    });
  }

  private send<T>(cmd: DistributiveOmitId<Extract<LoadCommand, { type: 'probe' | 'throughput' }>>) {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, (r) =>
        r.ok ? resolve(r.result as T) : reject(new Error(`load generator: ${r.error}`)),
      );
      this.proc.child.send({ ...cmd, id });
    });
  }

  probe(target: Target): Promise<ProbeResult> {
    return this.send({ type: 'probe', target });
  }

  throughput(target: Target, connections: number, durationS: number): Promise<ThroughputResult> {
    return this.send({ type: 'throughput', targets: [target], connections, durationS });
  }
}

/** An OTLP/HTTP endpoint that accepts every export and counts it (no decoding: it is a sink). */
async function startOtlpSink(): Promise<{
  url: string;
  counts: { requests: number; bytes: number };
  close(): Promise<void>;
}> {
  const counts = { requests: 0, bytes: 0 };
  const server = createServer((req, res) => {
    req.on('data', (c: Buffer) => (counts.bytes += c.length));
    req.on('end', () => {
      counts.requests++;
      res.writeHead(200, { 'content-type': 'application/x-protobuf' });
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/v1/traces`,
    counts,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/**
 * prom-client's event-loop histogram samples with a timer of this period (its default
 * `eventLoopMonitoringPrecision`, which the gateway keeps), and Node's histogram records each whole
 * interval between two firings: an idle loop reads 10 ms. The delay is what exceeds the period.
 */
const PROM_LOOP_RESOLUTION_MS = 10;

/** Scrapes the gateway's /metrics; returns the event loop's p99 delay (ms) since the last scrape. */
async function eventLoopP99Ms(base: string): Promise<number> {
  const res = await fetch(`${base}/metrics`);
  const text = await res.text();
  const m = /^nodejs_eventloop_lag_p99_seconds (\S+)$/m.exec(text);
  if (m === null) throw new Error('no nodejs_eventloop_lag_p99_seconds in /metrics');
  return Math.max(0, Number(m[1]) * 1000 - PROM_LOOP_RESOLUTION_MS);
}

/** A gateway with `def`'s record config, on the gateway core, and the chat request to load it with. */
async function startCaseGateway(
  s: Settings,
  def: CaseDef,
  upstream: Pinned,
  tmp: string,
  sink: Awaited<ReturnType<typeof startOtlpSink>>,
  key: { secret: string; apiKey: string },
  tag = '',
): Promise<{ sut: Pinned; target: Target; logPath: string }> {
  const name = `record-${def.name}${tag}`;
  const config = writeGatewayConfig(tmp, upstream.url, { ...key, name: `${name}.yaml` });
  const logPath = join(tmp, `${name}.db`);
  appendFileSync(config.path, `${recordConfig(def, sink.url, logPath).join('\n')}\n`);
  const sut = await startPinnedGateway(ROOT, {
    name,
    core: s.sutCore,
    config: config.path,
    extraFlags: [
      ...s.sutNodeArgs,
      ...(s.profile && tag === ''
        ? [
            '--cpu-prof',
            `--cpu-prof-dir=${tmp}`,
            `--cpu-prof-name=${name}.cpuprofile`,
            '--cpu-prof-interval=500',
          ]
        : []),
    ],
  });
  const target: Target = {
    name: `${def.name}${tag}`,
    url: `${sut.url}/v1/chat/completions`,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key.apiKey}` },
    body: JSON.stringify({
      model: BENCH_MODEL,
      messages: [{ role: 'user', content: 'Say hello in one short sentence.' }],
      max_tokens: 32,
    }),
  };
  return { sut, target, logPath };
}

async function runCase(
  s: Settings,
  def: CaseDef,
  load: LoadClient,
  upstream: Pinned,
  tmp: string,
  sink: Awaited<ReturnType<typeof startOtlpSink>>,
  key: { secret: string; apiKey: string },
): Promise<CaseResult> {
  const { sut, target, logPath } = await startCaseGateway(s, def, upstream, tmp, sink, key);
  try {
    const probe = await load.probe(target);
    if (probe.status !== 200) throw new Error(`${def.name}: probe answered ${probe.status}`);
    process.stderr.write(`[bench] ${def.name}: warmup ${s.warmupS} s\n`);
    if (s.warmupS > 0) await load.throughput(target, s.connections, s.warmupS);
    await eventLoopP99Ms(sut.url); // resets the delay histogram
    const sent = { ...sink.counts };
    const before = cpuMs(sut.pid);
    const threadsBefore = threadCpuMs(sut.pid);
    const t0 = performance.now();
    process.stderr.write(
      `[bench] ${def.name}: load ${s.durationS} s, ${s.connections} connections\n`,
    );
    const tp = await load.throughput(target, s.connections, s.durationS);
    const wallMs = performance.now() - t0;
    const used = cpuMs(sut.pid) - before;
    const threadsAfter = threadCpuMs(sut.pid);
    const p99 = await eventLoopP99Ms(sut.url);
    const exports = {
      requests: sink.counts.requests - sent.requests,
      bytes: sink.counts.bytes - sent.bytes,
    };
    const steady = await runSteady(s, def.name, sut.url, target);
    await sut.stop(); // writes the log's last batch: its rows are counted below
    return {
      name: def.name,
      label: def.label,
      throughput: tp,
      cpuMsPerRequest: used / tp.ok,
      mainThreadCpuMsPerRequest: (threadsAfter.main - threadsBefore.main) / tp.ok,
      otherThreadsCpuMsPerRequest: (threadsAfter.others - threadsBefore.others) / tp.ok,
      sutCpuPercent: (100 * used) / wallMs,
      eventLoopDelayP99Ms: p99,
      steady,
      exports,
      logRequestRecords: def.inferenceLog ? loggedRequests(logPath).size : 0,
    };
  } finally {
    await sut.stop();
  }
}

/** The #15 ratio read from two gateways up at once, loaded in alternating blocks. */
interface InterleavedResult {
  readonly pair: readonly [string, string];
  readonly blocks: number;
  readonly blockS: number;
  /** CPU ms per 2xx answer over all blocks of each side (all threads, from /proc). */
  readonly cpuMsPerRequest: readonly [number, number];
  /** The second side's CPU per request over the first's, each block pair on its own. */
  readonly blockRatios: readonly number[];
  readonly ratio: number;
  /** Per 1,000 requests of each side: V8 collections by kind, and ms spent in them (prom-client). */
  readonly gcPer1000: readonly [GcStats, GcStats];
  /** CPU ms per request of each side: the event loop's thread, and all others (GC helpers, the log writer). */
  readonly threadCpuMsPerRequest: readonly [ThreadSplit, ThreadSplit];
}

interface ThreadSplit {
  readonly main: number;
  readonly others: number;
}

type GcStats = Record<string, { count: number; ms: number }>;

/** The gateway's GC counts and time by kind so far (`nodejs_gc_duration_seconds`). */
async function gcStats(base: string): Promise<GcStats> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const out: GcStats = {};
  for (const m of text.matchAll(
    /^nodejs_gc_duration_seconds_(sum|count)\{kind="(\w+)"\} (\S+)$/gm,
  )) {
    const entry = (out[m[2]!] ??= { count: 0, ms: 0 });
    if (m[1] === 'count') entry.count = Number(m[3]);
    else entry.ms = Number(m[3]) * 1000;
  }
  return out;
}

/**
 * The CPU ratio of two cases (`off` and `on` unless BENCH_INTERLEAVED names two others, e.g.
 * `off,trace`), both gateways up on the gateway core and loaded in turn, `blocks` blocks each
 * (the order flips every pair): the cases above run a minute or more apart, and this VM's CPU per
 * request drifts that much between minutes (bench:overhead reads #14 the same way).
 */
async function runInterleaved(
  s: Settings,
  load: LoadClient,
  upstream: Pinned,
  tmp: string,
  sink: Awaited<ReturnType<typeof startOtlpSink>>,
  key: { secret: string; apiKey: string },
): Promise<InterleavedResult> {
  const names = (process.env['BENCH_INTERLEAVED'] ?? 'off,on').split(',');
  const defs = names.map((n) => CASES.find((c) => c.name === n));
  if (defs.length !== 2 || defs.some((d) => d === undefined))
    throw new Error(`BENCH_INTERLEAVED must name two of ${CASES.map((c) => c.name).join(', ')}`);
  const blocks = s.quick ? 2 : 6;
  const blockS = s.quick ? 1 : 3;
  const sides: {
    sut: Pinned;
    target: Target;
    cpuMs: number[];
    ok: number[];
    gc: GcStats;
    threads: { main: number; others: number };
  }[] = [];
  try {
    for (const def of defs as CaseDef[]) {
      const g = await startCaseGateway(s, def, upstream, tmp, sink, key, '-interleaved');
      sides.push({
        sut: g.sut,
        target: g.target,
        cpuMs: [],
        ok: [],
        gc: {},
        threads: { main: 0, others: 0 },
      });
      const probe = await load.probe(g.target);
      if (probe.status !== 200) throw new Error(`${def.name}: probe answered ${probe.status}`);
      await load.throughput(g.target, s.connections, Math.max(1, s.warmupS));
    }
    for (let b = 0; b < blocks; b++) {
      for (const side of b % 2 === 0 ? sides : [...sides].reverse()) {
        const gc0 = await gcStats(side.sut.url);
        const before = cpuMs(side.sut.pid);
        const threads0 = threadCpuMs(side.sut.pid);
        const tp = await load.throughput(side.target, s.connections, blockS);
        side.cpuMs.push(cpuMs(side.sut.pid) - before);
        const threads1 = threadCpuMs(side.sut.pid);
        side.threads.main += threads1.main - threads0.main;
        side.threads.others += threads1.others - threads0.others;
        side.ok.push(tp.ok);
        for (const [kind, v] of Object.entries(await gcStats(side.sut.url))) {
          const e = (side.gc[kind] ??= { count: 0, ms: 0 });
          e.count += v.count - (gc0[kind]?.count ?? 0);
          e.ms += v.ms - (gc0[kind]?.ms ?? 0);
        }
      }
      process.stderr.write(`[bench] interleaved ${names.join('/')}: block ${b + 1}/${blocks}\n`);
    }
  } finally {
    for (const side of sides) await side.sut.stop();
  }
  const [a, b] = sides as [(typeof sides)[0], (typeof sides)[0]];
  const sum = (xs: number[]): number => xs.reduce((x, y) => x + y, 0);
  const perReq = (side: typeof a): number => sum(side.cpuMs) / sum(side.ok);
  const perThread = (side: typeof a) => ({
    main: side.threads.main / sum(side.ok),
    others: side.threads.others / sum(side.ok),
  });
  const per1000 = (side: typeof a): GcStats =>
    Object.fromEntries(
      Object.entries(side.gc).map(([kind, v]) => [
        kind,
        {
          count: Math.round((10_000 * v.count) / sum(side.ok)) / 10,
          ms: Math.round((10_000 * v.ms) / sum(side.ok)) / 10,
        },
      ]),
    );
  return {
    pair: [names[0]!, names[1]!],
    blocks,
    blockS,
    cpuMsPerRequest: [perReq(a), perReq(b)],
    blockRatios: a.cpuMs.map((_, i) => b.cpuMs[i]! / b.ok[i]! / (a.cpuMs[i]! / a.ok[i]!)),
    ratio: perReq(b) / perReq(a),
    gcPer1000: [per1000(a), per1000(b)],
    threadCpuMsPerRequest: [perThread(a), perThread(b)],
  };
}

/**
 * The steady phase: Poisson arrivals at `s.steadyRate` requests/s from this driver (open loop, so
 * the rate does not bend to the gateway), the loop's p99 delay scraped before and after.
 */
async function runSteady(
  s: Settings,
  name: string,
  base: string,
  target: Target,
): Promise<SteadyResult> {
  process.stderr.write(`[bench] ${name}: steady ${s.steadyRate} req/s for ${s.steadyS} s\n`);
  await eventLoopP99Ms(base);
  const samples = await runOpenLoop({
    origin: base,
    path: new URL(target.url).pathname,
    durationMs: s.steadyS * 1000,
    classes: [{ name, ratePerS: s.steadyRate, headers: target.headers, body: target.body }],
    connections: 64,
    timeoutMs: 10_000,
    random: seededRandom(7),
  });
  const delayP99 = await eventLoopP99Ms(base);
  const ok = samples.filter((x) => x.status >= 200 && x.status < 300);
  const latencies = ok.map((x) => x.latencyMs).sort((a, b) => a - b);
  return {
    offeredPerS: s.steadyRate,
    sent: samples.length,
    ok: ok.length,
    latencyP50Ms: percentile(latencies, 50),
    latencyP99Ms: percentile(latencies, 99),
    eventLoopDelayP99Ms: delayP99,
  };
}

/** Request ids in an inference log file, with each record's outcome (`ok` for a 2xx). */
function loggedRequests(path: string): Map<string, string> {
  const db = new Database(path, { readonly: true });
  try {
    const rows = db.prepare('SELECT id, outcome FROM sy_inference_requests').all() as {
      id: string;
      outcome: string;
    }[];
    return new Map(rows.map((r) => [r.id, r.outcome]));
  } finally {
    db.close();
  }
}

/** What bench/record-log.ts measured (the embedded log's write rate). */
interface LogThroughputResult {
  readonly offeredPerS: number;
  readonly offered: number;
  readonly written: number;
  readonly dropped: number;
  readonly stored: { readonly requests: number; readonly calls: number };
  readonly storedTotal: number;
  readonly elapsedS: number;
  readonly sustainedPerS: number;
  readonly batches: number;
  readonly writeMsTotal: number;
  readonly writeMsMax: number;
  readonly capacityPerS: number;
  readonly eventLoopDelayP99Ms: number;
  readonly eventLoopDelayMaxMs: number;
  readonly flushMs: number;
  readonly bufferSize: number;
}

/** The embedded log's write rate, in a child on the gateway's core (see bench/record-log.ts). */
async function runLogThroughput(
  s: Settings,
  tmp: string,
  name: string,
  rate: number,
  durationS: number,
): Promise<LogThroughputResult> {
  const script = compileScript(ROOT, join(ROOT, 'bench/record-log.ts'));
  const args = [
    '-c',
    String(s.sutCore),
    process.execPath,
    script,
    join(ROOT, 'dist'),
    join(tmp, `${name}.db`),
    String(rate),
    String(durationS),
    '1000', // inference_log.flush_ms default
    '50000', // inference_log.buffer_size default
  ];
  process.stderr.write(
    `[bench] embedded log (${name}): ${rate} records/s offered for ${durationS} s\n`,
  );
  const { stdout } = await execFileAsync('taskset', args, { cwd: ROOT });
  return JSON.parse(stdout.trim().split('\n').pop()!) as LogThroughputResult;
}

interface Answered {
  /** 2xx answers: request id → when the answer arrived (ms, driver's performance.now()). */
  readonly ok: Map<string, number>;
  sent: number;
  failed: number;
}

/**
 * Closed-loop traffic with our own request ids (`x-request-id`), so each answer can be matched with
 * its record: `connections` loops, each sending the next request as soon as its last one is
 * answered, until `stop()` or `limit` requests were sent.
 */
function drive(
  origin: string,
  apiKey: string,
  prefix: string,
  connections: number,
  limit = Infinity,
): { answered: Answered; stop(): void; sentAll: Promise<void>; done: Promise<void> } {
  const pool = new Pool(origin, { connections, pipelining: 1 });
  const answered: Answered = { ok: new Map(), sent: 0, failed: 0 };
  let stopped = false;
  let sentAll!: () => void;
  const sentAllP = new Promise<void>((r) => (sentAll = r));
  const body = JSON.stringify({
    model: BENCH_MODEL,
    messages: [{ role: 'user', content: 'Say hello in one short sentence.' }],
    max_tokens: 32,
  });
  const loop = async (): Promise<void> => {
    while (!stopped && answered.sent < limit) {
      const id = `${prefix}-${answered.sent++}`;
      if (answered.sent >= limit) sentAll();
      try {
        const res = await pool.request({
          path: '/v1/chat/completions',
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            authorization: `Bearer ${apiKey}`,
            'x-request-id': id,
          },
          body,
        });
        await res.body.dump();
        if (res.statusCode >= 200 && res.statusCode < 300) answered.ok.set(id, performance.now());
        else answered.failed++;
      } catch {
        answered.failed++;
        if (stopped) return;
        await new Promise((r) => setTimeout(r, 5)); // the gateway is going away
      }
    }
  };
  const done = Promise.all(Array.from({ length: connections }, loop)).then(async () => {
    await pool.destroy();
  });
  return {
    answered,
    stop: () => {
      stopped = true;
    },
    sentAll: sentAllP,
    done,
  };
}

/** A gateway with the inference log on (tracing off), on the gateway's core. */
async function startLoggingGateway(
  s: Settings,
  name: string,
  tmp: string,
  upstream: Pinned,
  key: { secret: string; apiKey: string },
  flushMs: number,
): Promise<{ sut: Pinned; logPath: string }> {
  const config = writeGatewayConfig(tmp, upstream.url, { ...key, name: `${name}.yaml` });
  const logPath = join(tmp, `${name}.db`);
  appendFileSync(config.path, `${inferenceLogConfig(logPath, flushMs).join('\n')}\n`);
  const sut = await startPinnedGateway(ROOT, { name, core: s.sutCore, config: config.path });
  return { sut, logPath };
}

function exited(p: Pinned): Promise<{ code: number | null; signal: string | null }> {
  if (p.child.exitCode !== null || p.child.signalCode !== null)
    return Promise.resolve({ code: p.child.exitCode, signal: p.child.signalCode });
  return new Promise((r) => p.child.once('exit', (code, signal) => r({ code, signal })));
}

interface ShutdownResult {
  readonly flushMs: number;
  readonly sent: number;
  readonly answered2xx: number;
  readonly failed: number;
  readonly exit: { readonly code: number | null; readonly signal: string | null };
  readonly exitMs: number;
  /** Requests answered 2xx with an `ok` record in the file. */
  readonly recorded: number;
  /** Answered 2xx, no record: what shutdown lost. */
  readonly lost: number;
  /** Records of ours with no 2xx answer seen by the client (answered as the connection closed). */
  readonly recordedUnanswered: number;
}

/**
 * Graceful shutdown: `n` requests at `connections` concurrency with a flush interval longer than
 * the run (so every record is still in the buffer), SIGTERM once the last was sent (some still in
 * flight), then the file is read: every 2xx answer must have its record.
 */
async function runShutdown(
  s: Settings,
  tmp: string,
  upstream: Pinned,
  key: { secret: string; apiKey: string },
): Promise<ShutdownResult> {
  const flushMs = 600_000;
  const { sut, logPath } = await startLoggingGateway(
    s,
    'record-sigterm',
    tmp,
    upstream,
    key,
    flushMs,
  );
  const traffic = drive(sut.url, key.apiKey, 'term', 16, s.shutdownRequests);
  process.stderr.write(`[bench] graceful shutdown: ${s.shutdownRequests} requests, then SIGTERM\n`);
  await traffic.sentAll;
  const t0 = performance.now();
  process.kill(sut.pid, 'SIGTERM');
  const exit = await Promise.race([
    exited(sut),
    new Promise<never>((_, reject) =>
      setTimeout(
        () => reject(new Error('the gateway did not exit within 30 s of SIGTERM')),
        30_000,
      ),
    ),
  ]);
  const exitMs = performance.now() - t0;
  traffic.stop();
  await traffic.done;
  const logged = loggedRequests(logPath);
  const ours = [...logged].filter(([id, outcome]) => id.startsWith('term-') && outcome === 'ok');
  const ok = traffic.answered.ok;
  const recorded = [...ok.keys()].filter((id) => logged.get(id) === 'ok').length;
  return {
    flushMs,
    sent: traffic.answered.sent,
    answered2xx: ok.size,
    failed: traffic.answered.failed,
    exit,
    exitMs,
    recorded,
    lost: ok.size - recorded,
    recordedUnanswered: ours.filter(([id]) => !ok.has(id)).length,
  };
}

interface KillResult {
  readonly flushMs: number;
  /** When SIGKILL was sent, ms after the load started. */
  readonly killAtMs: number;
  readonly answered2xx: number;
  readonly recorded: number;
  readonly lost: number;
  /**
   * Kill time minus the answer time of the oldest lost request: how far back the loss reaches
   * (0 when nothing was lost). At most one flush interval (plus timer slack) by design.
   */
  readonly lostWindowMs: number;
  /** Kill time minus the answer time of the newest request whose record survived. */
  readonly newestRecordedAgeMs: number;
  readonly reqPerS: number;
}

/**
 * `kill -9`: a gateway writing every `flushMs`, steady closed-loop load, SIGKILL at a random
 * moment; the file is then read (SQLite recovers its WAL) and compared with the 2xx answers.
 */
async function runKill(
  s: Settings,
  tmp: string,
  upstream: Pinned,
  key: { secret: string; apiKey: string },
): Promise<KillResult> {
  const flushMs = s.killFlushMs;
  const { sut, logPath } = await startLoggingGateway(
    s,
    'record-sigkill',
    tmp,
    upstream,
    key,
    flushMs,
  );
  const traffic = drive(sut.url, key.apiKey, 'kill', 8);
  const t0 = performance.now();
  const killAfter = flushMs * (2.5 + 2 * Math.random());
  process.stderr.write(
    `[bench] kill -9: flush_ms ${flushMs}, steady load, SIGKILL after ${killAfter.toFixed(0)} ms\n`,
  );
  await new Promise((r) => setTimeout(r, killAfter));
  process.kill(sut.pid, 'SIGKILL');
  const killAt = performance.now();
  await exited(sut);
  traffic.stop();
  await traffic.done;
  const logged = loggedRequests(logPath);
  const ok = [...traffic.answered.ok].filter(([, at]) => at <= killAt);
  const lost = ok.filter(([id]) => logged.get(id) !== 'ok');
  const kept = ok.filter(([id]) => logged.get(id) === 'ok');
  return {
    flushMs,
    killAtMs: killAt - t0,
    answered2xx: ok.length,
    recorded: kept.length,
    lost: lost.length,
    lostWindowMs: lost.length === 0 ? 0 : killAt - Math.min(...lost.map(([, at]) => at)),
    newestRecordedAgeMs:
      kept.length === 0 ? Number.NaN : killAt - Math.max(...kept.map(([, at]) => at)),
    reqPerS: ok.length / ((killAt - t0) / 1000),
  };
}

function onCase(results: readonly CaseResult[]): CaseResult {
  const r = results.find((c) => c.name === 'on');
  if (r === undefined) throw new Error('no `on` case');
  return r;
}

function gitRevision(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).toString().trim();
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const s = settingsFromArgs();
  if (!existsSync(join(ROOT, 'dist/cli/index.js')))
    throw new Error('dist/ is missing: run npm run build');
  const tmp = mkdtempSync(join(tmpdir(), 'switchyard-bench-record-'));
  installCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  execFileSync('taskset', ['-a', '-p', '-c', String(s.loadCore), String(process.pid)], {
    stdio: 'ignore',
  });
  const started = new Date();
  const scripts = {
    upstream: compileScript(ROOT, join(ROOT, 'bench/upstream.ts')),
    load: compileScript(ROOT, join(ROOT, 'bench/load.ts')),
  };
  const upstream = await spawnPinned({
    name: 'upstream',
    core: s.loadCore,
    nodeArgs: [scripts.upstream],
    ready: /READY (\S+)/,
    stdout: 'pipe',
    cwd: ROOT,
  });
  const loadProc = await spawnPinned({
    name: 'load',
    core: s.loadCore,
    nodeArgs: [scripts.load],
    ready: /READY (load)/,
    stdout: 'pipe',
    ipc: true,
    cwd: ROOT,
  });
  const sink = await startOtlpSink();
  const load = new LoadClient(loadProc);
  const key = writeGatewayConfig(tmp, upstream.url, { name: 'key.yaml' });
  const results: CaseResult[] = [];
  const k = { secret: key.secret, apiKey: key.apiKey };
  let log: LogThroughputResult;
  let logAtGatewayRate: LogThroughputResult;
  let shutdown: ShutdownResult;
  let kill: KillResult;
  let interleaved: InterleavedResult;
  try {
    if (process.env['BENCH_INTERLEAVED_ONLY'] === '1') {
      // An experiment: only the interleaved pair, printed, nothing written.
      process.stdout.write(
        `${JSON.stringify(await runInterleaved(s, load, upstream, tmp, sink, k), null, 2)}\n`,
      );
      return;
    }
    for (const def of CASES) results.push(await runCase(s, def, load, upstream, tmp, sink, k));
    interleaved = await runInterleaved(s, load, upstream, tmp, sink, k);
    log = await runLogThroughput(s, tmp, 'log-rate', s.logRate, s.logDurationS);
    // The writer alone at the rate the gateway produced records in the `on` case (a request and
    // a model call per request): its longest batch is how long it holds the loop per flush.
    const atGatewayRate = Math.max(2, Math.round(2 * onCase(results).throughput.reqPerS));
    logAtGatewayRate = await runLogThroughput(
      s,
      tmp,
      'log-at-gateway-rate',
      atGatewayRate,
      Math.max(3, Math.round(s.logDurationS / 2)),
    );
    shutdown = await runShutdown(s, tmp, upstream, k);
    kill = await runKill(s, tmp, upstream, k);
  } finally {
    await sink.close();
    await upstream.stop();
    await loadProc.stop();
  }

  const off = results.find((r) => r.name === 'off')!;
  const on = results.find((r) => r.name === 'on')!;
  /** The cases above, a minute or more apart: shown, but the target reads the interleaved blocks. */
  const cpuRatio = on.cpuMsPerRequest / off.cpuMsPerRequest;
  const pairName = interleaved.pair.join('/');
  const f = (n: number, d = 2): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
  const int = (n: number): string => Math.round(n).toLocaleString('en-US');
  const killSlackMs = 100;
  const targets: { name: string; limit: string; value: string; pass: boolean }[] = [
    {
      name: `CPU per proxied request, ${pairName}, interleaved blocks (the cases above, in sequence: ${f(cpuRatio)}×)`,
      limit: '≤ 1.25×',
      value: `${f(interleaved.ratio)}×`,
      pass: pairName === 'off/on' && interleaved.ratio <= 1.25,
    },
    {
      name: `event-loop delay p99, record on, steady ${int(on.steady.offeredPerS)} req/s (record off: ${f(off.steady.eventLoopDelayP99Ms)} ms)`,
      limit: '≤ 5 ms',
      value: `${f(on.steady.eventLoopDelayP99Ms)} ms`,
      pass: on.steady.ok > 0 && on.steady.eventLoopDelayP99Ms <= 5,
    },
    {
      name: `the log writer alone at the on case's rate (${int(logAtGatewayRate.offeredPerS)} records/s): longest batch on the event loop`,
      limit: '≤ 5 ms',
      value: `${f(logAtGatewayRate.writeMsMax)} ms (flush_ms ${logAtGatewayRate.flushMs})`,
      pass: logAtGatewayRate.writeMsMax <= 5,
    },
    {
      name: 'record on: spans exported and every answered request logged',
      limit: '> 0 exports; log rows ≥ 2xx answers',
      value: `${on.exports.requests} exports; ${int(on.logRequestRecords)} rows`,
      pass: on.exports.requests > 0 && on.logRequestRecords >= on.throughput.ok,
    },
    {
      name: `embedded log sustains (offered ${int(log.offeredPerS)} records/s, read back)`,
      limit: '≥ 20,000 records/s, 0 dropped',
      value: `${int(log.sustainedPerS)} records/s, ${int(log.storedTotal)} of ${int(log.offered)} stored, ${int(log.dropped)} dropped`,
      pass:
        log.offeredPerS >= 20_000 &&
        log.dropped === 0 &&
        log.storedTotal === log.offered &&
        log.sustainedPerS >= 20_000,
    },
    {
      name: 'graceful shutdown (SIGTERM) loses no record',
      limit: '0 lost',
      value: `${int(shutdown.lost)} lost of ${int(shutdown.answered2xx)} answered`,
      pass: shutdown.lost === 0 && shutdown.answered2xx > 0 && shutdown.exit.code === 0,
    },
    {
      name: `kill -9 loses at most the last flush interval (flush_ms ${kill.flushMs})`,
      limit: `lost window ≤ ${kill.flushMs} ms + ${killSlackMs} ms timer slack`,
      value: `${int(kill.lost)} lost of ${int(kill.answered2xx)}, window ${f(kill.lostWindowMs, 0)} ms`,
      pass: kill.answered2xx > 0 && kill.lostWindowMs <= kill.flushMs + killSlackMs,
    },
  ];
  const cpu = cpus();
  const row = (r: CaseResult): string =>
    `| ${r.label} | ${r.throughput.reqPerS.toFixed(0)} | ${r.cpuMsPerRequest.toFixed(3)} (${r.mainThreadCpuMsPerRequest.toFixed(3)} + ${r.otherThreadsCpuMsPerRequest.toFixed(3)}) | ${r.sutCpuPercent.toFixed(0)} | ${r.throughput.latency.p99.toFixed(2)} | ${r.eventLoopDelayP99Ms.toFixed(2)} | ${int(r.steady.ok)} / ${int(r.steady.sent)}, ${f(r.steady.latencyP99Ms)}, ${f(r.steady.eventLoopDelayP99Ms)} | ${r.exports.requests} (${(r.exports.bytes / 1024).toFixed(0)} KiB) | ${int(r.logRequestRecords)} |`;
  const text = [
    `## Switchyard record overhead — ${started.toISOString()}`,
    '',
    `Node ${process.version}, ${cpu[0]?.model ?? 'unknown CPU'} (${cpu.length} cores), Switchyard ${gitRevision()}. ` +
      `autocannon, ${s.connections} connections, ${s.durationS} s after ${s.warmupS} s warmup; gateway on core ${s.sutCore}, ` +
      `load, upstream, OTLP sink and driver on core ${s.loadCore}; bin flags ${launchFlags(ROOT).join(' ')}.`,
    ...(s.quick ? ['', '**Quick run (--quick): numbers are a smoke test only.**'] : []),
    ...(s.sutNodeArgs.length > 0
      ? ['', `**Extra node flags for the gateways: ${s.sutNodeArgs.join(' ')}**`]
      : []),
    '',
    '| case | req/s | CPU ms/req (event loop + other threads) | gateway CPU % | p99 ms | event-loop p99 ms | steady: ok / sent, p99 ms, event-loop p99 ms | OTLP exports | log rows |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...results.map(row),
    '',
    `Interleaved: the ${interleaved.pair[0]} and ${interleaved.pair[1]} gateways both up, loaded in turn in ${interleaved.blocks} blocks of ${interleaved.blockS} s each: ` +
      `${f(interleaved.cpuMsPerRequest[0], 3)} and ${f(interleaved.cpuMsPerRequest[1], 3)} CPU ms per request (**${f(interleaved.ratio)}×**; ` +
      `block by block ${interleaved.blockRatios.map((r) => f(r)).join(', ')}); event loop / other threads ` +
      `${interleaved.threadCpuMsPerRequest.map((t) => `${f(t.main, 3)} / ${f(t.others, 3)}`).join(' and ')} ms; ` +
      `scavenges per 1,000 requests ${interleaved.gcPer1000.map((g) => `${g['minor']?.count ?? 0} (${g['minor']?.ms ?? 0} ms)`).join(' and ')}.`,
    '',
    `Embedded log: ${int(log.offered)} records offered at ${int(log.offeredPerS)}/s for ${s.logDurationS} s, ` +
      `${int(log.storedTotal)} read back (${int(log.dropped)} dropped), ${int(log.sustainedPerS)} records/s including the final flush; ` +
      `${log.batches} batches, SQLite busy ${f(log.writeMsTotal, 0)} ms (${int(log.capacityPerS)} records/s while writing), ` +
      `longest batch ${f(log.writeMsMax, 0)} ms on the event loop.`,
    `The writer alone at the \`on\` case's rate: ${int(logAtGatewayRate.offered)} records at ${int(logAtGatewayRate.offeredPerS)}/s, ` +
      `${int(logAtGatewayRate.storedTotal)} read back; ${logAtGatewayRate.batches} batches, longest ${f(logAtGatewayRate.writeMsMax)} ms, ` +
      `its loop's p99 delay ${f(logAtGatewayRate.eventLoopDelayP99Ms)} ms.`,
    `Graceful shutdown: ${int(shutdown.sent)} sent, ${int(shutdown.answered2xx)} answered 2xx, SIGTERM with requests in flight, ` +
      `exit ${String(shutdown.exit.code ?? shutdown.exit.signal)} after ${f(shutdown.exitMs, 0)} ms; ${int(shutdown.recorded)} recorded, ${int(shutdown.lost)} lost.`,
    `kill -9 (flush_ms ${kill.flushMs}): SIGKILL at ${f(kill.killAtMs, 0)} ms into ${int(kill.reqPerS)} req/s; ` +
      `${int(kill.answered2xx)} answered 2xx, ${int(kill.recorded)} recorded, ${int(kill.lost)} lost, answered within the last ${f(kill.lostWindowMs, 0)} ms ` +
      `(newest surviving record answered ${f(kill.newestRecordedAgeMs, 0)} ms before the kill).`,
    '',
    ...targets.map(
      (t) => `- ${t.pass ? 'PASS' : 'FAIL'} ${t.name}: ${t.value} (target ${t.limit})`,
    ),
    '',
  ].join('\n');
  process.stdout.write(text);
  if (s.profile)
    for (const def of CASES) {
      const file = join(tmp, `record-${def.name}.cpuprofile`);
      if (existsSync(file))
        process.stdout.write(
          `\n### CPU profile, ${def.label}\n\n\`\`\`\n${formatSummary(summarise(file, 25))}\n\`\`\`\n`,
        );
    }
  const json = {
    benchmark: 'record',
    timestamp: started.toISOString(),
    node: process.version,
    cpu: { model: cpu[0]?.model ?? 'unknown', cores: cpu.length },
    revision: gitRevision(),
    settings: s,
    cases: results,
    cpuRatio,
    interleaved,
    log,
    logAtGatewayRate,
    shutdown,
    kill,
    targets,
  };
  // The README quotes -latest: only a full run writes it (and its timestamped copy).
  if (!s.quick) {
    const dir = join(ROOT, 'bench/results');
    mkdirSync(dir, { recursive: true });
    const stamp = started.toISOString().replace(/[:.]/g, '-');
    const body = `${JSON.stringify(json, null, 2)}\n`;
    writeFileSync(join(dir, `record-${stamp}.json`), body);
    writeFileSync(join(dir, 'record-latest.json'), body);
    process.stderr.write(`[bench] wrote ${relative(ROOT, join(dir, 'record-latest.json'))}\n`);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(
    `\n[bench] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
