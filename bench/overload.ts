import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Pool } from 'undici';
import { generateKey, hashKey } from '../src/core/api-key.js';
import { seededRandom } from '../src/core/random.js';
import { percentile, runOpenLoop, type Sample } from './lib/open-loop.js';
import { installCleanup, type Pinned } from './lib/processes.js';
import { startPinnedGateway } from './lib/launch.js';
import { startCapacityUpstream, type CapacityUpstream } from '../test/support/capacity-upstream.js';

/**
 * bench:overload (issue #5). An upstream with a fixed service time and a fixed number of slots
 * (so a known capacity C) sits behind the gateway. Offered load is 3 × C, open loop with Poisson
 * arrivals: interactive 0.5 C and background 2.5 C. The same run is made with admission control
 * on and off, and printed side by side. Gateway on core 0; upstream, load generator and driver
 * on core 1. `--quick` shortens the runs.
 */
const ROOT = resolve(import.meta.dirname, '..');
const quick = process.argv.includes('--quick');
const SLOTS = 8;
const SERVICE_MS = 40;
const WARMUP_MS = quick ? 2_000 : 3_000;
const MEASURE_MS = quick ? 6_000 : 20_000;
const CLIENT_TIMEOUT_MS = 10_000;
const GATEWAY_CORE = 0;
const LOAD_CORE = 1;

const CHAT = JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hello' }] });
const ANSWER = Buffer.from(
  JSON.stringify({
    id: 'x',
    object: 'chat.completion',
    created: 1,
    model: 'm',
    choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 },
  }),
);

/** The fixed-capacity upstream: SLOTS requests at a time, SERVICE_MS each, the rest wait FIFO. */
function startUpstream(): Promise<CapacityUpstream> {
  return startCapacityUpstream(SLOTS, SERVICE_MS, ANSWER);
}

function writeConfig(
  dir: string,
  upstream: string,
  admission: boolean,
): { path: string; key: string } {
  const secret = randomBytes(16).toString('hex');
  writeFileSync(join(dir, 'secret.txt'), secret);
  const key = generateKey('sk');
  const path = join(dir, `switchyard-${admission ? 'on' : 'off'}.yaml`);
  writeFileSync(
    path,
    [
      'server: { host: 127.0.0.1, port: 0 }',
      'log: { level: error }',
      'auth: { secret: { file: secret.txt } }',
      'tenants:',
      `  app: { keys: [ { id: app, hash: "${hashKey(key, secret)}" } ] }`,
      'models:',
      '  chat:',
      '    backend: openai',
      `    url: ${upstream}/v1`,
      '    timeout_ms: 60000',
      '    pool: { connections: 512 }',
      '    retry: { max_attempts: 1 }',
      '    breaker: { consecutive_failures: 1000000, min_calls: 1000000 }',
      `admission: { enabled: ${admission} }`,
      '',
    ].join('\n'),
  );
  return { path, key };
}

function startGateway(name: string, config: string): Promise<Pinned> {
  return startPinnedGateway(ROOT, { name, core: GATEWAY_CORE, config });
}

async function send(
  pool: Pool,
  key: string,
  headers: Record<string, string> = {},
): Promise<number> {
  const res = await pool.request({
    method: 'POST',
    path: '/v1/chat/completions',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body: CHAT,
  });
  await res.body.dump();
  return res.statusCode;
}

/** The upstream's capacity C: closed loop straight at it, 2 × SLOTS clients, 3 s. */
async function measureCapacity(upstream: string): Promise<number> {
  const pool = new Pool(upstream, { connections: 4 * SLOTS });
  let done = 0;
  const until = performance.now() + 3_000;
  const loop = async (): Promise<void> => {
    while (performance.now() < until) if ((await send(pool, '')) === 200) done++;
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 2 * SLOTS }, loop));
  const capacity = done / ((performance.now() - t0) / 1000);
  await pool.close();
  return capacity;
}

/** Unloaded latency through the gateway: one request at a time. */
async function unloadedP50Of(url: string, key: string): Promise<number> {
  const pool = new Pool(url, { connections: 1 });
  const seq: number[] = [];
  for (let i = 0; i < 100; i++) {
    const t = performance.now();
    await send(pool, key);
    seq.push(performance.now() - t);
  }
  await pool.close();
  return percentile(
    seq.sort((a, b) => a - b),
    50,
  );
}

interface ClassStats {
  sent: number;
  ok: number;
  okPct: number;
  p50: number;
  p99: number;
  shed: number;
  shedWithRetryAfter: number;
  rejectP50: number;
  rejectP99: number;
  failed: number;
}

function stats(samples: readonly Sample[], cls: string): ClassStats {
  const mine = samples.filter((s) => s.cls === cls);
  const ok = mine.filter((s) => s.status >= 200 && s.status < 300);
  const shed = mine.filter((s) => s.status === 429 || s.status === 503);
  const okLat = ok.map((s) => s.latencyMs).sort((a, b) => a - b);
  const shedLat = shed.map((s) => s.latencyMs).sort((a, b) => a - b);
  return {
    sent: mine.length,
    ok: ok.length,
    okPct: (100 * ok.length) / Math.max(1, mine.length),
    p50: percentile(okLat, 50),
    p99: percentile(okLat, 99),
    shed: shed.length,
    shedWithRetryAfter: shed.filter((s) => s.retryAfter !== undefined).length,
    rejectP50: percentile(shedLat, 50),
    rejectP99: percentile(shedLat, 99),
    failed: mine.length - ok.length - shed.length,
  };
}

interface RunResult {
  readonly name: string;
  readonly interactive: ClassStats;
  readonly background: ClassStats;
  readonly goodputPerS: number;
}

async function runCase(
  name: string,
  admission: boolean,
  upstream: string,
  dir: string,
  C: number,
): Promise<RunResult> {
  const cfg = writeConfig(dir, upstream, admission);
  const gw = await startGateway(name, cfg.path);
  try {
    process.stderr.write(`[bench] ${name}: offering ${(3 * C).toFixed(0)} req/s\n`);
    const auth = { authorization: `Bearer ${cfg.key}` };
    const samples = await runOpenLoop({
      origin: gw.url,
      path: '/v1/chat/completions',
      durationMs: WARMUP_MS + MEASURE_MS,
      connections: 2_048,
      timeoutMs: CLIENT_TIMEOUT_MS,
      random: seededRandom(42),
      classes: [
        { name: 'interactive', ratePerS: 0.5 * C, headers: auth, body: CHAT },
        {
          name: 'background',
          ratePerS: 2.5 * C,
          headers: { ...auth, 'x-switchyard-class': 'background' },
          body: CHAT,
        },
      ],
    });
    const measured = samples.filter((s) => s.at >= WARMUP_MS);
    // Goodput: answers completed inside the measured window (a late answer is not throughput).
    const end = WARMUP_MS + MEASURE_MS;
    const okCount = samples.filter(
      (s) =>
        s.status >= 200 &&
        s.status < 300 &&
        s.at + s.latencyMs >= WARMUP_MS &&
        s.at + s.latencyMs < end,
    ).length;
    return {
      name,
      interactive: stats(measured, 'interactive'),
      background: stats(measured, 'background'),
      goodputPerS: okCount / (MEASURE_MS / 1000),
    };
  } finally {
    await gw.stop();
  }
}

const f = (n: number, d = 1): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');

async function main(): Promise<void> {
  if (!existsSync(join(ROOT, 'dist/cli/index.js')))
    throw new Error('dist/ is missing: npm run build');
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-overload-'));
  installCleanup(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('taskset', ['-a', '-p', '-c', String(LOAD_CORE), String(process.pid)], {
    stdio: 'ignore',
  });
  const upstream = await startUpstream();
  try {
    // C from the upstream itself; the unloaded latency through the gateway (admission on).
    const C = await measureCapacity(upstream.url);
    const calCfg = writeConfig(dir, upstream.url, true);
    const calGw = await startGateway('calibration', calCfg.path);
    const unloadedP50 = await unloadedP50Of(calGw.url, calCfg.key).finally(() => calGw.stop());
    process.stderr.write(
      `[bench] capacity C ${C.toFixed(0)} req/s, unloaded p50 ${unloadedP50.toFixed(1)} ms\n`,
    );
    const on = await runCase('admission on', true, upstream.url, dir, C);
    const off = await runCase('admission off', false, upstream.url, dir, C);
    const runs = [on, off];

    const lines: string[] = [
      `## bench:overload (${new Date().toISOString()}${quick ? ', --quick' : ''})`,
      '',
      `Upstream: ${SLOTS} slots × ${SERVICE_MS} ms (theoretical ${(SLOTS * 1000) / SERVICE_MS} req/s). ` +
        `Capacity C of the upstream (closed loop, straight at it): ${f(C, 0)} req/s; unloaded interactive p50 ${f(unloadedP50, 2)} ms. ` +
        `Offered 3 × C open loop (Poisson): interactive 0.5 C, background 2.5 C, ${MEASURE_MS / 1000} s measured after ${WARMUP_MS / 1000} s warm-up. ` +
        `Gateway pinned to core ${GATEWAY_CORE}; upstream and load generator on core ${LOAD_CORE}.`,
      '',
      '| run | class | sent | ok % | ok p50 ms | ok p99 ms | shed 429/503 | with Retry-After | rejection p50 ms | rejection p99 ms | timeouts/errors |',
      '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ];
    for (const r of runs)
      for (const [cls, s] of [
        ['interactive', r.interactive],
        ['background', r.background],
      ] as const)
        lines.push(
          `| ${r.name} | ${cls} | ${s.sent} | ${f(s.okPct, 2)} | ${f(s.p50)} | ${f(s.p99)} | ${s.shed} | ${s.shedWithRetryAfter} | ${f(s.rejectP50)} | ${f(s.rejectP99)} | ${s.failed} |`,
        );
    lines.push('', '| run | goodput req/s | goodput / C |', '| --- | ---: | ---: |');
    for (const r of runs)
      lines.push(`| ${r.name} | ${f(r.goodputPerS, 0)} | ${f(r.goodputPerS / C, 2)} |`);

    const a = on;
    const p99Limit = 3 * unloadedP50 + 100;
    const targets = [
      [
        'interactive success >= 99.9%',
        `${f(a.interactive.okPct, 2)}%`,
        a.interactive.okPct >= 99.9,
      ],
      [
        `interactive p99 <= 3 × unloaded p50 + 100 ms (${f(p99Limit)} ms)`,
        `${f(a.interactive.p99)} ms`,
        a.interactive.p99 <= p99Limit,
      ],
      [
        'background shed with 429/503 + Retry-After',
        `${a.background.shed} shed, ${a.background.shedWithRetryAfter} with Retry-After`,
        a.background.shed > 0 && a.background.shedWithRetryAfter === a.background.shed,
      ],
      ['rejection p99 <= 25 ms', `${f(a.background.rejectP99)} ms`, a.background.rejectP99 <= 25],
      ['goodput >= 0.75 C', `${f(a.goodputPerS / C, 2)} C`, a.goodputPerS >= 0.75 * C],
    ] as const;
    lines.push('', 'Targets (admission on):', '');
    for (const [name, value, pass] of targets)
      lines.push(`- ${pass ? 'PASS' : 'FAIL'} ${name}: ${value}`);
    const report = lines.join('\n') + '\n';
    process.stdout.write(`\n${report}`);
    const results = join(ROOT, 'bench/results');
    mkdirSync(results, { recursive: true });
    writeFileSync(
      join(results, 'overload-latest.json'),
      JSON.stringify(
        {
          at: new Date().toISOString(),
          quick,
          upstream: { slots: SLOTS, serviceMs: SERVICE_MS },
          capacity: C,
          unloadedP50,
          warmupMs: WARMUP_MS,
          measureMs: MEASURE_MS,
          runs,
          targets: targets.map(([name, value, pass]) => ({ name, value, pass })),
        },
        null,
        2,
      ),
    );
  } finally {
    await upstream.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
