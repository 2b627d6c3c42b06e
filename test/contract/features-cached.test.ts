import { randomBytes } from 'node:crypto';
import { createConnection } from 'node:net';
import { describe } from 'vitest';
import { CachedFeatureStore } from '../../src/features/cached-feature-store.js';
import { RedisFeatureStore } from '../../src/features/redis-feature-store.js';
import { featureSourceContract } from './feature-source.contract.js';

const REDIS = { host: '127.0.0.1', port: 6379 };

function redisUp(): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(REDIS);
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

const up = await redisUp();
if (!up && process.env['CI'] === 'true') {
  describe('FeatureSource contract: Redis behind a local cache', () => {
    throw new Error('Redis is unreachable at 127.0.0.1:6379 and CI=true');
  });
} else if (!up) console.warn('skipping the cached Redis feature store contract: no Redis');

const run = randomBytes(4).toString('hex');
let n = 0;
// The cache must keep every promise of the contract (writes read back at once, purges, TTLs,
// caps): it only answers from memory what the store would answer.
featureSourceContract(
  'Redis behind a local cache (features.store.cache)',
  async (definitions, clock, limits) => {
    const prefix = `sy-test:featc:${run}:${n++}:`;
    const redis = new RedisFeatureStore({
      url: `redis://${REDIS.host}:${REDIS.port}`,
      prefix,
      definitions,
      clock,
      commandTimeoutMs: 1_000,
      ...limits,
    });
    if (!(await redis.ready(2_000))) throw new Error('Redis did not become ready');
    const store = new CachedFeatureStore(
      redis,
      {
        ttl_ms: 60_000,
        stale_ms: 60_000,
        max_entries: 1_000,
        labels: ['public', 'consented', 'sensitive', 'restricted'],
      },
      clock,
    );
    return {
      store,
      close: async () => {
        const { Redis } = await import('ioredis');
        const r = new Redis(`redis://${REDIS.host}:${REDIS.port}`, { maxRetriesPerRequest: 0 });
        try {
          const keys = await r.keys(`${prefix}*`);
          if (keys.length > 0) await r.del(...keys);
        } finally {
          r.disconnect();
        }
        await store.close();
      },
    };
  },
  up ? false : 'no Redis at 127.0.0.1:6379',
);
