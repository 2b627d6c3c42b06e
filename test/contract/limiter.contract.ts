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
export function limiterContract(name: string, make: MakeLimiter): void {
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
  });
}
