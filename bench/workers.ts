import { writeLatest } from './lib/results.js';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Pool } from 'undici';
import { stringify } from 'yaml';
import { generateKey, hashKey } from '../src/core/api-key.js';
import { startPinnedGateway } from './lib/launch.js';
import { installCleanup } from './lib/processes.js';
import { cpuMs } from './lib/proc-stats.js';
import { startInstantUpstream } from './lib/instant-upstream.js';

/**
 * bench:workers (issue #17, part 5): CPU per request of `serve --workers 2` against one process.
 *
 * The same closed-loop load (chat completions through a tenant quota, so every request takes the
 * limiter's IPC round trip to the primary) runs against `--workers 1` and `--workers 2`. Both
 * gateways are pinned to core 0 (the same CPU budget: the number isolates what the primary, the
 * IPC and the second event loop cost, not what a second core buys); the driver and the upstream
 * run on core 1. CPU is read from /proc for the primary and every worker, around the measured
 * phase only. Target: CPU per request with 2 workers <= 1.1x that of one. The pair is then run
 * again without the quota: what the primary and a second event loop on the core cost apart from
 * the limiter's IPC.
 *
 * First, the limiter alone: one primary and one worker (the built modules), reserves one at a time
 * and in batches through the worker's PeerLimiter, against the in-process limiter: wall time and
 * the worker's CPU per reserve. Its limit is far away, so the worker admits from leases (one round
 * trip per lease, src/admission/peer-limiter.ts), as a tenant far from its limit is served.
 *
 * `--quick` is a smoke run of a second per case and writes no results file; a full run writes
 * bench/results/workers-latest.json.
 */
const ROOT = resolve(import.meta.dirname, '..');
const quick = process.argv.includes('--quick');
const WARMUP_MS = quick ? 500 : 3_000;
const MEASURE_MS = quick ? 1_000 : 15_000;
const CONNECTIONS = 16;
const TARGET_RATIO = 1.1;
const SECRET = 'bench-workers-secret';

/** The gateway's processes: the one started, and (with workers) its children. */
function family(pid: number): number[] {
  const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
  return [pid, ...(kids === '' ? [] : kids.split(/\s+/).map(Number))];
}

const cpuOf = (pids: readonly number[]): number =>
  pids.reduce((sum, p) => {
    try {
      return sum + cpuMs(p);
    } catch {
      return sum;
    }
  }, 0);

/** The cluster program of the IPC measurement (an .mjs file the workers re-run; imports dist/). */
const IPC_PROGRAM = (dist: string, n: number): string => `
import cluster from 'node:cluster';
if (cluster.isPrimary) {
  const { startPrimary } = await import('${dist}/cluster/primary.js');
  const p = startPrimary({ workers: 1, drainMs: 1000, say: () => undefined });
  p.catch(() => undefined);
  cluster.on('exit', () => process.exit(0));
} else {
  const { WorkerLink } = await import('${dist}/cluster/worker-link.js');
  const { PeerLimiter } = await import('${dist}/admission/peer-limiter.js');
  const { MemoryLimiter } = await import('${dist}/admission/memory-limiter.js');
  const { systemClock } = await import('${dist}/core/clock.js');
  const link = WorkerLink.fromEnv();
  await link.start();
  const charges = [{ key: 'r', limit: 1e12, window: { ms: 60000 }, amount: 1 }];
  const run = async (lim, n, batch) => {
    const c0 = process.cpuUsage(); const t0 = performance.now();
    for (let i = 0; i < n / batch; i++)
      await Promise.all(Array.from({ length: batch }, () => lim.reserve(charges)));
    const c = process.cpuUsage(c0);
    return { wallUs: ((performance.now() - t0) * 1000) / n, cpuUs: (c.user + c.system) / n };
  };
  const peer = new PeerLimiter(link);
  await run(peer, ${n} / 4, 1);
  const out = {
    inProcess: await run(new MemoryLimiter(systemClock), ${n}, 1),
    ipcOneAtATime: await run(peer, ${n}, 1),
    ipcBatch16: await run(peer, ${n}, 16),
    ipcBatch64: await run(peer, ${n}, 64),
  };
  console.log('IPC ' + JSON.stringify(out));
  process.exit(0);
}
`;

interface IpcCost {
  readonly wallUs: number;
  readonly cpuUs: number;
}

function measureIpc(dir: string): Record<string, IpcCost> {
  const file = join(dir, 'ipc-limiter.mjs');
  writeFileSync(file, IPC_PROGRAM(join(ROOT, 'dist'), quick ? 2_000 : 40_000));
  const out = execFileSync('taskset', ['-c', '0', process.execPath, file], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  const line = out.split('\n').find((l) => l.startsWith('IPC '));
  if (line === undefined) throw new Error(`IPC measurement printed nothing:\n${out}`);
  return JSON.parse(line.slice(4)) as Record<string, IpcCost>;
}

interface CaseResult {
  readonly workers: number;
  readonly requests: number;
  readonly errors: number;
  readonly rps: number;
  readonly cpuMsPerRequest: number;
  /** CPU ms per request of each process: the primary first (with workers), then the workers. */
  readonly cpuMsPerRequestByProcess: readonly number[];
}

async function runCase(workers: number, config: string, key: string): Promise<CaseResult> {
  const gw = await startPinnedGateway(ROOT, {
    name: `workers-${workers}`,
    core: 0,
    config,
    args: ['--workers', String(workers)],
  });
  try {
    const pids = family(gw.pid);
    if (pids.length !== (workers > 1 ? workers + 1 : 1))
      throw new Error(`expected ${workers} workers, found processes ${pids.join(', ')}`);
    const pool = new Pool(gw.url, { connections: CONNECTIONS, keepAliveTimeout: 60_000 });
    const body = JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] });
    let counting = false;
    let requests = 0;
    let errors = 0;
    let stop = false;
    const client = async (): Promise<void> => {
      while (!stop) {
        const res = await pool.request({
          path: '/v1/chat/completions',
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body,
        });
        await res.body.dump();
        if (!counting) continue;
        requests++;
        if (res.statusCode !== 200) errors++;
      }
    };
    const clients = Array.from({ length: CONNECTIONS }, () => client());
    await new Promise((r) => setTimeout(r, WARMUP_MS));
    const cpu0 = cpuOf(pids);
    const each0 = pids.map((p) => cpuOf([p]));
    const t0 = performance.now();
    counting = true;
    await new Promise((r) => setTimeout(r, MEASURE_MS));
    counting = false;
    const cpu1 = cpuOf(pids);
    const each1 = pids.map((p) => cpuOf([p]));
    const elapsed = performance.now() - t0;
    stop = true;
    await Promise.all(clients);
    await pool.close();
    return {
      workers,
      requests,
      errors,
      rps: Math.round((requests * 1000) / elapsed),
      cpuMsPerRequest: (cpu1 - cpu0) / Math.max(1, requests),
      cpuMsPerRequestByProcess: each1.map(
        (c, i) => Math.round(((c - each0[i]!) / Math.max(1, requests)) * 1000) / 1000,
      ),
    };
  } finally {
    await gw.stop();
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-bench-workers-'));
  installCleanup(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'secret.txt'), SECRET);
  const key = generateKey('sk');
  const upstream = await startInstantUpstream();
  const configWith = (name: string, quota: boolean): string => {
    const path = join(dir, name);
    writeFileSync(
      path,
      stringify({
        server: { host: '127.0.0.1', port: 0 },
        log: { level: 'warn' },
        auth: { secret: { file: 'secret.txt' } },
        tenants: {
          acme: {
            keys: [{ id: 'k1', hash: hashKey(key, SECRET) }],
            models: ['*'],
            // Never reached: present so that every request is counted by the limiter.
            ...(quota ? { quotas: { window_s: 60, requests: 1_000_000_000 } } : {}),
          },
        },
        models: { chat: { backend: 'openai', url: `${upstream.url}/v1` } },
      }),
    );
    return path;
  };
  const config = configWith('switchyard.yaml', true);
  // The same without a quota: no limiter round trip, so the rest (the primary, a second event
  // loop on the same core) is measured apart from the IPC.
  const noQuota = configWith('no-quota.yaml', false);
  try {
    const ipc = measureIpc(dir);
    process.stdout.write(
      [
        'limiter reserve, worker side (µs):',
        ...Object.entries(ipc).map(
          ([k, v]) => `  ${k}: wall ${v.wallUs.toFixed(1)}, CPU ${v.cpuUs.toFixed(1)}`,
        ),
        '',
      ].join('\n'),
    );
    const one = await runCase(1, config, key);
    const two = await runCase(2, config, key);
    const oneFree = await runCase(1, noQuota, key);
    const twoFree = await runCase(2, noQuota, key);
    const ratio = two.cpuMsPerRequest / one.cpuMsPerRequest;
    const ratioNoQuota = twoFree.cpuMsPerRequest / oneFree.cpuMsPerRequest;
    const rows = (
      [
        [one, 'yes'],
        [two, 'yes'],
        [oneFree, 'no'],
        [twoFree, 'no'],
      ] as const
    ).map(
      ([c, q]) =>
        `| ${c.workers} | ${q} | ${c.requests} | ${c.errors} | ${c.rps} | ${c.cpuMsPerRequest.toFixed(3)} | ${c.cpuMsPerRequestByProcess.map((n) => n.toFixed(3)).join(' + ')} |`,
    );
    process.stdout.write(
      [
        `bench:workers${quick ? ' (--quick: smoke run, not a result)' : ''}`,
        '| workers | tenant quota | requests | errors | req/s | CPU ms/request | by process (primary first) |',
        '| --- | --- | --- | --- | --- | --- | --- |',
        ...rows,
        `CPU per request, 2 workers / 1: ${ratio.toFixed(2)}x (target <= ${TARGET_RATIO}x): ${ratio <= TARGET_RATIO ? 'met' : 'missed'}`,
        `The same without a quota (no limiter IPC): ${ratioNoQuota.toFixed(2)}x`,
        '',
      ].join('\n'),
    );
    writeLatest(
      'workers',
      {
        at: new Date().toISOString(),
        ipc,
        cases: [one, two],
        ratio,
        target: TARGET_RATIO,
        without_quota: { cases: [oneFree, twoFree], ratio: ratioNoQuota },
      },
      quick,
    );
  } finally {
    upstream.close();
  }
}

await main();
