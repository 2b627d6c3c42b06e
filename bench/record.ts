import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { compileScript } from './lib/compile.js';
import { BENCH_MODEL, writeGatewayConfig } from './lib/gateway-config.js';
import { launchFlags, startPinnedGateway } from './lib/launch.js';
import { installCleanup, spawnPinned, type Pinned } from './lib/processes.js';
import { cpuMs } from './lib/proc-stats.js';
import type {
  LoadCommand,
  LoadReply,
  ProbeResult,
  Target,
  ThroughputResult,
} from './lib/protocol.js';

/**
 * `npm run bench:record`: what the inference record costs (#15), in one run. The same gateway
 * and load, with the record off and on:
 *
 * - off: tracing off (and, once built, the inference log off);
 * - on: tracing on with sampler 1.0, exporting OTLP/HTTP protobuf to a local sink in this
 *   driver (and, once built, the inference log on with payloads off: see RECORD_ON below).
 *
 * Measured per case: the gateway's CPU ms per proxied request (from /proc, all threads, during
 * the measured phase only) and its event loop's p99 delay over the same phase (prom-client's
 * `nodejs_eventloop_lag_p99_seconds`, whose histogram is reset at each scrape: the driver
 * scrapes once before the phase and once after). Targets: CPU ≤ 1.25× off, p99 delay ≤ 5 ms.
 *
 * Placement as bench:overhead: the gateway alone on core 0 (BENCH_SUT_CORE); load generator,
 * bench upstream, the OTLP sink and this driver on core 1 (BENCH_LOAD_CORE).
 *
 * Flags: --quick (a smoke run of a few seconds per case; writes no -latest file).
 */
const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

interface Settings {
  readonly quick: boolean;
  readonly durationS: number;
  readonly warmupS: number;
  readonly connections: number;
  readonly sutCore: number;
  readonly loadCore: number;
}

interface CaseDef {
  readonly name: 'off' | 'on';
  readonly label: string;
  readonly tracing: boolean;
  /**
   * The inference log (`inference_log.enabled`, payloads off), built in parallel (#15 item 2).
   * When it lands, set this to true for the `on` case: RECORD_ON adds its config lines.
   */
  readonly inferenceLog: boolean;
}

const CASES: readonly CaseDef[] = [
  { name: 'off', label: 'record off (tracing off)', tracing: false, inferenceLog: false },
  { name: 'on', label: 'record on (tracing, sampler 1.0)', tracing: true, inferenceLog: false },
];

/** The config lines that turn the record on, appended to the bench gateway's config. */
function recordConfig(def: CaseDef, otlpEndpoint: string): string[] {
  const lines: string[] = [];
  if (def.tracing)
    lines.push(
      'tracing:',
      '  enabled: true',
      '  sample_ratio: 1',
      `  otlp: { endpoint: ${otlpEndpoint} }`,
    );
  if (def.inferenceLog) {
    // RECORD_ON: the inference log's own keys go here once it exists, e.g.
    //   'inference_log:', '  enabled: true', '  payloads: false'
    throw new Error('the inference log is not built yet: keep inferenceLog false');
  }
  return lines;
}

interface CaseResult {
  readonly name: string;
  readonly label: string;
  readonly throughput: ThroughputResult;
  readonly cpuMsPerRequest: number;
  readonly sutCpuPercent: number;
  readonly eventLoopDelayP99Ms: number;
  /** Tracing on: spans the OTLP sink received during the case (proof the record was on). */
  readonly exports: { readonly requests: number; readonly bytes: number };
}

function settingsFromArgs(): Settings {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: npm run bench:record -- [--quick]\n' +
        'env: BENCH_DURATION_S BENCH_WARMUP_S BENCH_CONNECTIONS BENCH_SUT_CORE BENCH_LOAD_CORE\n',
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
    durationS: num('BENCH_DURATION_S', 15, 3),
    warmupS: num('BENCH_WARMUP_S', 3, 1),
    connections: num('BENCH_CONNECTIONS', 50, 50),
    sutCore: num('BENCH_SUT_CORE', 0, 0),
    loadCore: num('BENCH_LOAD_CORE', 1, 1),
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

/** Scrapes the gateway's /metrics; returns the event loop's p99 delay (ms) since the last scrape. */
async function eventLoopP99Ms(base: string): Promise<number> {
  const res = await fetch(`${base}/metrics`);
  const text = await res.text();
  const m = /^nodejs_eventloop_lag_p99_seconds (\S+)$/m.exec(text);
  if (m === null) throw new Error('no nodejs_eventloop_lag_p99_seconds in /metrics');
  return Number(m[1]) * 1000;
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
  const config = writeGatewayConfig(tmp, upstream.url, { ...key, name: `record-${def.name}.yaml` });
  appendFileSync(config.path, `${recordConfig(def, sink.url).join('\n')}\n`);
  const sut = await startPinnedGateway(ROOT, {
    name: `record-${def.name}`,
    core: s.sutCore,
    config: config.path,
  });
  try {
    const target: Target = {
      name: def.name,
      url: `${sut.url}/v1/chat/completions`,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key.apiKey}` },
      body: JSON.stringify({
        model: BENCH_MODEL,
        messages: [{ role: 'user', content: 'Say hello in one short sentence.' }],
        max_tokens: 32,
      }),
    };
    const probe = await load.probe(target);
    if (probe.status !== 200) throw new Error(`${def.name}: probe answered ${probe.status}`);
    process.stderr.write(`[bench] ${def.name}: warmup ${s.warmupS} s\n`);
    if (s.warmupS > 0) await load.throughput(target, s.connections, s.warmupS);
    await eventLoopP99Ms(sut.url); // resets the delay histogram
    const sent = { ...sink.counts };
    const before = cpuMs(sut.pid);
    const t0 = performance.now();
    process.stderr.write(
      `[bench] ${def.name}: load ${s.durationS} s, ${s.connections} connections\n`,
    );
    const tp = await load.throughput(target, s.connections, s.durationS);
    const wallMs = performance.now() - t0;
    const used = cpuMs(sut.pid) - before;
    const p99 = await eventLoopP99Ms(sut.url);
    return {
      name: def.name,
      label: def.label,
      throughput: tp,
      cpuMsPerRequest: used / tp.ok,
      sutCpuPercent: (100 * used) / wallMs,
      eventLoopDelayP99Ms: p99,
      exports: {
        requests: sink.counts.requests - sent.requests,
        bytes: sink.counts.bytes - sent.bytes,
      },
    };
  } finally {
    await sut.stop();
  }
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
  try {
    for (const def of CASES)
      results.push(
        await runCase(s, def, load, upstream, tmp, sink, {
          secret: key.secret,
          apiKey: key.apiKey,
        }),
      );
  } finally {
    await sink.close();
    await upstream.stop();
    await loadProc.stop();
  }

  const off = results.find((r) => r.name === 'off')!;
  const on = results.find((r) => r.name === 'on')!;
  const cpuRatio = on.cpuMsPerRequest / off.cpuMsPerRequest;
  const targets = {
    cpuRatioAtMost1_25: cpuRatio <= 1.25,
    eventLoopP99AtMost5ms: on.eventLoopDelayP99Ms <= 5,
    tracesExported: on.exports.requests > 0,
  };
  const cpu = cpus();
  const row = (r: CaseResult): string =>
    `| ${r.label} | ${r.throughput.reqPerS.toFixed(0)} | ${r.cpuMsPerRequest.toFixed(3)} | ${r.sutCpuPercent.toFixed(0)} | ${r.throughput.latency.p99.toFixed(2)} | ${r.eventLoopDelayP99Ms.toFixed(2)} | ${r.exports.requests} (${(r.exports.bytes / 1024).toFixed(0)} KiB) |`;
  const text = [
    `## Switchyard record overhead — ${started.toISOString()}`,
    '',
    `Node ${process.version}, ${cpu[0]?.model ?? 'unknown CPU'} (${cpu.length} cores), Switchyard ${gitRevision()}. ` +
      `autocannon, ${s.connections} connections, ${s.durationS} s after ${s.warmupS} s warmup; gateway on core ${s.sutCore}, ` +
      `load, upstream, OTLP sink and driver on core ${s.loadCore}; bin flags ${launchFlags(ROOT).join(' ')}.`,
    ...(s.quick ? ['', '**Quick run (--quick): numbers are a smoke test only.**'] : []),
    '',
    '| case | req/s | CPU ms/req | gateway CPU % | p99 ms | event-loop p99 ms | OTLP exports |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    row(off),
    row(on),
    '',
    `CPU per request, on / off: **${cpuRatio.toFixed(2)}×** (target ≤ 1.25×: ${targets.cpuRatioAtMost1_25 ? 'met' : 'NOT met'}); ` +
      `event-loop p99 with the record on: ${on.eventLoopDelayP99Ms.toFixed(2)} ms (target ≤ 5 ms: ${targets.eventLoopP99AtMost5ms ? 'met' : 'NOT met'}).`,
    'Not measured yet: the inference log (built separately; see RECORD_ON in bench/record.ts).',
    '',
  ].join('\n');
  process.stdout.write(text);
  const json = {
    benchmark: 'record',
    timestamp: started.toISOString(),
    node: process.version,
    cpu: { model: cpu[0]?.model ?? 'unknown', cores: cpu.length },
    revision: gitRevision(),
    settings: s,
    cases: results,
    cpuRatio,
    targets,
    notes: ['The inference log is not part of this run yet (#15 item 2).'],
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
