import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { seededRandom } from '../../src/core/random.js';
import { startSimulator } from '../../src/simulator/upstream-simulator.js';
import { startPinnedGateway } from '../lib/launch.js';
import { percentile, runOpenLoop } from '../lib/open-loop.js';
import { startRedisServer } from '../lib/redis-server.js';
import type { FaultScenario, FaultTargetResult } from './scenario.js';

/**
 * Issue #13, finding 5: a daily spend budget (every call costs 1, so a budget of N is N calls)
 * while the quota limiter's Redis (a private redis-server) is SIGSTOPped for 10 s mid-run. The
 * load is open loop, more than the budget: it runs out during the outage. Targets: admitted ≤
 * budget × 1.05; every admitted call is in Redis afterwards, once (the local usage was written
 * back, and commands that timed out but ran late were not counted twice); every call sent during
 * the outage was answered (200, or 429 once the budget was spent), none failed or hung.
 */
const DAY_MS = 86_400_000;
const MICROS = 1_000_000;
const RATE = 100;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const pct = (n: number, of: number): string => `${((100 * n) / Math.max(1, of)).toFixed(2)}%`;

export const scenario: FaultScenario = {
  id: 'redis-budget',
  title: 'A daily spend budget with the quota Redis SIGSTOPped mid-run',
  async run(ctx) {
    const plan = ctx.quick
      ? { durationMs: 12_000, stopAtMs: 4_000, stopForMs: 4_000, budget: 600 }
      : { durationMs: 30_000, stopAtMs: 10_000, stopForMs: 10_000, budget: 1_500 };
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-redis-budget-'));
    const redis = await startRedisServer();
    const upstream = await startSimulator({ host: '127.0.0.1', port: 0 });
    const store = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await store.connect();
    const prefix = `sy-fault:${randomBytes(4).toString('hex')}:`;
    const secret = randomBytes(16).toString('hex');
    const key = generateKey('sk');
    writeFileSync(join(dir, 'secret.txt'), secret);
    writeFileSync(
      join(dir, 'switchyard.yaml'),
      stringify({
        server: { host: '127.0.0.1', port: 0 },
        log: { level: 'error' },
        auth: { secret: { file: 'secret.txt' } },
        tenants: {
          budget: {
            keys: [{ id: 'k', hash: hashKey(key, secret) }],
            models: ['*'],
            quotas: { spend_per_day: plan.budget },
          },
        },
        models: {
          chat: {
            backend: 'openai',
            url: `${upstream.url}/v1`,
            cost: { per_call: 1 },
            retry: { max_attempts: 1 },
          },
        },
        admission: {
          limiter: { store: 'redis', url: redis.url, prefix, command_timeout_ms: 50 },
        },
      }),
    );
    const gw = await startPinnedGateway(ctx.root, {
      name: 'gateway',
      core: 0,
      config: join(dir, 'switchyard.yaml'),
    });
    const metric = async (name: string): Promise<number> => {
      const text = await (await fetch(`${gw.url}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(`${name} `));
      return line === undefined ? 0 : Number(line.split(' ')[1]);
    };
    try {
      const since = Date.now();
      ctx.log(
        `budget ${plan.budget} calls, ${RATE} calls/s offered for ${plan.durationMs / 1000} s, ` +
          `Redis SIGSTOPped at ${plan.stopAtMs / 1000} s for ${plan.stopForMs / 1000} s`,
      );
      const stop = setTimeout(() => redis.signal('SIGSTOP'), plan.stopAtMs);
      const wake = setTimeout(() => redis.signal('SIGCONT'), plan.stopAtMs + plan.stopForMs);
      const samples = await runOpenLoop({
        origin: gw.url,
        path: '/v1/chat/completions',
        durationMs: plan.durationMs,
        connections: 32,
        timeoutMs: 5_000,
        random: seededRandom(13),
        classes: [
          {
            name: 'budget',
            ratePerS: RATE,
            headers: { authorization: `Bearer ${key}` },
            body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] }),
          },
        ],
      });
      clearTimeout(stop);
      clearTimeout(wake);
      redis.signal('SIGCONT');
      // The write-back follows Redis's return within a probe or two.
      for (let i = 0; i < 100; i++) {
        const written = await metric('switchyard_limiter_writeback_total{result="written"}');
        if ((await metric('switchyard_limiter_shared')) === 1 && written > 0) break;
        await sleep(100);
      }
      let inRedis = 0;
      for (let b = Math.floor(since / DAY_MS) * DAY_MS; b <= Date.now(); b += DAY_MS)
        inRedis += Number((await store.get(`${prefix}t:budget:spend:day:${b}`)) ?? 0) / MICROS;
      const admitted = samples.filter((s) => s.status === 200).length;
      const refused = samples.filter((s) => s.status === 429).length;
      const during = samples.filter(
        (s) => s.at >= plan.stopAtMs && s.at < plan.stopAtMs + plan.stopForMs,
      );
      const answered = during.filter((s) => s.status === 200 || s.status === 429).length;
      const latencies = during.map((s) => s.latencyMs).sort((a, b) => a - b);
      const detail = {
        offered: samples.length,
        admitted,
        refused_429: refused,
        other: samples.length - admitted - refused,
        budget: plan.budget,
        in_redis: inRedis,
        local_decisions: await metric('switchyard_limiter_local_fallback_total'),
        write_backs: await metric('switchyard_limiter_writeback_total{result="written"}'),
        timed_out_ran_late: await metric(
          'switchyard_limiter_timed_out_commands_total{outcome="ran_late"}',
        ),
      };
      ctx.log(JSON.stringify(detail));
      const targets: FaultTargetResult[] = [
        {
          name: `calls admitted against a budget of ${plan.budget}, Redis SIGSTOPped ${plan.stopForMs / 1000} s mid-run`,
          target: `<= budget × 1.05 (${Math.floor(plan.budget * 1.05)})`,
          value: `${admitted} (${(admitted / plan.budget).toFixed(3)} × budget)`,
          pass: admitted <= plan.budget * 1.05,
          detail,
        },
        {
          name: 'admitted calls counted in Redis after the outage (written back, once)',
          target: `= admitted (${admitted})`,
          value: `${inRedis}`,
          pass: inRedis === admitted,
        },
        {
          name: 'calls sent while Redis was frozen answered 200 or 429 (none failed or hung)',
          target: '100%',
          value: `${pct(answered, during.length)}`,
          pass: answered === during.length,
          // Latency from the scheduled send; the simulated upstream and the load generator
          // share this process, so on a busy machine it measures the machine too.
          detail: {
            calls: during.length,
            p99_ms: Math.round(percentile(latencies, 99)),
            max_ms: Math.round(latencies.at(-1) ?? 0),
          },
        },
      ];
      return targets;
    } finally {
      redis.signal('SIGCONT');
      await gw.stop();
      store.disconnect();
      await redis.stop();
      await upstream.close();
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
