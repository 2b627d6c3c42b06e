import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../../src/core/api-key.js';
import { baseConfig, openaiModel, startTestGateway, TEST_SECRET } from '../support/gateway.js';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import {
  freePort,
  sharedRedisOrSkip,
  redisServerOrSkip,
  startRedisServer,
  type PrivateRedis,
} from '../support/redis-server.js';
import { chatCompletion, json, startUpstream, type TestUpstream } from '../support/upstream.js';

// #17 item 4: the journeys' response cache in Redis, shared by replicas, isolated per tenant,
// failing open when Redis is away.
const up = await sharedRedisOrSkip('the shared response cache tests');

const ASK = {
  class: 'interactive',
  stages: [
    { id: 'cache', cache: { ttl_ms: 60_000 } },
    { id: 'answer', infer: { model: 'central', prompt: 'input.text' } },
    { id: 'out', respond: { body: { answer: 'answer.text' } } },
  ],
};

interface Answer {
  readonly status: number;
  readonly route: string;
  readonly body: Record<string, unknown>;
}

async function ask(url: string, key: string, text: string): Promise<Answer> {
  const res = await fetch(`${url}/v1/journeys/ask`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ input: { text } }),
  });
  return {
    status: res.status,
    route: res.headers.get('x-switchyard-route') ?? '',
    body: (await res.json()) as Record<string, unknown>,
  };
}

describe.runIf(up)('the shared response cache (two gateway processes, one Redis)', () => {
  const acme = generateKey('sk');
  const globex = generateKey('sk');
  const prefix = `sy:test:${randomBytes(4).toString('hex')}:`;
  let upstream: TestUpstream;
  let a: ProcessGateway;
  let b: ProcessGateway;

  const config = (cache: Record<string, unknown>): Record<string, unknown> => ({
    tenants: {
      acme: { keys: [{ id: 'a', hash: hashKey(acme, TEST_SECRET) }], models: ['*'] },
      globex: { keys: [{ id: 'g', hash: hashKey(globex, TEST_SECRET) }], models: ['*'] },
    },
    models: { central: openaiModel(upstream.url, { upstream_model: 'large' }) },
    journeys: { ask: ASK },
    cache,
  });

  beforeAll(async () => {
    upstream = await startUpstream(json(200, chatCompletion('the answer is 42')));
    const cache = { store: 'redis', url: 'redis://127.0.0.1:6379', prefix };
    [a, b] = await Promise.all([
      startProcessGateway({ config: config(cache) }),
      startProcessGateway({ config: config(cache) }),
    ]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close(), upstream?.close()]);
  });

  it('serves at one replica the answer another replica cached, to the same tenant only', async () => {
    const text = `what is the answer ${prefix}`;
    const first = await ask(a.url, acme, text);
    expect(first.status).toBe(200);
    expect(first.route).toMatch(/^cache=miss/);
    expect(upstream.calls.length).toBe(1);
    const second = await ask(b.url, acme, text);
    expect(second.status).toBe(200);
    expect(second.route).toMatch(/^cache=hit/);
    expect(second.body['output']).toEqual(first.body['output']);
    expect(upstream.calls.length).toBe(1);
    // Another tenant asking the same never sees it (the entry is in the one shared Redis, so
    // one replica stands for both; a second ask would hit globex's own, written meanwhile).
    expect((await ask(a.url, globex, text)).route).toMatch(/^cache=miss/);
    expect(upstream.calls.length).toBe(2);
  });

  it('keeps replicas with another cache.prefix apart', async () => {
    const text = `a question for the prefix test ${prefix}`;
    expect((await ask(a.url, acme, text)).route).toMatch(/^cache=miss/);
    const c = await startProcessGateway({
      config: config({ store: 'redis', url: 'redis://127.0.0.1:6379', prefix: `${prefix}x:` }),
    });
    try {
      expect((await ask(c.url, acme, text)).route).toMatch(/^cache=miss/);
      expect((await ask(b.url, acme, text)).route).toMatch(/^cache=hit/);
    } finally {
      await c.close();
    }
  });
});

describe('the Redis response cache when Redis is unreachable', () => {
  let upstream: TestUpstream;
  beforeAll(async () => {
    upstream = await startUpstream(json(200, chatCompletion('fresh')));
  });
  afterAll(() => upstream.close());

  it('answers every request from the model, counts the failures and logs a warning', async () => {
    const dead = await freePort();
    const key = generateKey('sk');
    const gw = await startTestGateway({
      config: {
        ...baseConfig(hashKey(key, TEST_SECRET)),
        models: { central: openaiModel(upstream.url, { upstream_model: 'large' }) },
        journeys: { ask: ASK },
        cache: { store: 'redis', url: `redis://127.0.0.1:${dead}`, command_timeout_ms: 50 },
      },
    });
    try {
      for (let i = 0; i < 3; i++) {
        const t0 = performance.now();
        const r = await ask(gw.url, key, 'same question');
        expect(r.status).toBe(200);
        expect(r.route).toMatch(/^cache=miss/);
        expect(performance.now() - t0).toBeLessThan(1_000);
      }
      expect(upstream.calls.length).toBe(3);
      const metrics = await gw.gateway.metrics.render();
      expect(metrics).toMatch(/switchyard_cache_store_errors_total\{op="get"\} 3/);
      expect(metrics).toMatch(/switchyard_cache_store_errors_total\{op="set"\} 3/);
      expect(
        gw.logs.some((l) => String(l['msg']).startsWith('response cache: Redis unavailable')),
      ).toBe(true);
    } finally {
      await gw.close();
    }
  });
});

describe.runIf(redisServerOrSkip('the frozen-Redis response cache test'))(
  'the Redis response cache when Redis freezes (cache.command_timeout_ms)',
  () => {
    let upstream: TestUpstream;
    let redis: PrivateRedis;
    beforeAll(async () => {
      upstream = await startUpstream(json(200, chatCompletion('fresh')));
      redis = await startRedisServer();
    });
    afterAll(async () => {
      await redis?.stop();
      await upstream?.close();
    });

    /** The slowest of three journey requests against a frozen Redis, with this timeout. */
    async function slowest(timeoutMs: number): Promise<number> {
      const key = generateKey('sk');
      const gw = await startTestGateway({
        config: {
          ...baseConfig(hashKey(key, TEST_SECRET)),
          models: { central: openaiModel(upstream.url, { upstream_model: 'large' }) },
          journeys: { ask: ASK },
          cache: { store: 'redis', url: redis.url, command_timeout_ms: timeoutMs },
        },
      });
      try {
        // Connected first, so the commands wait on a live socket to a stopped server.
        expect((await ask(gw.url, key, 'warm up')).status).toBe(200);
        redis.signal('SIGSTOP');
        let worst = 0;
        for (let i = 0; i < 3; i++) {
          const t0 = performance.now();
          const r = await ask(gw.url, key, `frozen ${i}`);
          worst = Math.max(worst, performance.now() - t0);
          expect(r.status).toBe(200);
          expect(r.route).toMatch(/^cache=miss/);
        }
        return worst;
      } finally {
        redis.signal('SIGCONT');
        await gw.close();
      }
    }

    it('gives up on each command after the timeout and answers from the model', async () => {
      expect(await slowest(50)).toBeLessThan(800);
      // The knob acts: a long timeout makes every lookup wait for it.
      expect(await slowest(1_500)).toBeGreaterThanOrEqual(1_400);
    }, 30_000);
  },
);
