import { afterAll, describe, expect, it } from 'vitest';
import { openRedis, redisReady } from '../../src/state/redis.js';
import {
  sharedRedisOrSkip,
  redisServerOrSkip,
  startRedisServer,
  type PrivateRedis,
} from '../support/redis-server.js';

const up = await sharedRedisOrSkip('the Redis connection tests');

/** Keeps this thread busy for `ms` (a CPU-starved gateway: no timer, no socket read meanwhile). */
function busy(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    /* spin */
  }
}

const closing: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of closing) await c().catch(() => undefined);
});

describe.runIf(up)('openRedis: the command timeout of the request-path client', () => {
  it('does not blame Redis for its own late event loop: a reply that came in time is read', async () => {
    const redis = openRedis({ url: 'redis://127.0.0.1:6379', commandTimeoutMs: 50, name: 'test' });
    closing.push(() => redis.quit());
    expect(await redisReady(redis, 2_000)).toBe(true);
    // Redis answers within a millisecond; this process then does not look for 300 ms, six
    // times the timeout (long enough for Redis to answer on a loaded machine). A plain timer
    // (ioredis' commandTimeout) fires before the socket is read and fails the command; here
    // every reply is taken.
    for (let i = 0; i < 3; i++) {
      const reply = redis.ping(`in-time-${i}`);
      busy(300);
      await expect(reply).resolves.toBe(`in-time-${i}`);
    }
  });

  describe.runIf(redisServerOrSkip('the frozen-Redis timeout test'))(
    'a Redis that does not answer',
    () => {
      let server: PrivateRedis;
      it('still times out within the timeout, and recovers when it answers again', async () => {
        server = await startRedisServer();
        closing.push(() => server.stop());
        const redis = openRedis({ url: server.url, commandTimeoutMs: 50, name: 'test' });
        closing.push(() => Promise.resolve(redis.disconnect()));
        expect(await redisReady(redis, 2_000)).toBe(true);
        server.signal('SIGSTOP');
        try {
          const t0 = performance.now();
          await expect(redis.ping('frozen')).rejects.toThrow(/timed out/);
          const took = performance.now() - t0;
          expect(took).toBeGreaterThanOrEqual(45);
          expect(took).toBeLessThan(1_000);
        } finally {
          server.signal('SIGCONT');
        }
        await expect(redis.ping('back')).resolves.toBe('back');
      });
    },
  );
});
