import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from 'undici';
import { generateKey } from '../../src/core/api-key.js';
import { startProcessGateway, type ProcessGateway } from '../support/gateway-process.js';
import {
  pinRestartedWorker,
  pinTwoWorkers,
  poolCall,
  workerPid,
  workersBaseConfig,
} from '../support/worker-pools.js';
import { redisServerOrSkip, startRedisServer, type PrivateRedis } from '../support/redis-server.js';

/**
 * #17 part 5 with the consent records in Redis: a revocation made through one worker reaches the
 * other twice, over the cluster's IPC and over Redis, in either order. Whichever comes first, the
 * other worker must purge the feature values it holds in process (a review found the Redis copy,
 * when first, made the IPC handler see no revocation and skip the purge). A worker restarted while
 * Redis is away cannot load the records: it copies them from the worker that is up.
 */
const ROUNDS = 12;

describe.runIf(redisServerOrSkip('the workers + Redis consent test'))(
  'serve --workers 2 with privacy.consent_redis (#17)',
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
          privacy: { consent_redis: { url: redis.url, command_timeout_ms: 2_000 } },
          features: {
            definitions: {
              'user.rides_7d': {
                entity: 'user',
                type: 'int',
                label: 'consented',
                purpose: 'behavioral_inference',
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

    it("purges a worker's own feature values on a revocation through the other, every time", async () => {
      const [a, b] = await pinTwo();
      const stored = async (): Promise<number> => {
        const line = (await call(a, 'GET', '/metrics')).text
          .split('\n')
          .find((l) =>
            l.startsWith('switchyard_tenant_stored{kind="feature_values",tenant="acme"}'),
          );
        return Number(line?.split(' ').pop() ?? 0);
      };
      for (let i = 0; i < ROUNDS; i++) {
        const user = `rider-${i}`;
        const granted = await call(a, 'PUT', `/v1/consent/${user}`, {
          purposes: { behavioral_inference: true },
        });
        expect(granted.status).toBe(200);
        const wrote = await call(a, 'POST', '/v1/features', {
          writes: [{ entity_id: user, feature: 'user.rides_7d', value: 5 }],
        });
        expect(wrote.status).toBe(200);
        expect(await stored()).toBe(1);
        const revoked = await call(b, 'POST', `/v1/consent/${user}/revoke`, {
          purposes: ['behavioral_inference'],
        });
        expect(revoked.status).toBe(200);
        // The purge may come from the Redis copy just after the answer: wait for it, bounded.
        let left = await stored();
        for (let t = 0; t < 50 && left !== 0; t++) {
          await new Promise((r) => setTimeout(r, 20));
          left = await stored();
        }
        expect(left, `round ${i}`).toBe(0);
      }
    }, 60_000);

    it('enforces, in a worker restarted after kill -9 while Redis is away, the revocations the other worker enforces', async () => {
      const [a, b] = await pinTwo();
      const [pidA, pidB] = [await workerPid(a, adminKey), await workerPid(b, adminKey)];
      const granted = await call(a, 'PUT', '/v1/consent/frozen-1', {
        purposes: { location: true, behavioral_inference: true },
      });
      expect(granted.status).toBe(200);
      const revoked = await call(b, 'POST', '/v1/consent/frozen-1/revoke', {
        purposes: ['location'],
      });
      expect(revoked.status).toBe(200);
      // The restarted worker cannot load the records from Redis (it uses the defaults until
      // Redis answers): only the copy from the worker that stayed up has the revocation.
      redis.signal('SIGSTOP');
      try {
        process.kill(pidA, 'SIGKILL');
        const restarted = await pinRestartedWorker(gw.url, adminKey, pools, [pidA, pidB]);
        expect(restarted, 'the killed worker was not restarted').toBeDefined();
        const seen = await call(restarted!, 'GET', '/v1/consent/frozen-1');
        expect(seen.status).toBe(200);
        expect(seen.body['purposes']).toMatchObject({
          location: false,
          behavioral_inference: true,
        });
        expect(seen.body['version']).toBe(2);
      } finally {
        redis.signal('SIGCONT');
      }
    }, 60_000);
  },
);
