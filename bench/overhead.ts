import { execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { compileScript } from './lib/compile.js';
import { BENCH_MODEL, writeGatewayConfig } from './lib/gateway-config.js';
import { launchFlags, startPinnedGateway } from './lib/launch.js';
import { installCleanup, spawnPinned, type Pinned } from './lib/processes.js';
import { cpuMs, MB, rssBytes, RssSampler } from './lib/proc-stats.js';
import type {
  LoadCommand,
  LoadReply,
  ProbeResult,
  SequentialResult,
  Target,
  ThroughputResult,
} from './lib/protocol.js';
import {
  evaluateTargets,
  markdown,
  type CaseResult,
  type InterleavedResult,
  type SoakResult,
} from './lib/report.js';
import { formatSummary, summarise, type ProfileSummary } from './profile-summary.js';

/**
 * `npm run bench:overhead`: what Switchyard costs on top of its upstream, in one run.
 *
 * Placement (2 cores): the process under test (Switchyard, the floor proxy) runs alone on core
 * 0 (BENCH_SUT_CORE). The load generator, the bench upstream and this driver share core 1
 * (BENCH_LOAD_CORE): the upstream answers from precomputed bytes, so it costs little, and the
 * "load core %" column shows whether core 1 ever became the bottleneck. In the direct cases the
 * measured process is the upstream itself, on core 1 beside the generator, so their req/s are a
 * reference, not a ceiling. CPU is read from /proc/<pid>/stat (all threads) around the measured
 * phase only; RSS from /proc/<pid>/status. The gateway logs at its default level (`info`, one line
 * per request) to /dev/null, so the request log is part of its cost.
 *
 * Flags: --quick (a smoke run of a few seconds per case), --soak SECONDS (then run Switchyard
 * under load that long and report RSS growth), --profile (run Switchyard and the floor with
 * --cpu-prof and summarise where the CPU goes; numbers from such a run are inflated).
 */
const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

interface Settings {
  readonly quick: boolean;
  readonly durationS: number;
  readonly warmupS: number;
  readonly connections: number;
  readonly seqRequests: number;
  readonly seqWarmup: number;
  readonly seqBlocks: number;
  readonly idleS: number;
  readonly rssSampleMs: number;
  readonly sutCore: number;
  readonly loadCore: number;
  readonly soakS: number;
  readonly soakSampleS: number;
  readonly profile: boolean;
  /** Extra node flags for the processes under test (floor, Switchyard), for experiments. */
  readonly sutNodeArgs: readonly string[];
  readonly cases: readonly CaseName[];
}

type CaseName =
  | 'direct'
  | 'direct-stream'
  | 'floor'
  | 'switchyard'
  | 'switchyard-stream'
  | 'slow-admission-on'
  | 'slow-admission-off';

interface CaseDef {
  readonly name: CaseName;
  readonly label: string;
  readonly sut: 'upstream' | 'floor' | 'switchyard';
  readonly stream: boolean;
  /**
   * The 200-connection case (#14): Switchyard in front of an upstream that takes 20 ms, with
   * admission control on or off. Its own connection count; no one-at-a-time phase.
   */
  readonly slow?: { readonly admission: boolean; readonly connections: number };
}

const CASES: readonly CaseDef[] = [
  { name: 'direct', label: 'a. upstream direct', sut: 'upstream', stream: false },
  { name: 'direct-stream', label: 'a2. upstream direct, streamed', sut: 'upstream', stream: true },
  { name: 'floor', label: 'd. floor proxy (node:http + undici Pool)', sut: 'floor', stream: false },
  { name: 'switchyard', label: 'b. Switchyard, non-streamed', sut: 'switchyard', stream: false },
  { name: 'switchyard-stream', label: 'c. Switchyard, streamed', sut: 'switchyard', stream: true },
  {
    name: 'slow-admission-on',
    label: 'e. Switchyard, 200 connections, 20 ms upstream, admission on',
    sut: 'switchyard',
    stream: false,
    slow: { admission: true, connections: 200 },
  },
  {
    name: 'slow-admission-off',
    label: 'e2. the same, admission off',
    sut: 'switchyard',
    stream: false,
    slow: { admission: false, connections: 200 },
  },
];

function settingsFromArgs(): Settings {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      soak: { type: 'string' },
      profile: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: npm run bench:overhead -- [--quick] [--soak SECONDS] [--profile]\n' +
        'env: BENCH_DURATION_S BENCH_WARMUP_S BENCH_CONNECTIONS BENCH_SEQ_REQUESTS BENCH_SEQ_WARMUP\n' +
        '     BENCH_IDLE_S BENCH_SUT_CORE BENCH_LOAD_CORE BENCH_SOAK_SAMPLE_S BENCH_CASES (comma list)\n' +
        '     BENCH_SUT_NODE_ARGS (extra node flags for the floor and Switchyard)\n',
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
  const soakS = values.soak === undefined ? 0 : Number(values.soak);
  if (!Number.isFinite(soakS) || soakS < 0) throw new Error('--soak takes a number of seconds');
  const names = CASES.map((c) => c.name);
  const wanted = (process.env['BENCH_CASES'] ?? '').split(',').filter((s) => s !== '');
  for (const w of wanted)
    if (!names.includes(w as CaseName)) throw new Error(`BENCH_CASES: unknown case ${w}`);
  return {
    quick,
    durationS: num('BENCH_DURATION_S', 10, 2),
    warmupS: num('BENCH_WARMUP_S', 2, 1),
    connections: num('BENCH_CONNECTIONS', 50, 50),
    seqRequests: num('BENCH_SEQ_REQUESTS', 3000, 300),
    seqWarmup: num('BENCH_SEQ_WARMUP', 500, 100),
    seqBlocks: 10,
    idleS: num('BENCH_IDLE_S', 2, 1),
    rssSampleMs: 200,
    sutCore: num('BENCH_SUT_CORE', 0, 0),
    loadCore: num('BENCH_LOAD_CORE', 1, 1),
    soakS,
    soakSampleS: num('BENCH_SOAK_SAMPLE_S', 10, 10),
    profile: values.profile,
    sutNodeArgs: (process.env['BENCH_SUT_NODE_ARGS'] ?? '').split(/\s+/).filter((a) => a !== ''),
    cases: wanted.length === 0 ? names : (wanted as CaseName[]),
  };
}

/**
 * Progress on stderr: the phase and its elapsed time, as a live line on a terminal, else a line
 * at the start, every 30 s, and at the end. `expectS` 0: the length is not known in advance.
 */
async function phase<T>(label: string, expectS: number, work: Promise<T>): Promise<T> {
  const t0 = performance.now();
  const tty = process.stderr.isTTY;
  const elapsed = (): string => {
    const s = ((performance.now() - t0) / 1000).toFixed(0);
    return expectS > 0 ? `${s}/${expectS.toFixed(0)} s` : `${s} s`;
  };
  const line = (text: string): void => {
    process.stderr.write(tty ? `\r\x1b[2K${text}` : `${text}\n`);
  };
  line(`[bench] ${label} ${elapsed()}`);
  let ticks = 0;
  const timer = setInterval(() => {
    ticks++;
    if (tty || ticks % 30 === 0) line(`[bench] ${label} ${elapsed()}`);
  }, 1000);
  try {
    return await work;
  } finally {
    clearInterval(timer);
    line(`[bench] ${label}: done in ${elapsed()}`);
    if (tty) process.stderr.write('\n');
  }
}

type DistributiveOmitId<T> = T extends unknown ? Omit<T, 'id'> : never;

/** The load generator child and its request/reply channel. */
class LoadClient {
  private next = 1;
  private readonly waiting = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();

  constructor(readonly proc: Pinned) {
    proc.child.on('message', (msg: LoadReply) => {
      const w = this.waiting.get(msg.id);
      if (w === undefined) return;
      this.waiting.delete(msg.id);
      if (msg.ok) w.resolve(msg.result);
      else w.reject(new Error(`load generator: ${msg.error}`));
    });
    proc.child.once('exit', (code) => {
      for (const w of this.waiting.values()) w.reject(new Error(`load generator exited (${code})`));
      this.waiting.clear();
    });
  }

  private send<T>(cmd: DistributiveOmitId<LoadCommand>): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.proc.child.send({ ...cmd, id });
    });
  }

  probe(target: Target): Promise<ProbeResult> {
    return this.send({ type: 'probe', target });
  }

  throughput(
    targets: readonly Target[],
    connections: number,
    durationS: number,
  ): Promise<ThroughputResult> {
    return this.send({ type: 'throughput', targets, connections, durationS });
  }

  sequential(
    targets: readonly Target[],
    warmup: number,
    count: number,
    blocks: number,
  ): Promise<SequentialResult> {
    return this.send({ type: 'sequential', targets, warmup, count, blocks });
  }
}

function chatBody(model: string, stream: boolean): string {
  return JSON.stringify({
    model,
    messages: [
      { role: 'system', content: 'You are a terse assistant.' },
      { role: 'user', content: 'Say hello in one short sentence.' },
    ],
    max_tokens: 32,
    temperature: 0,
    ...(stream ? { stream: true } : {}),
  });
}

/** Checks that an answer is a real chat completion (or SSE stream) before measuring. */
function checkProbe(name: string, p: ProbeResult, stream: boolean): void {
  const fail = (why: string): never => {
    throw new Error(`${name}: ${why}; got ${p.status} ${p.contentType}: ${p.body.slice(0, 500)}`);
  };
  if (p.status !== 200) fail('expected status 200');
  if (!stream) {
    const j = JSON.parse(p.body) as { object?: string; choices?: unknown[] };
    if (j.object !== 'chat.completion' || !Array.isArray(j.choices)) fail('not a chat.completion');
    return;
  }
  if (!p.contentType.startsWith('text/event-stream')) fail('not text/event-stream');
  if (!p.body.includes('"chat.completion.chunk"') || !p.body.trimEnd().endsWith('data: [DONE]')) {
    fail('not an SSE stream of chunks ending in [DONE]');
  }
}

interface Context {
  readonly settings: Settings;
  readonly load: LoadClient;
  readonly upstream: Pinned;
  readonly configPath: string;
  /** The 20 ms upstream and Switchyard's configs in front of it, admission on and off. */
  readonly slow?: { readonly upstream: Pinned; readonly on: string; readonly off: string };
  readonly headers: Readonly<Record<string, string>>;
  readonly profileDir: string;
  /** Compiled bench scripts by name. */
  readonly scripts: Readonly<Record<'upstream' | 'floor' | 'load', string>>;
}

function targetOf(
  ctx: Context,
  name: string,
  base: string,
  stream: boolean,
  model: string,
): Target {
  return {
    name,
    url: `${base}/v1/chat/completions`,
    headers: ctx.headers,
    body: chatBody(model, stream),
  };
}

function directTarget(ctx: Context, stream: boolean): Target {
  return targetOf(
    ctx,
    stream ? 'direct-stream' : 'direct',
    ctx.upstream.url,
    stream,
    'bench-upstream',
  );
}

/** Node flags for a process under test: BENCH_SUT_NODE_ARGS, and the profiler with --profile. */
function sutFlags(ctx: Context, name: string): string[] {
  const profile = [
    '--cpu-prof',
    `--cpu-prof-dir=${ctx.profileDir}`,
    `--cpu-prof-name=${name}-${Date.now()}.cpuprofile`,
    '--cpu-prof-interval=500',
  ];
  // After the bin's own flags (the floor gets them too, for a like-for-like heap): an
  // experiment's, which override them.
  return [...ctx.settings.sutNodeArgs, ...(ctx.settings.profile ? profile : [])];
}

function startSwitchyard(ctx: Context, name: string, config = ctx.configPath): Promise<Pinned> {
  return startPinnedGateway(ROOT, {
    name,
    core: ctx.settings.sutCore,
    config,
    extraFlags: sutFlags(ctx, name),
    watch: true,
  });
}

function startFloor(ctx: Context): Promise<Pinned> {
  return spawnPinned({
    name: 'floor',
    core: ctx.settings.sutCore,
    nodeArgs: [
      ...launchFlags(ROOT),
      ...sutFlags(ctx, 'floor'),
      ctx.scripts.floor,
      ctx.upstream.url,
    ],
    ready: /READY (\S+)/,
    stdout: 'pipe',
    cwd: ROOT,
  });
}

/** The newest profile written for `name`, once its process has exited. */
function latestProfile(dir: string, name: string): string | undefined {
  if (!existsSync(dir)) return undefined;
  return readdirSync(dir)
    .filter((f) => f.startsWith(`${name}-`) && f.endsWith('.cpuprofile'))
    .map((f) => join(dir, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
}

const profiles: ProfileSummary[] = [];

async function runCase(ctx: Context, def: CaseDef): Promise<CaseResult> {
  const { settings: base, load } = ctx;
  const slow = def.slow === undefined ? undefined : ctx.slow!;
  const upstream = slow?.upstream ?? ctx.upstream;
  const s = def.slow === undefined ? base : { ...base, connections: def.slow.connections };
  const tag = `${def.name}:`;
  const sut =
    def.sut === 'upstream'
      ? upstream
      : def.sut === 'floor'
        ? await startFloor(ctx)
        : await startSwitchyard(
            ctx,
            def.name,
            slow === undefined ? ctx.configPath : def.slow!.admission ? slow.on : slow.off,
          );
  try {
    const model = def.sut === 'switchyard' ? BENCH_MODEL : 'bench-upstream';
    const target = targetOf(ctx, def.name, sut.url, def.stream, model);
    checkProbe(def.name, await load.probe(target), def.stream);
    const rssIdle = rssBytes(sut.pid);
    const sampler = new RssSampler(sut.pid, s.rssSampleMs);
    if (s.warmupS > 0)
      await phase(`${tag} warmup`, s.warmupS, load.throughput([target], s.connections, s.warmupS));
    const before = {
      sut: cpuMs(sut.pid),
      up: cpuMs(upstream.pid),
      load: cpuMs(load.proc.pid),
      me: process.cpuUsage(),
    };
    const t0 = performance.now();
    const tp = await phase(
      `${tag} load, ${s.connections} connections`,
      s.durationS,
      load.throughput([target], s.connections, s.durationS),
    );
    const wallMs = performance.now() - t0;
    const sutMs = cpuMs(sut.pid) - before.sut;
    const upMs = cpuMs(upstream.pid) - before.up;
    const loadMs = cpuMs(load.proc.pid) - before.load;
    const me = process.cpuUsage(before.me);
    sampler.stop();
    await phase(`${tag} idle`, s.idleS, sleep(s.idleS * 1000));
    const rssAfter = rssBytes(sut.pid);
    const paired = def.sut === 'upstream' ? undefined : directTarget(ctx, def.stream);
    const seq =
      def.slow !== undefined
        ? undefined
        : await phase(
            `${tag} one at a time, ${s.seqRequests} requests${paired === undefined ? '' : ' (alternating with direct)'}`,
            0,
            load.sequential(
              paired === undefined ? [target] : [paired, target],
              s.seqWarmup,
              s.seqRequests,
              s.seqBlocks,
            ),
          );
    const coreOneMs = (def.sut === 'upstream' ? 0 : upMs) + loadMs + (me.user + me.system) / 1000;
    return {
      name: def.name,
      label: def.label,
      measured: def.sut === 'upstream' ? 'upstream (on the load core)' : def.sut,
      stream: def.stream,
      throughput: tp,
      cpuMsPerRequest: sutMs / tp.ok,
      sutCpuPercent: (100 * sutMs) / wallMs,
      loadCoreCpuPercent: (100 * (def.sut === 'upstream' ? coreOneMs + sutMs : coreOneMs)) / wallMs,
      upstreamCpuMsPerRequest: upMs / tp.ok,
      rssIdleBytes: rssIdle,
      rssMaxUnderLoadBytes: sampler.max,
      rssAfterIdleBytes: rssAfter,
      sequential: seq?.byTarget[target.name] ?? NO_SEQUENTIAL,
      ...(paired === undefined || seq === undefined
        ? {}
        : { sequentialDirect: seq.byTarget[paired.name]! }),
    };
  } finally {
    if (sut !== upstream) await sut.stop();
  }
}

/**
 * CPU per request of the floor and of Switchyard (non-streamed), measured in alternating blocks of
 * `blockS` seconds, both processes up the whole time (on the same core, the idle one asleep). The
 * machines here drift over minutes (the floor's CPU per request read 0.074 and 0.129 ms in two
 * runs an hour apart), and the sequential cases put a minute between the two; blocks a few
 * seconds apart see the same machine. The #14 ratio is read here.
 */
async function runInterleaved(ctx: Context): Promise<InterleavedResult> {
  const s = ctx.settings;
  const blocks = s.quick ? 2 : 6;
  const blockS = s.quick ? 1 : 3;
  const floor = await startFloor(ctx);
  const sy = await startSwitchyard(ctx, 'switchyard-interleaved');
  try {
    const sides = [
      {
        proc: floor,
        target: targetOf(ctx, 'floor-interleaved', floor.url, false, 'bench-upstream'),
        cpuMs: 0,
        ok: 0,
      },
      {
        proc: sy,
        target: targetOf(ctx, 'switchyard-interleaved', sy.url, false, BENCH_MODEL),
        cpuMs: 0,
        ok: 0,
      },
    ];
    for (const side of sides) {
      checkProbe(side.target.name, await ctx.load.probe(side.target), false);
      await ctx.load.throughput([side.target], s.connections, s.warmupS);
    }
    for (let b = 0; b < blocks; b++) {
      for (const side of b % 2 === 0 ? sides : [...sides].reverse()) {
        const before = cpuMs(side.proc.pid);
        const tp = await ctx.load.throughput([side.target], s.connections, blockS);
        side.cpuMs += cpuMs(side.proc.pid) - before;
        side.ok += tp.ok;
      }
      process.stderr.write(`[bench] interleaved: block ${b + 1}/${blocks}\n`);
    }
    const [f, w] = sides as [(typeof sides)[0], (typeof sides)[0]];
    return {
      blocks,
      blockS,
      floorCpuMsPerRequest: f.cpuMs / f.ok,
      switchyardCpuMsPerRequest: w.cpuMs / w.ok,
      ratio: w.cpuMs / w.ok / (f.cpuMs / f.ok),
    };
  } finally {
    await floor.stop();
    await sy.stop();
  }
}

const NO_SEQUENTIAL = { count: 0, mean: NaN, p50: NaN, p90: NaN, p99: NaN, max: NaN, failures: 0 };

async function runSoak(ctx: Context): Promise<SoakResult> {
  const { settings: s, load } = ctx;
  const sut = await startSwitchyard(ctx, 'soak');
  try {
    const targets = [false, true].map((stream) =>
      targetOf(ctx, stream ? 'soak-stream' : 'soak', sut.url, stream, BENCH_MODEL),
    );
    for (const t of targets) checkProbe(t.name, await load.probe(t), t.name === 'soak-stream');
    const sampler = new RssSampler(sut.pid, s.soakSampleS * 1000);
    const tp = await phase(
      `soak: ${s.connections} connections`,
      s.soakS,
      load.throughput(targets, s.connections, s.soakS),
    );
    sampler.stop();
    // The sample at 0 s is the idle process before the load began.
    const samples = sampler.samples
      .filter((x) => x.atS > 0.5)
      .map((x) => ({ atS: x.atS, rssMB: x.bytes / MB }));
    const windowS = Math.min(60, s.soakS / 3);
    const avg = (xs: readonly { rssMB: number }[]): number =>
      xs.reduce((a, x) => a + x.rssMB, 0) / Math.max(1, xs.length);
    const end = samples.at(-1)?.atS ?? 0;
    const first = avg(samples.filter((x) => x.atS <= windowS + 0.5));
    const last = avg(samples.filter((x) => x.atS >= end - windowS - 0.5));
    return {
      durationS: s.soakS,
      sampleEveryS: s.soakSampleS,
      windowS,
      samples,
      firstWindowAvgMB: first,
      lastWindowAvgMB: last,
      growthMB: last - first,
      growthPercent: (100 * (last - first)) / first,
      throughput: tp,
    };
  } finally {
    await sut.stop();
  }
}

function gitRevision(): string {
  try {
    const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT })
      .toString()
      .trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT })
      .toString()
      .trim();
    return dirty === '' ? rev : `${rev} (src/ has uncommitted changes)`;
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const settings = settingsFromArgs();
  if (!existsSync(join(ROOT, 'dist/cli/index.js')))
    throw new Error('dist/ is missing: run npm run build');
  const tmp = mkdtempSync(join(tmpdir(), 'switchyard-bench-'));
  installCleanup(() => rmSync(tmp, { recursive: true, force: true }));
  // The driver shares the load core; the process under test has its core to itself.
  execFileSync('taskset', ['-a', '-p', '-c', String(settings.loadCore), String(process.pid)], {
    stdio: 'ignore',
  });
  const started = new Date();
  const resultsDir = join(ROOT, 'bench/results');
  const profileDir = join(resultsDir, 'profiles');
  if (settings.profile) mkdirSync(profileDir, { recursive: true });

  const scripts = {
    upstream: compileScript(ROOT, join(ROOT, 'bench/upstream.ts')),
    floor: compileScript(ROOT, join(ROOT, 'bench/floor-proxy.ts')),
    load: compileScript(ROOT, join(ROOT, 'bench/load.ts')),
  };
  process.stderr.write(
    `[bench] starting the bench upstream and the load generator on core ${settings.loadCore}\n`,
  );
  const upstream = await spawnPinned({
    name: 'upstream',
    core: settings.loadCore,
    nodeArgs: [scripts.upstream],
    ready: /READY (\S+)/,
    stdout: 'pipe',
    cwd: ROOT,
  });
  const loadProc = await spawnPinned({
    name: 'load',
    core: settings.loadCore,
    nodeArgs: [scripts.load],
    ready: /READY (load)/,
    stdout: 'pipe',
    ipc: true,
    cwd: ROOT,
  });
  const config = writeGatewayConfig(tmp, upstream.url);
  const wantSlow = CASES.some((c) => c.slow !== undefined && settings.cases.includes(c.name));
  let slow: Context['slow'];
  if (wantSlow) {
    const slowUp = await spawnPinned({
      name: 'upstream-20ms',
      core: settings.loadCore,
      nodeArgs: [scripts.upstream],
      ready: /READY (\S+)/,
      stdout: 'pipe',
      cwd: ROOT,
      env: { DELAY_MS: '20' },
    });
    // The same secret and key as the main config, so every target sends the same headers.
    const same = { secret: config.secret, apiKey: config.apiKey };
    const on = writeGatewayConfig(tmp, slowUp.url, { ...same, name: 'slow-on.yaml' });
    const off = writeGatewayConfig(tmp, slowUp.url, {
      ...same,
      name: 'slow-off.yaml',
      admission: false,
    });
    slow = { upstream: slowUp, on: on.path, off: off.path };
  }
  const ctx: Context = {
    settings,
    load: new LoadClient(loadProc),
    upstream,
    configPath: config.path,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${config.apiKey}` },
    profileDir,
    scripts,
    ...(slow === undefined ? {} : { slow }),
  };

  const results: CaseResult[] = [];
  for (const def of CASES) {
    if (!settings.cases.includes(def.name)) continue;
    process.stderr.write(`[bench] case ${def.label}\n`);
    const r = await runCase(ctx, def);
    if (settings.profile && def.sut !== 'upstream') {
      const file = latestProfile(profileDir, def.name);
      if (file !== undefined) {
        profiles.push(summarise(file, 25));
        results.push({ ...r, profile: relative(ROOT, file) });
        continue;
      }
    }
    results.push(r);
  }
  const interleaved =
    settings.cases.includes('floor') && settings.cases.includes('switchyard')
      ? await runInterleaved(ctx)
      : undefined;
  const soak = settings.soakS > 0 ? await runSoak(ctx) : undefined;
  await slow?.upstream.stop();
  await upstream.stop();
  await loadProc.stop();

  const targets = evaluateTargets(results, interleaved);
  const cpu = cpus();
  const header = {
    title: `Switchyard overhead — ${started.toISOString()}`,
    lines: [
      `Node ${process.version}, ${cpu[0]?.model ?? 'unknown CPU'} (${cpu.length} cores), Switchyard ${gitRevision()}.`,
      `Load: autocannon, closed loop, ${settings.connections} connections, ${settings.durationS} s measured after ${settings.warmupS} s warmup; ` +
        `one at a time: ${settings.seqRequests} requests after ${settings.seqWarmup} warmup, alternating with the direct upstream in ${settings.seqBlocks} blocks.`,
      `Placement: process under test alone on core ${settings.sutCore}; load generator, bench upstream and driver on core ${settings.loadCore} ` +
        `(the direct rows measure the upstream itself, on the load core). Switchyard logs at level info (a line per request) to /dev/null.`,
      `Switchyard and the floor run with the switchyard bin's node flags (${launchFlags(ROOT).join(' ')}), as \`npm start\` and the installed bin do.`,
      'CPU ms/req: user+system time of the measured process (all threads) during the measured phase / 2xx responses. ' +
        'Latencies are client-side, in ms. The bench upstream answers at once from precomputed bytes (a stream: 6 SSE events in one write). ' +
        'Streamed requests do not set stream_options, so Switchyard asks the upstream for usage and drops the usage chunk.',
      ...(settings.quick ? ['**Quick run (--quick): numbers are a smoke test only.**'] : []),
      ...(settings.sutNodeArgs.length > 0
        ? [`**Extra node flags for the processes under test: ${settings.sutNodeArgs.join(' ')}**`]
        : []),
      ...(settings.profile
        ? ['**Profiled run (--profile): CPU numbers are inflated by the profiler.**']
        : []),
    ],
  };
  let text = markdown(header, results, targets, soak, interleaved);
  if (profiles.length > 0) {
    text += `\n### CPU profiles\n\n\`\`\`\n${profiles.map((p) => formatSummary(p)).join('\n\n')}\n\`\`\`\n`;
  }
  process.stdout.write(text);

  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const json = {
    benchmark: 'overhead',
    timestamp: started.toISOString(),
    node: process.version,
    cpu: { model: cpu[0]?.model ?? 'unknown', cores: cpu.length },
    revision: gitRevision(),
    settings,
    placement: {
      processUnderTestCore: settings.sutCore,
      loadGeneratorCore: settings.loadCore,
      upstreamCore: settings.loadCore,
      driverCore: settings.loadCore,
    },
    notes: [
      'Switchyard runs with default settings and log level info; its stdout (the request log) goes to /dev/null.',
      `Switchyard and the floor run with the bin's node flags: ${launchFlags(ROOT).join(' ')}.`,
      'The direct cases measure the upstream process, which shares the load core with the generator.',
    ],
    cases: results,
    ...(interleaved === undefined ? {} : { interleaved }),
    targets,
    ...(soak === undefined ? {} : { soak }),
    ...(profiles.length === 0 ? {} : { profiles }),
  };
  mkdirSync(resultsDir, { recursive: true });
  const file = join(resultsDir, `overhead-${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  // The README quotes -latest: only a full run (every case, not --quick) replaces it.
  const full = !settings.quick && settings.cases.length === CASES.length;
  if (full)
    writeFileSync(join(resultsDir, 'overhead-latest.json'), `${JSON.stringify(json, null, 2)}\n`);
  process.stderr.write(
    `[bench] wrote ${relative(ROOT, file)}${full ? ' and bench/results/overhead-latest.json' : ''}\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(
    `\n[bench] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exitCode = 1;
  process.exit(1);
});
