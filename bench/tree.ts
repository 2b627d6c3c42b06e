import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Pool } from 'undici';
import { stringify } from 'yaml';
import { generateKey, hashKey } from '../src/core/api-key.js';
import { pairModel, writeSynthetic } from '../src/modelkit/synthetic-models.js';
import { compileScript } from './lib/compile.js';
import { launchFlags, startPinnedGateway } from './lib/launch.js';
import { installCleanup, spawnPinned, type Pinned } from './lib/processes.js';
import { startInstantUpstream } from './lib/instant-upstream.js';

/**
 * bench:tree (issue #17): a tree of three gateway processes, central ← regional ← edge, each hop a
 * `backend: switchyard` model, in front of a bench upstream that answers at once.
 *
 * 1. Added latency per hop, p50 at concurrency 1, in one run: requests go round-robin to the
 *    central node (0 hops), the regional node (1 hop) and the edge (2 hops); a hop's cost is the
 *    difference of p50s, divided by the number of hops. Beside them, in the same rounds, a chain of
 *    two floor proxies (bench/floor-proxy.ts: node:http and an undici Pool, nothing else) on the
 *    same core: what one hop costs any Node proxy on this machine, so the gateway's own share of a
 *    hop (`beyond_floor`) is known.
 * 2. The regional node is killed (SIGKILL); the edge keeps answering `infer` calls from its local
 *    model within their deadline: the share on time, and the share marked degraded.
 *
 * Gateways run on core 0, the driver and the upstream on core 1. `--quick` is a smoke run and
 * writes no results file; a full run writes bench/results/tree-latest.json.
 */
const ROOT = resolve(import.meta.dirname, '..');
const quick = process.argv.includes('--quick');
const ROUNDS = quick ? 300 : 3_000;
const WARMUP = quick ? 50 : 300;
const KILLED_REQUESTS = quick ? 200 : 2_000;
const DEADLINE_MS = 300;
const SECRET = 'bench-tree-secret';
const SERVICE_KEY = 'bench-tree-service-key-0123456789';
const TARGET_HOP_MS = 0.3;
const TARGET_ON_TIME = 0.99;

function p50(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-bench-tree-'));
  const children: Pinned[] = [];
  installCleanup(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'secret.txt'), SECRET);
  await writeSynthetic(join(dir, 'central-pair'), '1', pairModel(2));
  await writeSynthetic(join(dir, 'edge-pair'), '1', pairModel(3));
  const key = generateKey('sk');
  const upstream = await startInstantUpstream();
  const base = (name: string, extra: Record<string, unknown>): string => {
    const path = join(dir, `${name}.yaml`);
    writeFileSync(
      path,
      stringify({
        server: { host: '127.0.0.1', port: 0 },
        log: { level: 'warn' },
        auth: {
          secret: { file: 'secret.txt' },
          service_keys: [{ id: 'tree', secret: { env: 'SY_TREE_KEY' } }],
        },
        onnx: { workers: 1 },
        tenants: { acme: { keys: [{ id: 'k1', hash: hashKey(key, SECRET) }], models: ['*'] } },
        ...extra,
      }),
    );
    return path;
  };
  const parent = (url: string, extra: Record<string, unknown> = {}) => ({
    backend: 'switchyard',
    url,
    service_key: { id: 'tree', secret: { env: 'SY_TREE_KEY' } },
    ...extra,
  });
  process.env['SY_TREE_KEY'] = SERVICE_KEY;
  const start = async (name: string, config: string): Promise<Pinned> => {
    const p = await startPinnedGateway(ROOT, { name, core: 0, config });
    children.push(p);
    return p;
  };
  const central = await start(
    'central',
    base('central', {
      node: { role: 'central' },
      models: {
        chat: { backend: 'openai', url: `${upstream.url}/v1` },
        pair: { backend: 'onnx', store: join(dir, 'central-pair'), batch: { max: 1 } },
      },
    }),
  );
  const regional = await start(
    'regional',
    base('regional', {
      node: { role: 'regional' },
      models: { chat: parent(central.url), pair: parent(central.url, { operations: ['infer'] }) },
    }),
  );
  const edge = await start(
    'edge',
    base('edge', {
      node: { role: 'edge' },
      models: {
        chat: parent(regional.url),
        pair: parent(regional.url, {
          operations: ['infer'],
          fallback: ['pair-local'],
          breaker: { consecutive_failures: 3, cooldown_ms: 60_000 },
        }),
        'pair-local': { backend: 'onnx', store: join(dir, 'edge-pair'), batch: { max: 1 } },
      },
    }),
  );

  // The floor chain: floor-1 → floor-0 → upstream, on the gateways' core.
  const floorScript = compileScript(ROOT, join(ROOT, 'bench/floor-proxy.ts'));
  const floor = async (name: string, to: string): Promise<Pinned> => {
    const p = await spawnPinned({
      name,
      core: 0,
      nodeArgs: [...launchFlags(ROOT), floorScript, to],
      ready: /READY (\S+)/,
      stdout: 'pipe',
      cwd: ROOT,
    });
    children.push(p);
    return p;
  };
  const floor0 = await floor('floor-0', upstream.url);
  const floor1 = await floor('floor-1', floor0.url);

  const pools = new Map<string, Pool>();
  const pool = (url: string): Pool => {
    let p = pools.get(url);
    if (p === undefined) pools.set(url, (p = new Pool(url, { connections: 4 })));
    return p;
  };
  const chatBody = JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] });
  const post = async (
    url: string,
    path: string,
    body: string,
    headers: Record<string, string> = {},
  ): Promise<{ status: number; ms: number; degraded: boolean }> => {
    const t0 = performance.now();
    const res = await pool(url).request({
      method: 'POST',
      path,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
      body,
    });
    await res.body.text();
    return {
      status: res.statusCode,
      ms: performance.now() - t0,
      degraded: res.headers['x-switchyard-degraded'] !== undefined,
    };
  };

  // 1. Added latency per hop, concurrency 1, round-robin in one run.
  const targets = [
    { name: 'upstream direct', url: upstream.url, path: '/v1/chat/completions', hops: -1 },
    { name: 'central (0 hops)', url: central.url, path: '/v1/chat/completions', hops: 0 },
    { name: 'regional (1 hop)', url: regional.url, path: '/v1/chat/completions', hops: 1 },
    { name: 'edge (2 hops)', url: edge.url, path: '/v1/chat/completions', hops: 2 },
    { name: 'floor (0 hops)', url: floor0.url, path: '/v1/chat/completions', hops: 0 },
    { name: 'floor (1 hop)', url: floor1.url, path: '/v1/chat/completions', hops: 1 },
  ];
  const samples = targets.map(() => [] as number[]);
  let errors = 0;
  for (let round = 0; round < WARMUP + ROUNDS; round++) {
    for (const [i, t] of targets.entries()) {
      const r = await post(t.url, t.path, chatBody);
      if (r.status !== 200) errors++;
      if (round >= WARMUP) samples[i]!.push(r.ms);
    }
  }
  const p50s = samples.map(p50);
  const direct = p50s[1]!;
  const perHop = {
    one_hop: p50s[2]! - direct,
    two_hops_per_hop: (p50s[3]! - direct) / 2,
  };
  const floorHop = p50s[5]! - p50s[4]!;
  const beyondFloor = perHop.one_hop - floorHop;

  // 2. The regional node killed: the edge answers from its local model, on time and marked.
  const infer = (i: number): string =>
    JSON.stringify({
      inputs: [
        { name: 'a', datatype: 'FP32', shape: [1, 4], data: [i, 1, 1, 1] },
        { name: 'b', datatype: 'FP32', shape: [1, 4], data: [1, 0, 0, 0] },
      ],
    });
  for (let i = 0; i < 20; i++) await post(edge.url, '/v2/models/pair/infer', infer(-i - 1));
  process.kill(regional.pid, 'SIGKILL');
  let onTime = 0;
  let marked = 0;
  let ok = 0;
  const killedMs: number[] = [];
  for (let i = 0; i < KILLED_REQUESTS; i++) {
    const r = await post(edge.url, '/v2/models/pair/infer', infer(i), {
      'x-switchyard-timeout-ms': String(DEADLINE_MS),
    });
    killedMs.push(r.ms);
    if (r.status === 200) ok++;
    if (r.status === 200 && r.ms <= DEADLINE_MS) onTime++;
    if (r.status === 200 && r.degraded) marked++;
  }
  const onTimeShare = onTime / KILLED_REQUESTS;
  const markedShare = ok === 0 ? 0 : marked / ok;

  const rows = targets.map((t, i) => ({ case: t.name, p50_ms: round3(p50s[i]!) }));
  console.log(`## bench:tree (${new Date().toISOString()}${quick ? ', --quick' : ''})`);
  console.log(`rounds ${ROUNDS} at concurrency 1 (after ${WARMUP} warm-up), errors ${errors}`);
  console.table(rows);
  console.log(
    `added per hop p50: 1 hop ${round3(perHop.one_hop)} ms, 2 hops ${round3(perHop.two_hops_per_hop)} ms per hop (target <= ${TARGET_HOP_MS} ms)`,
  );
  console.log(
    `a floor proxy hop: ${round3(floorHop)} ms; the gateway's hop beyond the floor: ${round3(beyondFloor)} ms`,
  );
  console.log(
    `regional killed: ${KILLED_REQUESTS} edge requests, deadline ${DEADLINE_MS} ms: on time ${(onTimeShare * 100).toFixed(2)}% (target >= ${TARGET_ON_TIME * 100}%), degraded answers marked ${(markedShare * 100).toFixed(2)}%, p50 ${round3(p50(killedMs))} ms`,
  );
  const met = {
    hop_latency: perHop.two_hops_per_hop <= TARGET_HOP_MS && perHop.one_hop <= TARGET_HOP_MS,
    edge_on_time: onTimeShare >= TARGET_ON_TIME && markedShare === 1,
  };
  console.log(`targets: ${JSON.stringify(met)}`);
  if (!quick) {
    mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
    writeFileSync(
      join(ROOT, 'bench/results/tree-latest.json'),
      JSON.stringify(
        {
          bench: 'tree',
          at: new Date().toISOString(),
          node: process.version,
          revision: revision(),
          rounds: ROUNDS,
          errors,
          p50_ms: Object.fromEntries(rows.map((r) => [r.case, r.p50_ms])),
          added_per_hop_ms: perHop,
          floor_hop_ms: floorHop,
          beyond_floor_hop_ms: beyondFloor,
          regional_killed: {
            requests: KILLED_REQUESTS,
            deadline_ms: DEADLINE_MS,
            on_time_share: onTimeShare,
            marked_share: markedShare,
          },
          targets: met,
        },
        null,
        2,
      ) + '\n',
    );
  }
  await Promise.all([...pools.values()].map((p) => p.close()));
  for (const c of children) await c.stop(2_000).catch(() => undefined);
  upstream.close();
}

function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}

function revision(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).toString().trim();
  } catch {
    return 'unknown';
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
