import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { RedisLimiter, type RedisLimiterOptions } from '../../src/admission/redis-limiter.js';
import {
  defineQuotaCommands,
  type QuotaCommands,
} from '../../src/admission/redis-quota-scripts.js';
import { events, subscribe } from '../../src/core/events.js';
import { createLogger } from '../../src/observability/logger.js';
import {
  sharedRedisOrSkip,
  redisServerOrSkip,
  startRedisServer,
  type PrivateRedis,
} from '../support/redis-server.js';
import {
  limiterContract,
  ManualClock,
  type Replicas,
  type SharedStoreOutage,
} from './limiter.contract.js';

const SHARED = 'redis://127.0.0.1:6379';
const run = randomBytes(4).toString('hex');
let n = 0;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, done: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await done()) return;
    await sleep(25);
  }
  throw new Error(`${what}: not within 10 s`);
}

/** A limiter on a private store, quick to notice a frozen one (a slow command on a busy machine is a spurious outage, which the write-back absorbs exactly). */
const outageLimiter = (
  server: PrivateRedis,
  prefix: string,
  clock: ManualClock,
  more: Partial<RedisLimiterOptions> = {},
): RedisLimiter =>
  new RedisLimiter({
    url: server.url,
    prefix,
    commandTimeoutMs: 100,
    probeMs: 25,
    localShare: 1,
    clock,
    logger: createLogger('silent'),
    ...more,
  });

/** Replicas on the private store: SIGSTOP freezes it the way a stalled Redis does. */
function privateOutage(server: PrivateRedis): SharedStoreOutage {
  return {
    freeze: () => server.signal('SIGSTOP'),
    thaw: () => server.signal('SIGCONT'),
    replicas: async (clock, count, localShare = 1): Promise<Replicas> => {
      const prefix = `sy-outage:${run}:${n++}:`;
      const limiters = Array.from({ length: count }, () =>
        outageLimiter(server, prefix, clock, { localShare }),
      );
      await Promise.all(limiters.map((l) => l.ready(2_000)));
      return {
        limiters,
        caughtUp: () =>
          until('the replicas catch up with the store', () =>
            limiters.every((l) => l.status().shared && l.status().pendingWriteBacks === 0),
          ),
        close: async () => {
          await Promise.all(limiters.map((l) => l.close()));
        },
      };
    },
  };
}

const up = await sharedRedisOrSkip('the Redis limiter contract');
if (!up) {
  describe.skip('QuotaLimiter contract: Redis (no Redis at 127.0.0.1:6379)', () => {
    it('is skipped', () => undefined);
  });
} else {
  // The outage half runs on a private redis-server, never on the shared one other tests use.
  const server = redisServerOrSkip('the Redis limiter outage contract')
    ? await startRedisServer()
    : undefined;
  afterAll(() => server?.stop());
  limiterContract(
    'Redis',
    async (clock) => {
      const limiter = new RedisLimiter({
        url: SHARED,
        prefix: `sy-test:${run}:${n++}:`,
        commandTimeoutMs: 1_000,
        probeMs: 200,
        localShare: 1,
        clock,
        logger: createLogger('silent'),
      });
      await limiter.ready(2_000);
      return { limiter, close: () => limiter.close() };
    },
    server === undefined ? undefined : privateOutage(server),
  );

  describe('the Redis limiter in a CPU-starved process', () => {
    it('keeps every decision shared and exact when its own event loop is late, not Redis', async () => {
      // A 50 ms command timeout, and a loop that looks at its sockets only every 300 ms (long
      // enough for Redis to answer on a loaded machine): Redis answered in time, so no decision
      // may fall back to local counting (which, with a local share, admits beyond the limit:
      // 113 of 100 across a loaded tree, #17).
      const limiter = new RedisLimiter({
        url: SHARED,
        prefix: `sy-starved:${run}:`,
        commandTimeoutMs: 50,
        probeMs: 200,
        localShare: 1,
        clock: new ManualClock(),
        logger: createLogger('silent'),
      });
      const states: string[] = [];
      const off = subscribe(events.limiterState, (e) => states.push(e.state));
      try {
        expect(await limiter.ready(2_000)).toBe(true);
        const charge = [{ key: 'starved', limit: 6, amount: 1, window: 'day' as const }];
        const decisions = [];
        for (let i = 0; i < 9; i++) {
          const pending = limiter.reserve(charge);
          const end = performance.now() + 300;
          while (performance.now() < end) {
            /* a long synchronous task */
          }
          decisions.push(await pending);
        }
        expect(decisions.every((d) => d.shared)).toBe(true);
        expect(decisions.filter((d) => d.allowed)).toHaveLength(6);
        expect(states).not.toContain('local');
        expect(await limiter.usage('starved', 'day')).toBe(6);
      } finally {
        off();
        await limiter.close();
      }
    });
  });

  if (server !== undefined)
    describe('the Redis limiter when its write-back fails', () => {
      it('warns, counts the failure, keeps the write-back and retries it until Redis takes it', async () => {
        const clock = new ManualClock();
        let logText = '';
        const sink = new Writable({
          write(chunk: Buffer, _enc, cb) {
            logText += chunk.toString('utf8');
            cb();
          },
        });
        const prefix = `sy-writeback:${run}:`;
        const a = outageLimiter(server, prefix, clock, { logger: createLogger('warn', sink) });
        const b = outageLimiter(server, prefix, clock);
        const admin = new Redis(server.url);
        const results: string[] = [];
        const off = subscribe(events.limiterWriteBack, (e) => results.push(e.result));
        try {
          await Promise.all([a.ready(2_000), b.ready(2_000)]);
          const day = (amount: number) => [
            { key: 'wb', limit: 100, amount, window: 'day' as const },
          ];
          expect((await a.reserve(day(10))).allowed).toBe(true);
          // Redis answers PING but refuses every write: the reserve fails and is counted
          // locally, then each write-back the probe starts fails too.
          await admin.config('SET', 'maxmemory', '1');
          const local = await a.reserve(day(20));
          expect([local.allowed, local.shared]).toEqual([true, false]);
          await until('a write-back fails', () => results.includes('failed'));
          expect(a.status()).toEqual({ shared: false, pendingWriteBacks: 1 });
          expect(logText).toContain('write-back of local usage failed; kept for the next try');
          await admin.config('SET', 'maxmemory', '0');
          await until('the write-back is retried', () => a.status().shared);
          expect(a.status().pendingWriteBacks).toBe(0);
          expect(results).toContain('written');
          expect(await b.usage('wb', 'day')).toBe(30);
        } finally {
          off();
          await admin.config('SET', 'maxmemory', '0');
          admin.disconnect();
          await Promise.all([a.close(), b.close()]);
        }
      });

      it('applies a write-back step once however often it is sent (a retry after a timeout that ran late)', async () => {
        const r = new Redis(server.url) as Redis & QuotaCommands;
        defineQuotaCommands(r);
        const p = `sy-steps:${run}:`;
        const [counter, marks, claim] = [`${p}c:day:0`, `${p}op:x:0`, `${p}wb:x:1`];
        try {
          // A chunk adding 7 units, sent twice under one mark (bit 3).
          const apply = () =>
            r.syApply(2, counter, marks, 1, Date.now(), 3, 60_000, 0, 7, 0, 60_000);
          expect(await apply()).toEqual([0, '7']);
          expect(await apply()).toEqual([-1]);
          expect(await r.get(counter)).toBe('7');
          // Command 9 reached Redis, command 10 did not: the claim says so, and says it again.
          await r.setbit(marks, 9, 1);
          const claimOf = () => r.syClaim(2, claim, marks, 60_000, 2, 9, 2, 10);
          expect(await claimOf()).toBe('10');
          expect(await r.getbit(marks, 10)).toBe(1); // a late command 10 now does nothing
          expect(await claimOf()).toBe('10');
        } finally {
          r.disconnect();
        }
      });
    });
}
