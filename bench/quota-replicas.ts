import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { generateKey, hashKey } from '../src/core/api-key.js';
import { seededRandom } from '../src/core/random.js';
import { runOpenLoop, type Sample } from './lib/open-loop.js';
import { installCleanup, type Pinned } from './lib/processes.js';
import { startPinnedGateway } from './lib/launch.js';
import { startInstantUpstream } from './lib/instant-upstream.js';

/**
 * bench:quota-replicas (issue #5): two gateway processes share one Redis for quotas. Three
 * tenants each offer 3 × their request quota, open loop, split across both gateways. The bench
 * counts what was admitted per tenant: in total, and in the busiest quota window (any
 * `window_s` interval), against the limit. The same load on one gateway alone is the baseline.
 * Needs the Redis at 127.0.0.1:6379 (a unique key prefix per run).
 */
const ROOT = resolve(import.meta.dirname, '..');
const quick = process.argv.includes('--quick');
const LIMIT = 100;
/** Requests a tenant may send at once after a quiet spell: the stated burst. */
const BURST = 10;
const WINDOW_S = 5;
const DURATION_MS = quick ? 10_000 : 20_000;
const TENANTS = ['t1', 't2', 't3'];
const REDIS_URL = 'redis://127.0.0.1:6379';
const COMMAND_TIMEOUT_MS = Number(process.env['COMMAND_TIMEOUT_MS'] ?? 50);

function writeConfig(
  dir: string,
  upstream: string,
  prefix: string,
): { path: string; keys: Record<string, string> } {
  const secret = randomBytes(16).toString('hex');
  writeFileSync(join(dir, 'secret.txt'), secret);
  const keys: Record<string, string> = {};
  const tenantLines: string[] = [];
  for (const t of TENANTS) {
    keys[t] = generateKey('sk');
    tenantLines.push(
      `  ${t}: { keys: [ { id: k, hash: "${hashKey(keys[t], secret)}" } ], quotas: { window_s: ${WINDOW_S}, requests: ${LIMIT}, requests_burst: ${BURST} } }`,
    );
  }
  const path = join(dir, `switchyard-${prefix.replaceAll(':', '_')}.yaml`);
  writeFileSync(
    path,
    [
      'server: { host: 127.0.0.1, port: 0 }',
      'log: { level: error }',
      'auth: { secret: { file: secret.txt } }',
      'tenants:',
      ...tenantLines,
      'models:',
      `  chat: { backend: openai, url: ${upstream}/v1, retry: { max_attempts: 1 } }`,
      // Local share 1/2: two replicas counting alone while Redis is away keep the total.
      `admission: { limiter: { store: redis, url: "${REDIS_URL}", prefix: "${prefix}", command_timeout_ms: ${COMMAND_TIMEOUT_MS}, local_share: 0.5 } }`,
      '',
    ].join('\n'),
  );
  return { path, keys };
}

function startGateway(name: string, core: number, config: string): Promise<Pinned> {
  return startPinnedGateway(ROOT, { name, core: core, config });
}

interface TenantResult {
  readonly tenant: string;
  readonly offered: number;
  readonly admitted: number;
  /** Limit × duration / window, plus one window's limit (the window starts empty). */
  readonly allowedTotal: number;
  readonly busiestWindow: number;
  readonly refused429: number;
  readonly other: number;
}

async function load(
  gateways: readonly Pinned[],
  keys: Record<string, string>,
): Promise<TenantResult[]> {
  const rate = (3 * LIMIT) / WINDOW_S; // per tenant, split over the gateways
  const body = JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] });
  const runs = await Promise.all(
    gateways.map((g, i) =>
      runOpenLoop({
        origin: g.url,
        path: '/v1/chat/completions',
        durationMs: DURATION_MS,
        connections: 64,
        timeoutMs: 5_000,
        random: seededRandom(7 + i),
        classes: TENANTS.map((t) => ({
          name: t,
          ratePerS: rate / gateways.length,
          headers: { authorization: `Bearer ${keys[t]}` },
          body,
        })),
      }).then((samples) => ({ samples })),
    ),
  );
  const all: Sample[] = runs.flatMap((r) => r.samples);
  const statuses = new Map<number, number>();
  for (const s of all) statuses.set(s.status, (statuses.get(s.status) ?? 0) + 1);
  process.stderr.write(`[bench] statuses: ${JSON.stringify([...statuses])}\n`);
  return TENANTS.map((t) => {
    const mine = all.filter((s) => s.cls === t);
    const ok = mine
      .filter((s) => s.status === 200)
      .map((s) => s.at + s.latencyMs)
      .sort((a, b) => a - b);
    let busiest = 0;
    for (let i = 0, j = 0; i < ok.length; i++) {
      while (ok[i]! - ok[j]! >= WINDOW_S * 1000) j++;
      busiest = Math.max(busiest, i - j + 1);
    }
    return {
      tenant: t,
      offered: mine.length,
      admitted: ok.length,
      allowedTotal: Math.round((LIMIT * DURATION_MS) / (WINDOW_S * 1000) + BURST),
      busiestWindow: busiest,
      refused429: mine.filter((s) => s.status === 429).length,
      other: mine.filter((s) => s.status !== 200 && s.status !== 429).length,
    };
  });
}

async function main(): Promise<void> {
  if (!existsSync(join(ROOT, 'dist/cli/index.js')))
    throw new Error('dist/ is missing: npm run build');
  const probe = new Redis(REDIS_URL, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
  });
  await probe.connect().catch(() => {
    throw new Error(`bench:quota-replicas needs Redis at ${REDIS_URL}`);
  });
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-quota-'));
  installCleanup(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { stdio: 'ignore' });
  const upstream = await startInstantUpstream();
  const run = randomBytes(4).toString('hex');
  const results: { name: string; tenants: TenantResult[]; localDecisions: number }[] = [];
  try {
    for (const [name, replicas] of [
      ['one gateway', 1],
      ['two gateways, one Redis', 2],
    ] as const) {
      const prefix = `sy-bench:${run}:${replicas}:`;
      const cfg = writeConfig(dir, upstream.url, prefix);
      const gws = await Promise.all(
        Array.from({ length: replicas }, (_, i) => startGateway(`gw${i}`, i % 2, cfg.path)),
      );
      process.stderr.write(`[bench] ${name}: ${DURATION_MS / 1000} s\n`);
      try {
        const tenants = await load(gws, cfg.keys);
        let local = 0;
        for (const g of gws) {
          const text = await (await fetch(`${g.url}/metrics`)).text();
          const line = text
            .split('\n')
            .find((l) => l.startsWith('switchyard_limiter_local_fallback_total'));
          local += line === undefined ? 0 : Number(line.split(' ')[1]);
        }
        results.push({ name, tenants, localDecisions: local });
      } finally {
        await Promise.all(gws.map((g) => g.stop()));
      }
      const stale = await probe.keys(`${prefix}*`);
      if (stale.length > 0) await probe.del(...stale);
    }
  } finally {
    upstream.close();
    probe.disconnect();
  }
  const lines = [
    `## bench:quota-replicas (${new Date().toISOString()}${quick ? ', --quick' : ''})`,
    '',
    `Each tenant: quota ${LIMIT} requests per ${WINDOW_S} s (a rate with burst ${BURST}), offered 3 × that (${(3 * LIMIT) / WINDOW_S} req/s, Poisson) for ${DURATION_MS / 1000} s, split evenly over the gateways. Redis command timeout ${COMMAND_TIMEOUT_MS} ms, local share 0.5.`,
    '',
    ...results.map(
      (r) =>
        `- ${r.name}: ${r.localDecisions} quota decisions taken by the local fallback (Redis judged unreachable)`,
    ),
    '',
    '| setup | tenant | offered | admitted | allowed (limit × windows + burst) | busiest window | busiest / limit | 429 | other |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const r of results)
    for (const t of r.tenants)
      lines.push(
        `| ${r.name} | ${t.tenant} | ${t.offered} | ${t.admitted} | ${t.allowedTotal} | ${t.busiestWindow} | ${(t.busiestWindow / LIMIT).toFixed(2)} | ${t.refused429} | ${t.other} |`,
      );
  const two = results.find((r) => r.name.startsWith('two'))!;
  const worst = Math.max(...two.tenants.map((t) => t.busiestWindow / LIMIT));
  const overTotal = two.tenants.every((t) => t.admitted <= t.allowedTotal);
  lines.push(
    '',
    `- ${overTotal ? 'PASS' : 'FAIL'} admitted per tenant across both gateways <= limit × windows + burst`,
    `- ${worst <= (LIMIT + BURST + 1) / LIMIT ? 'PASS' : 'FAIL'} busiest ${WINDOW_S} s window across both gateways <= limit + burst + 1 (GCRA: ${LIMIT} + ${BURST}): ${worst.toFixed(2)} × limit`,
  );
  const report = lines.join('\n') + '\n';
  process.stdout.write(`\n${report}`);
  mkdirSync(join(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(
    join(ROOT, 'bench/results/quota-replicas-latest.json'),
    JSON.stringify(
      {
        at: new Date().toISOString(),
        quick,
        limit: LIMIT,
        windowS: WINDOW_S,
        durationMs: DURATION_MS,
        results,
      },
      null,
      2,
    ),
  );
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
