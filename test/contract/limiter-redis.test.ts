import { randomBytes } from 'node:crypto';
import { createConnection } from 'node:net';
import { describe, it } from 'vitest';
import { RedisLimiter } from '../../src/admission/redis-limiter.js';
import { createLogger } from '../../src/observability/logger.js';
import { limiterContract } from './limiter.contract.js';

const REDIS = { host: '127.0.0.1', port: 6379 };

/** Whether a Redis answers PING at 127.0.0.1:6379 within half a second. */
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
  const run = randomBytes(4).toString('hex');
  let n = 0;
  limiterContract('Redis', async (clock) => {
    const limiter = new RedisLimiter({
      url: `redis://${REDIS.host}:${REDIS.port}`,
      prefix: `sy-test:${run}:${n++}:`,
      commandTimeoutMs: 1_000,
      probeMs: 200,
      localShare: 1,
      clock,
      logger: createLogger('silent'),
    });
    await limiter.ready(2_000);
    return { limiter, close: () => limiter.close() };
  });
}
