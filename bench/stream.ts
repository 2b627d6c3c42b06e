import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { BENCH_MODEL, writeGatewayConfig } from './lib/gateway-config.js';
import { startPinnedGateway } from './lib/launch.js';
import { installCleanup } from './lib/processes.js';
import { cpuMs } from './lib/proc-stats.js';

/**
 * `npm run bench:stream` (#16 targets): a 64-chunk chat stream paced at 20 ms, measured direct
 * against the upstream and through Switchyard in one run, alternating stream by stream so both
 * see the same machine. Reports the time to the first chunk (TTFT) and the gaps between chunks
 * as the client sees them, the gateway's added TTFT at p50 and added inter-chunk gap at p99, and
 * the gateway's CPU per streamed chunk (from /proc/<pid>/stat around the measured phase).
 *
 * Placement: Switchyard alone on core 0 (`BENCH_SUT_CORE`); this driver, with the paced upstream
 * and the client in it, on core 1 (the npm script pins it). The upstream writes one
 * `chat.completion.chunk` event every 20 ms from a timer, then a usage chunk and `[DONE]`.
 *
 * `--quick`: a few streams, a smoke run; its results are printed, never written. A full run
 * writes bench/results/stream-latest.json.
 */
const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const CHUNKS = 64;
const PACE_MS = 20;

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
const quick = values.quick;
const STREAMS = Number(process.env['BENCH_STREAMS'] ?? (quick ? 6 : 60));
const CONCURRENCY = Number(process.env['BENCH_CONCURRENCY'] ?? (quick ? 2 : 8));
const SUT_CORE = Number(process.env['BENCH_SUT_CORE'] ?? 0);

function chunk(i: number): string {
  return `data: ${JSON.stringify({
    id: 'chatcmpl-bench-stream',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'bench-upstream',
    choices: [
      {
        index: 0,
        delta: { content: ` t${i}` },
        logprobs: null,
        finish_reason: i === CHUNKS - 1 ? 'stop' : null,
      },
    ],
  })}\n\n`;
}
const USAGE = `data: ${JSON.stringify({
  id: 'chatcmpl-bench-stream',
  object: 'chat.completion.chunk',
  created: 1,
  model: 'bench-upstream',
  choices: [],
  usage: { prompt_tokens: 14, completion_tokens: CHUNKS, total_tokens: 14 + CHUNKS },
})}\n\n`;

/** The paced upstream: reads the request, then one event every PACE_MS. */
function startUpstream(): Promise<Server> {
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      let i = 0;
      res.write(chunk(i++));
      const timer = setInterval(() => {
        if (res.destroyed) return clearInterval(timer);
        if (i < CHUNKS) {
          res.write(chunk(i++));
          return;
        }
        clearInterval(timer);
        res.end(`${USAGE}data: [DONE]\n\n`);
      }, PACE_MS);
    });
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

interface StreamTiming {
  readonly ttftMs: number;
  readonly gapsMs: number[];
  readonly chunks: number;
}

const BODY = (model: string): string =>
  JSON.stringify({ model, messages: [{ role: 'user', content: 'count' }], stream: true });

/** One stream: time to the first content event, and the gaps between content events. */
async function measure(pool: Pool, model: string, key: string | undefined): Promise<StreamTiming> {
  const t0 = performance.now();
  const res = await pool.request({
    path: '/v1/chat/completions',
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(key === undefined ? {} : { authorization: `Bearer ${key}` }),
    },
    body: BODY(model),
  });
  if (res.statusCode !== 200)
    throw new Error(`${model}: status ${res.statusCode}: ${await res.body.text()}`);
  let ttft = -1;
  let last = 0;
  let seen = 0;
  const gaps: number[] = [];
  let text = '';
  for await (const piece of res.body) {
    const now = performance.now();
    text += (piece as Buffer).toString('latin1');
    let at: number;
    while ((at = text.indexOf('\n\n')) >= 0) {
      const event = text.slice(0, at);
      text = text.slice(at + 2);
      if (!event.includes('"delta"')) continue;
      if (seen === 0) ttft = now - t0;
      else gaps.push(now - last);
      last = now;
      seen++;
    }
  }
  if (seen !== CHUNKS) throw new Error(`${model}: ${seen} content events, not ${CHUNKS}`);
  return { ttftMs: ttft, gapsMs: gaps, chunks: seen };
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

function summary(runs: readonly StreamTiming[]) {
  const ttft = runs.map((r) => r.ttftMs).sort((a, b) => a - b);
  const gaps = runs.flatMap((r) => r.gapsMs).sort((a, b) => a - b);
  const r3 = (n: number): number => Math.round(n * 1000) / 1000;
  return {
    streams: runs.length,
    ttft_p50_ms: r3(quantile(ttft, 0.5)),
    ttft_p99_ms: r3(quantile(ttft, 0.99)),
    gap_p50_ms: r3(quantile(gaps, 0.5)),
    gap_p99_ms: r3(quantile(gaps, 0.99)),
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-bench-stream-'));
  const upstream = await startUpstream();
  const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  const config = writeGatewayConfig(dir, upstreamUrl);
  const gateway = await startPinnedGateway(ROOT, {
    name: 'switchyard',
    core: SUT_CORE,
    config: config.path,
  });
  installCleanup(() => rmSync(dir, { recursive: true, force: true }));
  const direct = new Pool(upstreamUrl, { connections: CONCURRENCY });
  const through = new Pool(gateway.url, { connections: CONCURRENCY });
  try {
    // Warm-up: connections, JIT, the gateway's first-call paths.
    for (let i = 0; i < 2; i++) {
      await measure(direct, 'bench-upstream', undefined);
      await measure(through, BENCH_MODEL, config.apiKey);
    }
    const directRuns: StreamTiming[] = [];
    const gatewayRuns: StreamTiming[] = [];
    const cpu0 = cpuMs(gateway.pid);
    let gatewayChunks = 0;
    // Waves of CONCURRENCY streams each way, the two sides side by side.
    for (let done = 0; done < STREAMS; done += CONCURRENCY) {
      const n = Math.min(CONCURRENCY, STREAMS - done);
      const wave = await Promise.all([
        ...Array.from({ length: n }, () => measure(direct, 'bench-upstream', undefined)),
        ...Array.from({ length: n }, () => measure(through, BENCH_MODEL, config.apiKey)),
      ]);
      directRuns.push(...wave.slice(0, n));
      const g = wave.slice(n);
      gatewayRuns.push(...g);
      gatewayChunks += g.reduce((s, r) => s + r.chunks, 0);
      process.stderr.write(`[bench] streams ${done + n}/${STREAMS}\n`);
    }
    const cpu = cpuMs(gateway.pid) - cpu0;
    const d = summary(directRuns);
    const s = summary(gatewayRuns);
    const result = {
      at: new Date().toISOString(),
      loadavg: loadavg().map((v) => Math.round(v * 100) / 100),
      chunks: CHUNKS,
      pace_ms: PACE_MS,
      concurrency: CONCURRENCY,
      direct: d,
      switchyard: s,
      added_ttft_p50_ms: Math.round((s.ttft_p50_ms - d.ttft_p50_ms) * 1000) / 1000,
      added_gap_p99_us: Math.round((s.gap_p99_ms - d.gap_p99_ms) * 1000),
      // Includes the gateway's idle timers over the run: an upper bound of the cost per chunk.
      cpu_us_per_chunk: Math.round((cpu * 1000) / gatewayChunks),
      targets: { added_ttft_p50_ms: 0.3, added_gap_p99_us: 50 },
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    if (quick) process.stderr.write('[bench] --quick: results not written\n');
    else {
      mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
      writeFileSync(
        join(ROOT, 'bench/results/stream-latest.json'),
        `${JSON.stringify(result, null, 2)}\n`,
      );
    }
  } finally {
    await direct.close();
    await through.close();
    await gateway.stop();
    upstream.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
