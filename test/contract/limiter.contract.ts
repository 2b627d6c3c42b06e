import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import type { QuotaCharge, QuotaLimiter, QuotaWindow } from '../../src/contracts/limiter.js';
import type { Clock } from '../../src/core/clock.js';

/** A clock the suite moves by hand; wall time starts mid-month, at noon UTC. */
export class ManualClock implements Clock {
  constructor(public wallMs = Date.UTC(2030, 0, 15, 12, 0, 0)) {}
  now(): number {
    return this.wallMs;
  }
  wall(): number {
    return this.wallMs;
  }
  advance(ms: number): void {
    this.wallMs += ms;
  }
}

export interface LimiterUnderTest {
  readonly limiter: QuotaLimiter;
  close(): Promise<void>;
}

/** Makes a fresh limiter on `clock`; every call must start from empty counters. */
export type MakeLimiter = (clock: ManualClock) => Promise<LimiterUnderTest>;

/** Limiters counting in one shared store, as the replicas of a deployment do. */
export interface Replicas {
  readonly limiters: readonly QuotaLimiter[];
  /** Resolves once every replica counts in the store again and has written back what it counted locally. */
  caughtUp(): Promise<void>;
  close(): Promise<void>;
}

/**
 * For an implementation with a shared store: a store the suite can make unreachable the way a
 * SIGSTOP does (commands already sent wait in its socket and run when it wakes), and replicas on it.
 */
export interface SharedStoreOutage {
  /** `n` replicas sharing fresh counters, each enforcing `localShare` of a limit while the store is away. */
  replicas(clock: ManualClock, n: number, localShare?: number): Promise<Replicas>;
  freeze(): void;
  thaw(): void;
}

const SEC: QuotaWindow = { ms: 1_000 };
const charge = (
  key: string,
  limit: number,
  amount: number,
  window: QuotaWindow = SEC,
): QuotaCharge => ({
  key,
  limit,
  amount,
  window,
});

/**
 * The one contract every QuotaLimiter passes (in process and Redis). Each implementation's test
 * file calls this with its factory.
 */
export function limiterContract(name: string, make: MakeLimiter, outage?: SharedStoreOutage): void {
  describe(`QuotaLimiter contract: ${name}`, () => {
    let current: LimiterUnderTest | undefined;
    const start = async (clock = new ManualClock()): Promise<QuotaLimiter> => {
      current = await make(clock);
      return current.limiter;
    };
    afterEach(async () => {
      await current?.close();
      current = undefined;
    });

    it('admits up to the limit in a window and refuses the next charge with a wait inside the window', async () => {
      const clock = new ManualClock();
      const l = await start(clock);
      for (let i = 0; i < 5; i++) expect((await l.reserve([charge('a', 5, 1)])).allowed).toBe(true);
      const refused = await l.reserve([charge('a', 5, 1)]);
      expect(refused.allowed).toBe(false);
      expect(refused.refused).toBe('a');
      expect(refused.receipts).toEqual([]);
      expect(refused.retryAfterMs).toBeGreaterThan(0);
      expect(refused.retryAfterMs).toBeLessThanOrEqual(2_000);
      expect(await l.usage('a', SEC)).toBe(5);
    });

    it('takes all charges or none: a charge that does not fit leaves the others untouched', async () => {
      const l = await start();
      expect((await l.reserve([charge('b2', 3, 3)])).allowed).toBe(true);
      const d = await l.reserve([charge('b1', 10, 4), charge('b2', 3, 1)]);
      expect(d.allowed).toBe(false);
      expect(d.refused).toBe('b2');
      expect(await l.usage('b1', SEC)).toBe(0);
      expect(await l.usage('b2', SEC)).toBe(3);
    });

    it('returns one receipt per charge that settle corrects to the actual amount, up or down', async () => {
      const l = await start();
      const d = await l.reserve([charge('tok', 1_000, 300), charge('req', 10, 1)]);
      expect(d.allowed).toBe(true);
      expect(d.receipts.map((r) => [r.key, r.amount])).toEqual([
        ['tok', 300],
        ['req', 1],
      ]);
      await l.settle(d.receipts[0]!, 120);
      expect(await l.usage('tok', SEC)).toBe(120);
      await l.settle({ ...d.receipts[0]!, amount: 120 }, 500);
      expect(await l.usage('tok', SEC)).toBe(500);
      expect((await l.reserve([charge('tok', 1_000, 501)])).allowed).toBe(false);
      expect((await l.reserve([charge('tok', 1_000, 500)])).allowed).toBe(true);
    });

    it('refills a rate continuously: half a window later, half the limit fits again', async () => {
      const clock = new ManualClock();
      const l = await start(clock);
      expect((await l.reserve([charge('s', 10, 10)])).allowed).toBe(true);
      clock.advance(500);
      expect(await l.usage('s', SEC)).toBeCloseTo(5, 5);
      expect((await l.reserve([charge('s', 10, 6)])).allowed).toBe(false);
      expect((await l.reserve([charge('s', 10, 5)])).allowed).toBe(true);
      clock.advance(2_000);
      expect(await l.usage('s', SEC)).toBe(0);
    });

    it('never admits more than limit + burst in any window, for any arrival pattern', async () => {
      const l = await start();
      let run = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.integer({ min: 0, max: 120 }), { minLength: 20, maxLength: 120 }),
          async (gaps) => {
            const clock = new ManualClock();
            const lim = await make(clock);
            const key = `burst-${run++}`;
            const admitted: number[] = [];
            for (const gap of gaps) {
              clock.advance(gap);
              const d = await lim.limiter.reserve([{ ...charge(key, 10, 1), burst: 3 }]);
              if (d.allowed) admitted.push(clock.wallMs);
            }
            await lim.close();
            for (let i = 0, j = 0; i < admitted.length; i++) {
              while (admitted[i]! - admitted[j]! >= 1_000) j++;
              expect(i - j + 1).toBeLessThanOrEqual(10 + 3);
            }
          },
        ),
        { seed: 11, numRuns: 25 },
      );
      void l;
    });

    it('resets a daily budget at UTC midnight and says how long until then', async () => {
      const clock = new ManualClock(Date.UTC(2030, 0, 15, 23, 0, 0));
      const l = await start(clock);
      expect((await l.reserve([charge('day', 100, 100, 'day')])).allowed).toBe(true);
      const refused = await l.reserve([charge('day', 100, 1, 'day')]);
      expect(refused.allowed).toBe(false);
      expect(refused.retryAfterMs).toBe(3_600_000);
      clock.advance(3_600_000);
      expect((await l.reserve([charge('day', 100, 100, 'day')])).allowed).toBe(true);
    });

    it('counts a monthly budget per calendar month', async () => {
      const clock = new ManualClock(Date.UTC(2030, 1, 27, 0, 0, 0));
      const l = await start(clock);
      expect((await l.reserve([charge('mon', 50, 50, 'month')])).allowed).toBe(true);
      clock.advance(86_400_000); // Feb 28: same month
      expect((await l.reserve([charge('mon', 50, 1, 'month')])).allowed).toBe(false);
      clock.advance(86_400_000); // Mar 1
      expect(await l.usage('mon', 'month')).toBe(0);
      expect((await l.reserve([charge('mon', 50, 1, 'month')])).allowed).toBe(true);
    });

    it('refuses a single charge larger than the limit even when the counter is empty', async () => {
      const l = await start();
      const d = await l.reserve([charge('big', 10, 11)]);
      expect(d.allowed).toBe(false);
      expect(d.retryAfterMs).toBeGreaterThan(0);
    });

    it('keeps counters of different keys apart', async () => {
      const l = await start();
      expect((await l.reserve([charge('k1', 1, 1)])).allowed).toBe(true);
      expect((await l.reserve([charge('k2', 1, 1)])).allowed).toBe(true);
      expect((await l.reserve([charge('k1', 1, 1)])).allowed).toBe(false);
    });

    it('never admits more than the limit when many reserves race', async () => {
      const l = await start();
      const all = await Promise.all(
        Array.from({ length: 60 }, () => l.reserve([charge('race', 25, 1)])),
      );
      expect(all.filter((d) => d.allowed)).toHaveLength(25);
      expect(await l.usage('race', SEC)).toBe(25);
    });

    it('keeps usage equal to the sum of what it admitted and settled, for any sequence', async () => {
      const l = await start();
      let run = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.record({ amount: fc.integer({ min: 0, max: 40 }), actual: fc.nat(60) }), {
            minLength: 1,
            maxLength: 25,
          }),
          async (ops) => {
            const key = `prop-${run++}`;
            let expected = 0;
            for (const op of ops) {
              const d = await l.reserve([charge(key, 100, op.amount, 'day')]);
              if (!d.allowed) {
                expect(expected + op.amount).toBeGreaterThan(100);
                continue;
              }
              expect(expected + op.amount).toBeLessThanOrEqual(100);
              await l.settle(d.receipts[0]!, op.actual);
              expected += op.actual;
            }
            expect(await l.usage(key, 'day')).toBe(expected);
          },
        ),
        { seed: 5, numRuns: 40 },
      );
    });

    it('keeps the daily and the monthly budget of one key apart on the first day of a month', async () => {
      const l = await start(new ManualClock(Date.UTC(2030, 1, 1, 12, 0, 0)));
      const d = await l.reserve([
        charge('both', 100, 10, 'day'),
        charge('both', 1_000, 10, 'month'),
      ]);
      expect(d.allowed).toBe(true);
      expect(await l.usage('both', 'day')).toBe(10);
      expect(await l.usage('both', 'month')).toBe(10);
      await l.settle(d.receipts[1]!, 4);
      expect(await l.usage('both', 'day')).toBe(10);
      expect(await l.usage('both', 'month')).toBe(4);
    });

    it('settles a receipt into the calendar bucket it was taken in, not the current one', async () => {
      const clock = new ManualClock(Date.UTC(2030, 0, 15, 23, 30, 0));
      const l = await start(clock);
      const d = await l.reserve([charge('late', 100, 10, 'day')]);
      clock.advance(3_600_000); // the next day
      await l.settle(d.receipts[0]!, 30);
      expect(await l.usage('late', 'day')).toBe(0);
      clock.advance(-3_600_000);
      expect(await l.usage('late', 'day')).toBe(30);
    });
  });

  if (outage !== undefined) sharedStoreContract(name, outage);
}

const day = (key: string, limit: number, amount: number): QuotaCharge =>
  charge(key, limit, amount, 'day');

/**
 * What a limiter with a shared store keeps through an outage of that store (issue #13). The
 * first command after `freeze()` times out: it waits in the store's socket and runs when the
 * store wakes, after the limiter has decided it locally.
 */
function sharedStoreContract(name: string, outage: SharedStoreOutage): void {
  describe(`QuotaLimiter contract: ${name}, when the shared store is unreachable`, () => {
    let current: Replicas | undefined;
    const replicas = async (clock: ManualClock, n: number, share = 1): Promise<QuotaLimiter[]> => {
      current = await outage.replicas(clock, n, share);
      return [...current.limiters];
    };
    /** Wakes the store and waits until every replica has caught up with it. */
    const thaw = async (): Promise<void> => {
      outage.thaw();
      await current!.caughtUp();
    };
    afterEach(async () => {
      outage.thaw();
      await current?.close();
      current = undefined;
    });

    it('writes usage counted locally back to the store once it returns', async () => {
      const [a, b] = await replicas(new ManualClock(), 2);
      expect((await a!.reserve([day('wb', 100, 30)])).allowed).toBe(true);
      outage.freeze();
      const late = await a!.reserve([day('wb', 100, 1)]); // timed out: it runs when the store wakes
      const local = await a!.reserve([day('wb', 100, 49)]);
      expect([late.allowed, local.allowed]).toEqual([true, true]);
      expect(local.receipts[0]!.shared).toBe(false);
      await thaw();
      expect(await b!.usage('wb', 'day')).toBe(80);
      expect((await b!.reserve([day('wb', 100, 21)])).allowed).toBe(false);
      expect((await b!.reserve([day('wb', 100, 20)])).allowed).toBe(true);
    });

    it('counts a reservation once when it timed out, was settled locally and reached the store late', async () => {
      const [a, b] = await replicas(new ManualClock(), 2);
      outage.freeze();
      const d = await a!.reserve([day('late', 100, 10)]);
      expect(d.allowed).toBe(true);
      await a!.settle(d.receipts[0]!, 4);
      await thaw();
      expect(await b!.usage('late', 'day')).toBe(4);
    });

    it('takes back a reservation that timed out, was refused locally and reached the store late', async () => {
      const [a, b] = await replicas(new ManualClock(), 2, 0.5);
      outage.freeze();
      // Half of 100 locally: refused here; the store, which has room, takes it when it wakes.
      expect((await a!.reserve([day('phantom', 100, 60)])).allowed).toBe(false);
      await thaw();
      expect(await b!.usage('phantom', 'day')).toBe(0);
    });

    it('settles receipts counted locally into the shared counter after the write-back', async () => {
      const [a, b] = await replicas(new ManualClock(), 2);
      outage.freeze();
      const timedOut = await a!.reserve([day('after', 100, 10)]);
      const local = await a!.reserve([day('after', 100, 10)]);
      await thaw();
      expect(await b!.usage('after', 'day')).toBe(20);
      await a!.settle(timedOut.receipts[0]!, 3);
      await a!.settle(local.receipts[0]!, 0);
      expect(await b!.usage('after', 'day')).toBe(3);
    });

    it('writes usage counted locally across midnight into the day it was counted in', async () => {
      const clock = new ManualClock(Date.UTC(2030, 0, 15, 23, 59, 59, 500));
      const [a, b] = await replicas(clock, 2);
      outage.freeze();
      expect((await a!.reserve([day('midnight', 100, 1)])).allowed).toBe(true);
      expect((await a!.reserve([day('midnight', 100, 4)])).allowed).toBe(true);
      clock.advance(1_000); // Jan 16
      expect((await a!.reserve([day('midnight', 100, 3)])).allowed).toBe(true);
      await thaw();
      expect(await b!.usage('midnight', 'day')).toBe(3);
      clock.advance(-1_000);
      expect(await b!.usage('midnight', 'day')).toBe(5);
    });

    it('starts local counting from the last shared count: a switch grants no fresh budget', async () => {
      const [a, b] = await replicas(new ManualClock(), 2);
      expect((await a!.reserve([day('budget', 100, 90)])).allowed).toBe(true);
      outage.freeze();
      expect((await a!.reserve([day('budget', 100, 20)])).allowed).toBe(false);
      expect((await a!.reserve([day('budget', 100, 10)])).allowed).toBe(true);
      expect((await a!.reserve([day('budget', 100, 1)])).allowed).toBe(false);
      await thaw();
      expect(await b!.usage('budget', 'day')).toBe(100);
    });

    it('lets a replica take only its local share of what was left of a budget', async () => {
      const [a, b] = await replicas(new ManualClock(), 2, 0.5);
      expect((await a!.reserve([day('share', 100, 60)])).allowed).toBe(true);
      outage.freeze();
      expect((await a!.reserve([day('share', 100, 21)])).allowed).toBe(false);
      expect((await a!.reserve([day('share', 100, 20)])).allowed).toBe(true);
      await thaw();
      expect(await b!.usage('share', 'day')).toBe(80);
    });

    it('starts a local rate from the last shared state, grants no fresh burst, and writes back what has not drained', async () => {
      const clock = new ManualClock();
      const [a, b] = await replicas(clock, 2);
      expect((await a!.reserve([charge('rate', 10, 10)])).allowed).toBe(true);
      outage.freeze();
      expect((await a!.reserve([charge('rate', 10, 1)])).allowed).toBe(false);
      clock.advance(500); // half the bucket refilled
      expect((await a!.reserve([charge('rate', 10, 5)])).allowed).toBe(true);
      expect((await a!.reserve([charge('rate', 10, 1)])).allowed).toBe(false);
      await thaw();
      expect(await b!.usage('rate', SEC)).toBeCloseTo(10, 3);
      expect((await b!.reserve([charge('rate', 10, 1)])).allowed).toBe(false);
    });

    it('does not write back rate usage that has drained by the time the store returns', async () => {
      const clock = new ManualClock();
      const [a, b] = await replicas(clock, 2);
      outage.freeze();
      expect((await a!.reserve([charge('drained', 10, 1)])).allowed).toBe(true);
      expect((await a!.reserve([charge('drained', 10, 9)])).allowed).toBe(true);
      clock.advance(2_000);
      await thaw();
      expect(await b!.usage('drained', SEC)).toBe(0);
      expect((await b!.reserve([charge('drained', 10, 10)])).allowed).toBe(true);
    });

    it('has each replica write back its own local usage, once', async () => {
      const [a, b, c] = await replicas(new ManualClock(), 3);
      outage.freeze();
      await Promise.all([
        a!.reserve([day('replicas', 100, 1)]),
        b!.reserve([day('replicas', 100, 1)]),
      ]);
      expect((await a!.reserve([day('replicas', 100, 19)])).allowed).toBe(true);
      expect((await b!.reserve([day('replicas', 100, 9)])).allowed).toBe(true);
      await thaw();
      expect(await c!.usage('replicas', 'day')).toBe(30);
      outage.freeze();
      expect((await a!.reserve([day('replicas', 100, 5)])).allowed).toBe(true);
      await thaw();
      expect(await c!.usage('replicas', 'day')).toBe(35);
    });
  });
}
