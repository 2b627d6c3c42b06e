import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from 'undici';
import { generateKey } from '../../src/core/api-key.js';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import { pinTwoWorkers, poolCall, workersBaseConfig } from '../support/worker-pools.js';
import { redisServerOrSkip, startRedisServer, type PrivateRedis } from '../support/redis-server.js';

/**
 * #17, edge nodes: each worker of `serve --workers 2` keeps its own cache of the Redis feature
 * store (`features.store.cache`). A revocation made through one worker purges Redis there and
 * reaches the other over the cluster's IPC only (no consent store here): the other worker must
 * drop its cached copies of the user's values at once, not after `ttl_ms`.
 */
describe.runIf(redisServerOrSkip('the workers + feature cache test'))(
  'serve --workers 2 with a cached Redis feature store (#17)',
  () => {
    let gw: ProcessGateway;
    let redis: PrivateRedis;
    const adminKey = generateKey('sk');
    const pools: Pool[] = [];

    beforeAll(async () => {
      redis = await startRedisServer();
      gw = await startProcessGateway({
        args: ['--workers', '2'],
        config: {
          ...workersBaseConfig(adminKey),
          features: {
            store: { kind: 'redis', url: redis.url, cache: { ttl_ms: 600_000 } },
            definitions: {
              'user.tier': {
                entity: 'user',
                type: 'string',
                label: 'public',
                lineage: { source: 'test', transformation: 'identity' },
              },
            },
          },
        },
      });
    }, 60_000);

    afterAll(async () => {
      for (const p of pools) await p.destroy().catch(() => undefined);
      await gw?.close();
      await redis?.stop();
    });

    const call = (pool: Pool, method: 'GET' | 'PUT' | 'POST', path: string, body?: unknown) =>
      poolCall(pool, method, path, adminKey, body);
    const pinTwo = () => pinTwoWorkers(gw.url, adminKey, pools);

    it("drops the other worker's cached values of a user who revoked, every time", async () => {
      const [a, b] = await pinTwo();
      const tier = async (pool: Pool, user: string) => {
        const r = await call(pool, 'GET', `/v1/features/${user}?names=user.tier`);
        expect(r.status).toBe(200);
        const f = (JSON.parse(r.text) as { features: Record<string, { value: string }> }).features;
        return f['user.tier']?.value;
      };
      for (let i = 0; i < 5; i++) {
        const user = `rider-${i}`;
        const granted = await call(a, 'PUT', `/v1/consent/${user}`, {
          purposes: { behavioral_inference: true },
        });
        expect(granted.status).toBe(200);
        const write = (value: string) =>
          call(a, 'POST', '/v1/features', {
            writes: [{ entity_id: user, feature: 'user.tier', value }],
          });
        expect((await write('gold')).status).toBe(200);
        expect(await tier(b, user)).toBe('gold');
        // Written through the other worker: this one keeps its copy (ttl_ms is ten minutes).
        expect((await write('basic')).status).toBe(200);
        expect(await tier(a, user)).toBe('basic');
        expect(await tier(b, user)).toBe('gold');
        const revoked = await call(a, 'POST', `/v1/consent/${user}/revoke`, {
          purposes: ['behavioral_inference'],
        });
        expect(revoked.status).toBe(200);
        // Nothing is granted any more, so Redis holds nothing of the user; the other worker
        // applied the change before the revocation answered, so its cached 'gold' is gone too.
        expect(await tier(b, user), `round ${i}`).toBeUndefined();
      }
    }, 60_000);
  },
);
