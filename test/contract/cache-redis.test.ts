import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { events, subscribe } from '../../src/core/events.js';
import { RedisCache } from '../../src/state/cache-redis.js';
import { openRedis, redisReady } from '../../src/state/redis.js';
import { freePort, sharedRedisOrSkip } from '../support/redis-server.js';
import { cacheContract } from './cache.contract.js';

const SHARED = 'redis://127.0.0.1:6379';
const run = randomBytes(4).toString('hex');
let n = 0;

function clock() {
  let t = 1_700_000_000_000;
  return { now: () => t, wall: () => t, advance: (ms: number) => void (t += ms) };
}

const up = await sharedRedisOrSkip('the Redis cache contract');

const opened: RedisCache[] = [];
afterAll(async () => {
  for (const c of opened) {
    await c.clearTenant('acme').catch(() => 0);
    await c.clearTenant('globex').catch(() => 0);
    await c.close();
  }
});

/** A cache on the shared Redis under a prefix of its own (parallel files never meet). */
async function shared(prefix = `sy:test:${run}:${n++}:`, c = clock()) {
  const redis = openRedis({ url: SHARED, commandTimeoutMs: 500, name: 'cache test' });
  await redisReady(redis, 2_000);
  const cache = new RedisCache({ redis, prefix, clock: c });
  opened.push(cache);
  return { cache, clock: c };
}

if (up) cacheContract('RedisCache', () => shared());

describe.runIf(up)('RedisCache', () => {
  it('shares entries between two clients on one prefix (two replicas), per tenant', async () => {
    const prefix = `sy:test:${run}:${n++}:`;
    const c = clock();
    const one = (await shared(prefix, c)).cache;
    const two = (await shared(prefix, c)).cache;
    const s = { tenant: 'acme', namespace: 'j' };
    await one.set(s, 'k', { answer: 42 }, { ttlMs: 1000, staleMs: 0, vector: [1, 0] });
    expect((await two.get(s, 'k'))?.entry.value).toEqual({ answer: 42 });
    expect((await two.nearest(s, [1, 0.01], { threshold: 0.9 })).hit?.key).toBe('k');
    expect(await two.get({ tenant: 'globex', namespace: 'j' }, 'k')).toBeUndefined();
    // Another prefix is another cache (`cache.prefix`).
    const three = (await shared(`${prefix}other:`, c)).cache;
    expect(await three.get(s, 'k')).toBeUndefined();
  });

  it('keeps a tenant whose name looks like a key path apart from the tenant it imitates', async () => {
    const { cache } = await shared();
    await cache.set(
      { tenant: 'acme', namespace: 'j:k' },
      'x',
      { v: 1 },
      { ttlMs: 1000, staleMs: 0 },
    );
    expect(await cache.get({ tenant: 'acme:j', namespace: 'k' }, 'x')).toBeUndefined();
    expect(await cache.clearTenant('acm*')).toBe(0);
    expect(await cache.get({ tenant: 'acme', namespace: 'j:k' }, 'x')).toBeDefined();
  });
});

describe('RedisCache when Redis is unreachable', () => {
  it('answers misses and swallows writes at once, counting each failure', async () => {
    const port = await freePort(); // nothing listens here
    const redis = openRedis({
      url: `redis://127.0.0.1:${port}`,
      commandTimeoutMs: 50,
      name: 'dead cache',
    });
    const errors: string[] = [];
    const seen: string[] = [];
    const off = subscribe(events.cacheStoreError, (e) => seen.push(e.op));
    const cache = new RedisCache({
      redis,
      prefix: 'sy:dead:',
      clock: clock(),
      onError: (op) => errors.push(op),
    });
    try {
      const s = { tenant: 'acme', namespace: 'j' };
      const t0 = performance.now();
      await cache.set(s, 'k', { v: 1 }, { ttlMs: 1000, staleMs: 0, vector: [1] });
      expect(await cache.get(s, 'k')).toBeUndefined();
      expect(await cache.nearest(s, [1], { threshold: 0.5 })).toEqual({
        hit: undefined,
        best: undefined,
      });
      expect(performance.now() - t0).toBeLessThan(500);
      expect(errors).toEqual(['set', 'get', 'nearest']);
      expect(seen).toEqual(['set', 'get', 'nearest']);
      // Control-plane work fails loudly instead.
      await expect(cache.clearTenant('acme')).rejects.toThrow();
    } finally {
      off();
      redis.disconnect();
    }
  });
});
