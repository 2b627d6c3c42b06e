import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { sharedRedisOrSkip } from '../support/redis-server.js';
import { CachedFeatureStore } from '../../src/features/cached-feature-store.js';
import { RedisFeatureStore } from '../../src/features/redis-feature-store.js';
import { featureSourceContract, ManualClock, TEST_DEFINITIONS } from './feature-source.contract.js';

const REDIS = { host: '127.0.0.1', port: 6379 };

const up = await sharedRedisOrSkip('the Redis feature store contract');
const run = randomBytes(4).toString('hex');
let n = 0;
/** A Redis feature store on a prefix of its own; with `cache`, behind the local cache (#17). */
function redisContract(name: string, cache: boolean): void {
  featureSourceContract(
    name,
    async (definitions, clock, limits) => {
      const prefix = `sy-test:feat:${run}:${n++}:`;
      const redis = new RedisFeatureStore({
        url: `redis://${REDIS.host}:${REDIS.port}`,
        prefix,
        definitions,
        clock,
        commandTimeoutMs: 1_000,
        ...limits,
      });
      if (!(await redis.ready(2_000))) throw new Error('Redis did not become ready');
      const store = cache
        ? new CachedFeatureStore(
            redis,
            {
              ttl_ms: 60_000,
              stale_ms: 60_000,
              max_entries: 1_000,
              labels: ['public', 'consented', 'sensitive', 'restricted'],
            },
            clock,
          )
        : redis;
      return {
        store,
        close: async () => {
          await cleanup(prefix);
          await store.close();
        },
      };
    },
    up ? false : 'no Redis at 127.0.0.1:6379',
  );
}
redisContract('Redis', false);
// The cache must keep every promise of the contract (writes read back at once, purges, TTLs,
// caps): it only answers from memory what the store would answer.
redisContract('Redis behind a local cache (features.store.cache)', true);

/** Deletes the run's keys so repeated runs leave nothing behind. */
async function cleanup(prefix: string): Promise<void> {
  const { Redis } = await import('ioredis');
  const r = new Redis(`redis://${REDIS.host}:${REDIS.port}`, { maxRetriesPerRequest: 0 });
  try {
    const keys = await r.keys(`${prefix}*`);
    if (keys.length > 0) await r.del(...keys);
  } finally {
    r.disconnect();
  }
}

describe.skipIf(!up)('the Redis feature store keys', () => {
  it('expire with the longest TTL when every feature of the entity type has one, and never otherwise', async () => {
    const prefix = `sy-test:feat:${run}:ttl:`;
    const store = new RedisFeatureStore({
      url: `redis://${REDIS.host}:${REDIS.port}`,
      prefix,
      definitions: TEST_DEFINITIONS,
      clock: new ManualClock(),
      commandTimeoutMs: 1_000,
    });
    const { Redis } = await import('ioredis');
    const r = new Redis(`redis://${REDIS.host}:${REDIS.port}`);
    try {
      await store.ready(2_000);
      await store.write('acme', [
        { entityId: 's1', feature: 'session.score', value: 0.5, userId: 'u1' },
        { entityId: 'u1', feature: 'user.tier', value: 'gold' },
      ]);
      const sessionTtl = await r.pttl(`${prefix}e:acme:s1`);
      expect(sessionTtl).toBeGreaterThan(0);
      expect(sessionTtl).toBeLessThanOrEqual(60_000);
      expect(await r.pttl(`${prefix}e:acme:u1`)).toBe(-1);
    } finally {
      await cleanup(prefix);
      r.disconnect();
      await store.close();
    }
  });
});

describe.skipIf(!up)('the Redis feature store count of a tenant’s values', () => {
  it('stays exact when Redis expires a whole hash before the store sees it (#13)', async () => {
    const prefix = `sy-test:feat:${run}:expiry:`;
    const clock = new ManualClock();
    const store = new RedisFeatureStore({
      url: `redis://${REDIS.host}:${REDIS.port}`,
      prefix,
      definitions: TEST_DEFINITIONS,
      clock,
      commandTimeoutMs: 1_000,
      maxValuesPerTenant: 2,
    });
    const { Redis } = await import('ioredis');
    const r = new Redis(`redis://${REDIS.host}:${REDIS.port}`);
    const session = { entityId: 's1', feature: 'session.score', value: 0.5, userId: 'u1' };
    try {
      await store.ready(2_000);
      await store.write('acme', [session, { entityId: 'u1', feature: 'user.tier', value: 'gold' }]);
      expect(await store.stored('acme')).toBe(2);
      // Redis drops the session hash on its PEXPIRE, unseen; the value written again is one.
      await r.del(`${prefix}e:acme:s1`);
      await store.write('acme', [session]);
      expect(await store.stored('acme')).toBe(2);
      // Dropped again and never written since: its room comes back once its time has passed.
      await r.del(`${prefix}e:acme:s1`);
      await expect(
        store.write('acme', [{ entityId: 'u2', feature: 'user.tier', value: 'gold' }]),
      ).rejects.toMatchObject({ code: 'SY_ERR_TENANT_STORAGE_FULL' });
      clock.advance(60_000);
      expect(await store.stored('acme')).toBe(1);
      await store.write('acme', [{ entityId: 'u2', feature: 'user.tier', value: 'gold' }]);
      expect(await store.stored('acme')).toBe(2);
    } finally {
      await cleanup(prefix);
      r.disconnect();
      await store.close();
    }
  });
});
