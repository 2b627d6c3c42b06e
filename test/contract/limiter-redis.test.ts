import { randomBytes } from 'node:crypto';
import { afterAll, describe, it } from 'vitest';
import { RedisLimiter } from '../../src/admission/redis-limiter.js';
import { createLogger } from '../../src/observability/logger.js';
import {
  pingRedis,
  redisServerOrSkip,
  startRedisServer,
  type PrivateRedis,
} from '../support/redis-server.js';
import { limiterContract, type ManualClock, type SharedStoreOutage } from './limiter.contract.js';

const REDIS = { host: '127.0.0.1', port: 6379 };

const run = randomBytes(4).toString('hex');
let n = 0;
const limiterOn = (url: string, clock: ManualClock): RedisLimiter =>
  new RedisLimiter({
    url,
    prefix: `sy-test:${run}:${n++}:`,
    commandTimeoutMs: 1_000,
    probeMs: 200,
    localShare: 1,
    clock,
    logger: createLogger('silent'),
  });

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The outage half of the contract runs on a private redis-server (never the shared one on 6379,
 * which other tests use): SIGSTOP freezes it the way a stalled Redis does.
 */
async function privateOutage(): Promise<SharedStoreOutage> {
  const server: PrivateRedis = await startRedisServer();
  afterAll(() => server.stop());
  return {
    freeze: () => server.signal('SIGSTOP'),
    thaw: () => server.signal('SIGCONT'),
    replicas: async (clock, count, localShare = 1) => {
      const prefix = `sy-outage:${run}:${n++}:`;
      const limiters = Array.from(
        { length: count },
        () =>
          new RedisLimiter({
            url: server.url,
            prefix,
            // Short, so a frozen store is noticed fast; a slow command on a busy machine is a
            // spurious outage, which the write-back must (and does) absorb exactly.
            commandTimeoutMs: 100,
            probeMs: 25,
            localShare,
            clock,
            logger: createLogger('silent'),
          }),
      );
      await Promise.all(limiters.map((l) => l.ready(2_000)));
      return {
        limiters,
        caughtUp: async () => {
          for (let i = 0; i < 400; i++) {
            const s = limiters.map((l) => l.status());
            if (s.every((x) => x.shared && x.pendingWriteBacks === 0)) return;
            await sleep(25);
          }
          throw new Error('the replicas did not catch up with the store within 10 s');
        },
        close: async () => {
          await Promise.all(limiters.map((l) => l.close()));
        },
      };
    },
  };
}

const up = await pingRedis(REDIS.port, 500);
if (!up && process.env['CI'] === 'true') {
  describe('QuotaLimiter contract: Redis', () => {
    it('needs the Redis at 127.0.0.1:6379 in CI', () => {
      throw new Error('Redis is unreachable at 127.0.0.1:6379 and CI=true');
    });
  });
} else if (!up) {
  console.warn('skipping the Redis limiter contract: no Redis at 127.0.0.1:6379');
  describe.skip('QuotaLimiter contract: Redis (no Redis at 127.0.0.1:6379)', () => {
    it('is skipped', () => undefined);
  });
} else {
  const outage = redisServerOrSkip('the Redis limiter outage contract')
    ? await privateOutage()
    : undefined;
  limiterContract(
    'Redis',
    async (clock) => {
      const limiter = limiterOn(`redis://${REDIS.host}:${REDIS.port}`, clock);
      await limiter.ready(2_000);
      return { limiter, close: () => limiter.close() };
    },
    outage,
  );
}
