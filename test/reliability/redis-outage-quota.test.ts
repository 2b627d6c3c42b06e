import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { openaiModel, TEST_SECRET } from '../support/gateway.js';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import { redisServerOrSkip, startRedisServer, type PrivateRedis } from '../support/redis-server.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * Issue #13, finding 5: quota usage lost across a Redis outage. The built gateway runs as a
 * child process, its quota limiter on a private redis-server that this test freezes (SIGSTOP)
 * and wakes (SIGCONT) while requests flow. A daily spend budget of 100 calls admitted 199: the
 * calls counted locally were never written back, reservations that timed out but ran late were
 * counted twice, every switch granted a fresh burst, and the "shared" gauge read 0 from start-up.
 */
const DAY_MS = 86_400_000;
const MICROS = 1_000_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const run = redisServerOrSkip('the Redis outage quota test') ? describe : describe.skip;

run('quota usage across a Redis outage (issue #13, real processes)', () => {
  let redis: PrivateRedis;
  let store: Redis;
  let up: TestUpstream;
  let gw: ProcessGateway;
  const prefix = `sy-rel:${randomBytes(4).toString('hex')}:`;
  const keys = {
    budget: generateKey('sk'),
    inflight: generateKey('sk'),
    rate: generateKey('sk'),
  };

  beforeAll(async () => {
    redis = await startRedisServer();
    store = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await store.connect();
    up = await startUpstream(json(200, chatCompletion()));
    const tenant = (key: string, quotas: Record<string, unknown>) => ({
      keys: [{ id: 'k', hash: hashKey(key, TEST_SECRET) }],
      models: ['*'],
      quotas,
    });
    gw = await startProcessGateway({
      config: {
        tenants: {
          // Every call costs 1 (per_call): a budget of 100 is 100 calls.
          budget: tenant(keys.budget, { spend_per_day: 100 }),
          inflight: tenant(keys.inflight, { spend_per_day: 1_000_000 }),
          // A burst of 20, refilled at one request every 3 s.
          rate: tenant(keys.rate, { window_s: 60, requests: 20 }),
        },
        models: { chat: openaiModel(up.url, { cost: { per_call: 1 } }) },
        admission: {
          limiter: {
            store: 'redis',
            url: redis.url,
            prefix,
            command_timeout_ms: 50,
            probe_ms: 100,
            local_share: 1,
          },
        },
      },
    });
  });

  afterAll(async () => {
    await gw?.close();
    store?.disconnect();
    await redis?.stop();
    await up?.close();
  });

  const call = async (key: string): Promise<number> => {
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'chat', messages: [{ role: 'user', content: 'hi' }] }),
    });
    await res.body.text();
    return res.statusCode;
  };

  /** `n` clients calling back to back until `until` resolves; every status seen. */
  const flow = async (key: string, n: number, until: Promise<unknown>): Promise<number[]> => {
    const out: number[] = [];
    let done = false;
    void until.then(() => (done = true));
    const client = async (): Promise<void> => {
      while (!done) out.push(await call(key));
    };
    await Promise.all(Array.from({ length: n }, client));
    return out;
  };

  const metric = async (name: string): Promise<number> => {
    const res = await request(`${gw.url}/metrics`);
    const text = await res.body.text();
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return line === undefined ? 0 : Number(line.split(' ')[1]);
  };

  /** Waits until the gateway counts in Redis again and has written back `writeBacks` outages. */
  const caughtUp = async (writeBacks: number): Promise<void> => {
    for (let i = 0; i < 200; i++) {
      const written = await metric('switchyard_limiter_writeback_total{result="written"}');
      if ((await metric('switchyard_limiter_shared')) === 1 && written >= writeBacks) return;
      await sleep(50);
    }
    throw new Error('the gateway did not write back and resume shared counting');
  };

  /** What Redis holds for a tenant's daily spend (today's bucket, and yesterday's near midnight). */
  const spentInRedis = async (tenant: string, since: number): Promise<number> => {
    let sum = 0;
    const first = Math.floor(since / DAY_MS) * DAY_MS;
    for (let b = first; b <= Date.now(); b += DAY_MS)
      sum += Number((await store.get(`${prefix}t:${tenant}:spend:day:${b}`)) ?? 0);
    return sum;
  };

  let writeBacks = 0;

  it('reports quotas as counted in Redis from start-up, before any outage', async () => {
    expect(await metric('switchyard_limiter_shared')).toBe(1);
  });

  it('admits no more than a daily spend budget when Redis freezes mid-run, and writes the local usage back', async () => {
    const since = Date.now();
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push(await call(keys.budget));
    expect(statuses.every((s) => s === 200)).toBe(true);
    const frozen = flow(keys.budget, 4, sleep(1_500));
    redis.signal('SIGSTOP');
    statuses.push(...(await frozen));
    expect(await metric('switchyard_limiter_shared')).toBe(0);
    redis.signal('SIGCONT');
    await caughtUp(++writeBacks);
    // Then on until the budget is plainly spent, however slow the machine.
    for (let refused = 0, i = 0; refused < 20 && i < 300; i++) {
      const s = await call(keys.budget);
      statuses.push(s);
      if (s === 429) refused++;
    }
    const admitted = statuses.filter((s) => s === 200).length;
    console.info(`budget 100: ${admitted} admitted of ${statuses.length}`);
    expect(new Set(statuses)).toEqual(new Set([200, 429]));
    expect(admitted).toBeLessThanOrEqual(105);
    expect(admitted).toBeGreaterThanOrEqual(95);
    // Every admitted call is in Redis, once: the local ones were written back.
    expect(await spentInRedis('budget', since)).toBe(admitted * MICROS);
    await expect
      .poll(() => gw.output(), { timeout: 5_000 })
      .toContain('wrote back usage counted locally while Redis was away');
  });

  it('counts a reservation whose command timed out and ran late in Redis once', async () => {
    const since = Date.now();
    const ranLate = await metric('switchyard_limiter_timed_out_commands_total{outcome="ran_late"}');
    const statuses = flow(keys.inflight, 16, sleep(1_500));
    await sleep(300);
    redis.signal('SIGSTOP');
    await sleep(500);
    redis.signal('SIGCONT');
    const all = await statuses;
    await caughtUp(++writeBacks);
    const admitted = all.filter((s) => s === 200).length;
    console.info(`in flight: ${admitted} admitted of ${all.length}`);
    expect(all.every((s) => s === 200)).toBe(true);
    expect(await spentInRedis('inflight', since)).toBe(admitted * MICROS);
    // It was put to the test: commands sent into the frozen Redis timed out, were counted
    // locally, and then ran late.
    expect(
      await metric('switchyard_limiter_timed_out_commands_total{outcome="ran_late"}'),
    ).toBeGreaterThan(ranLate);
  });

  it('grants no fresh burst at the switches between Redis and local counting', async () => {
    const t0 = Date.now();
    let stop!: () => void;
    const statuses = flow(keys.rate, 4, new Promise<void>((r) => (stop = r)));
    for (let i = 0; i < 3; i++) {
      await sleep(200);
      redis.signal('SIGSTOP');
      await sleep(400);
      redis.signal('SIGCONT');
      await caughtUp(++writeBacks);
    }
    await sleep(200);
    stop();
    const all = await statuses;
    const admitted = all.filter((s) => s === 200).length;
    const refill = Math.ceil((Date.now() - t0) / 3_000);
    console.info(`rate 20/min: ${admitted} admitted of ${all.length} over 3 outages`);
    expect(new Set(all)).toEqual(new Set([200, 429]));
    expect(admitted).toBeLessThanOrEqual(20 + refill + 1);
  });
});
