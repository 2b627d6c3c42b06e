import { writeLatest } from './lib/results.js';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import type { ExperimentRecord, ExperimentSpec } from '../src/contracts/registry-store.js';
import type { AssignmentUnit } from '../src/contracts/slot-resolver.js';
import { seededRandom } from '../src/core/random.js';
import { SlotTable } from '../src/release/slot-table.js';

/**
 * `npm run bench:release` (issue #6):
 *
 * 1. Slot resolution: 50 live experiments (A/B, canaries, bandits, shadows) over 10 slots in 4
 *    layers, with eligibility predicates; resolving the busiest slot (its experiments span every
 *    layer) for 200k distinct users. Target ≤ 5 µs per resolve.
 * 2. Shadow overhead: a child serving path (pinned to core 0) answers from a production upstream
 *    and, on one slot, mirrors 100 % of requests to a shadow upstream; the load generator (this
 *    process, core 1, which also hosts both model upstreams, 5 ms each) alternates rounds between the plain and the shadowed slot at the same
 *    open-loop arrival rate (Poisson). Target: p99 with shadowing ≤ 1.05 × p99 without (same run).
 *
 * Flags: --quick, --rounds N, --round-s S, --rate RPS (open-loop arrival rate, default 200).
 */

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const { values } = parseArgs({
  options: {
    quick: { type: 'boolean' },
    rounds: { type: 'string' },
    'round-s': { type: 'string' },
    rate: { type: 'string' },
  },
});
const quick = values.quick === true;
const ROUNDS = Number(values.rounds ?? (quick ? 2 : 6));
const ROUND_S = Number(values['round-s'] ?? (quick ? 3 : 8));
const RATE = Number(values.rate ?? 200);

function experiments(): ExperimentRecord[] {
  const out: ExperimentRecord[] = [];
  const layers = ['ranking', 'ui', 'pricing', 'search'];
  for (let i = 0; i < 50; i++) {
    const slot = `slot-${i % 10}`;
    const kinds = ['ab', 'canary', 'bandit', 'shadow'] as const;
    const kind = kinds[i % 4]!;
    const layer = layers[Math.floor(i / 10) % 4]!;
    const spec: ExperimentSpec = {
      id: `exp-${i}`,
      slot,
      kind,
      layer,
      traffic: 20,
      holdout: 5,
      eligibility:
        i % 3 === 0
          ? { geo: ['de', 'fr', 'us'], device: ['ios', 'android'] }
          : { class: ['interactive'] },
      variants: [
        { name: 'control', model: 'm', version: '1', weight: 1 },
        { name: 'treatment', model: 'm', version: '2', weight: 1 },
      ],
      ...(kind === 'canary' ? { ramp: { steps: [5, 25, 50], hold_s: 60 } } : {}),
      ...(kind === 'bandit' ? { bandit: { exploration_floor: 0.05 } } : {}),
      ...(kind === 'shadow'
        ? { shadow: { percent: 10, targets: [{ model: 'm', version: '3' }] } }
        : {}),
    };
    const slotIndex = Math.floor(i / 10);
    out.push({
      spec,
      status: 'running',
      allocation: { start: slotIndex * 2_000, end: slotIndex * 2_000 + 2_000 },
      step: 1,
      stepSince: 0,
      reason: '',
      revision: 1,
      createdAt: i,
      updatedAt: i,
    });
  }
  return out;
}

function benchResolve(): {
  nsPerResolve: number;
  experiments: number;
  experimentsOnSlot: number;
  resolves: number;
} {
  const records = experiments();
  const bandits = new Map();
  const table = new SlotTable(records, bandits, seededRandom(1));
  const users = 200_000;
  const units: AssignmentUnit[] = Array.from({ length: users }, (_, i) => ({
    tenant: 'acme',
    userId: `user-${i}`,
    requestId: `req-${i}`,
    geo: ['de', 'fr', 'us', 'br'][i % 4]!,
    device: ['ios', 'android', 'web'][i % 3]!,
    trafficClass: 'interactive',
    attributes: { plan: 'plus', rides_30d: i % 40 },
  }));
  const slot = 'slot-0';
  let sink = 0;
  for (let i = 0; i < 100_000; i++) sink += table.resolve(slot, units[i % users]!)?.bucket ?? 0; // warm up
  const reps = quick ? 400_000 : 2_000_000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < reps; i++) sink += table.resolve(slot, units[i % users]!)?.bucket ?? 0;
  const ns = Number(process.hrtime.bigint() - t0) / reps;
  if (sink === -1) console.log(sink);
  return {
    nsPerResolve: ns,
    experiments: records.length,
    experimentsOnSlot: records.filter((r) => r.spec.slot === slot).length,
    resolves: reps,
  };
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

/** A model upstream in this process (core 1): answers after `delayMs`, like a remote model. */
async function upstream(
  label: string,
  delayMs: number,
): Promise<{ url: string; close: () => void }> {
  const s = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      setTimeout(() => {
        const body = JSON.stringify({ label, score: 0.5 });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
        res.end(body);
      }, delayMs);
    });
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, close: () => s.close() };
}

async function benchShadow() {
  const prodUp = await upstream('billing', 5);
  const shadowUp = await upstream('refund', 5);
  const child = spawn(
    'taskset',
    ['-c', '0', process.execPath, '--import', 'tsx', join(ROOT, 'bench/release/shadow-server.ts')],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, PROD_URL: prodUp.url, SHADOW_URL: shadowUp.url },
    },
  );
  const port = await new Promise<number>((res) =>
    child.stdout.once('data', (d: Buffer) => res(Number(d.toString().trim()))),
  );
  const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 256 });
  const random = seededRandom(17);
  // Open loop (Poisson arrivals at RATE/s): the latency a user sees at a given load, not the
  // throughput ceiling of a saturated closed loop.
  const round = async (path: string, seconds: number): Promise<number[]> => {
    const lat: number[] = [];
    const inflight: Promise<void>[] = [];
    const start = performance.now();
    let next = start;
    while (next < start + seconds * 1000) {
      next += (-Math.log(1 - random()) * 1000) / RATE;
      const wait = next - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      const t0 = performance.now();
      inflight.push(
        pool.request({ method: 'POST', path, body: '{}' }).then(async (r) => {
          await r.body.text();
          lat.push(performance.now() - t0);
        }),
      );
    }
    await Promise.all(inflight);
    return lat;
  };
  await round('/plain', 2);
  await round('/shadowed', 2);
  const plain: number[] = [];
  const shadowed: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    // Alternate the order so drift on the shared machine hits both sides alike.
    if (i % 2 === 0) {
      plain.push(...(await round('/plain', ROUND_S)));
      shadowed.push(...(await round('/shadowed', ROUND_S)));
    } else {
      shadowed.push(...(await round('/shadowed', ROUND_S)));
      plain.push(...(await round('/plain', ROUND_S)));
    }
  }
  const statsRes = await pool.request({ method: 'GET', path: '/stats' });
  const childStats = (await statsRes.body.json()) as {
    shadow_shed: number;
    shadow_requests: number;
  };
  await pool.close();
  child.kill('SIGTERM');
  prodUp.close();
  shadowUp.close();
  const summary = (xs: number[]) => ({
    requests: xs.length,
    p50_ms: pct(xs, 50),
    p99_ms: pct(xs, 99),
    rps: xs.length / (ROUNDS * ROUND_S),
  });
  const p = summary(plain);
  const s = summary(shadowed);
  const mirrored = 1 - childStats.shadow_shed / Math.max(1, childStats.shadow_requests);
  return {
    plain: p,
    shadowed: s,
    p99_ratio: s.p99_ms / p.p99_ms,
    mirrored_share: mirrored,
    ...childStats,
  };
}

const resolveResult = benchResolve();
const shadowResult = await benchShadow();
const r3 = (x: number) => Math.round(x * 1000) / 1000;
const rows = [
  [
    'slot resolve (50 experiments)',
    `${r3(resolveResult.nsPerResolve / 1000)} µs/resolve`,
    '≤ 5 µs',
    resolveResult.nsPerResolve <= 5_000 ? 'PASS' : 'FAIL',
  ],
  [
    'p99 without shadow',
    `${r3(shadowResult.plain.p99_ms)} ms (${Math.round(shadowResult.plain.rps)} rps)`,
    '',
    '',
  ],
  [
    'p99 with 100 % shadow',
    `${r3(shadowResult.shadowed.p99_ms)} ms (${Math.round(shadowResult.shadowed.rps)} rps)`,
    '',
    '',
  ],
  [
    'p99 ratio (shadow / plain)',
    `${r3(shadowResult.p99_ratio)}`,
    '≤ 1.05',
    shadowResult.p99_ratio <= 1.05 ? 'PASS' : 'FAIL',
  ],
  ['shadow copies sent (not shed)', `${r3(shadowResult.mirrored_share * 100)} %`, '', ''],
];
console.log('\nbench:release');
for (const r of rows)
  console.log(`  ${r[0]!.padEnd(32)} ${r[1]!.padEnd(28)} ${r[2]!.padEnd(8)} ${r[3]}`);
const out = {
  at: new Date().toISOString(),
  loadavg: loadavg(),
  quick,
  resolve: resolveResult,
  shadow: { ...shadowResult, rounds: ROUNDS, round_s: ROUND_S, rate_rps: RATE },
};
writeLatest('release', out, quick);
