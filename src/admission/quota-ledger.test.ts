import { describe, expect, it } from 'vitest';
import { QuotaLedger, type Counter } from './quota-ledger.js';

const T0 = Date.UTC(2030, 0, 15, 12, 0, 0);
const day: Counter = { key: 'spend', window: 'day', bucket: Date.UTC(2030, 0, 15), limit: 100 };
/** 10 per second, a burst of 10: 100 ms a unit in the shared bucket. */
const rate: Counter = { key: 'req', window: { ms: 1_000 }, bucket: 0, limit: 10 };

describe('the write-back ledger of a local outage (#13)', () => {
  it('adds calendar usage up, settles included, and takes back timed-out commands that ran', () => {
    const l = new QuotaLedger(1, 1);
    l.addUncertain(7, [{ counter: day, shared: 10 }]); // decided locally: allowed
    l.add(day, 10, T0);
    l.add(day, -6, T0); // settled to 4
    l.addUncertain(8, [{ counter: day, shared: 60 }]); // decided locally: refused
    l.add(day, 5, T0);
    expect(l.parts([false, false], T0).parts).toEqual([{ counter: day, units: 9 }]);
    // Both had reached the store: it holds 10 + 60 of theirs already.
    expect(l.parts([true, true], T0).parts).toEqual([{ counter: day, units: 9 - 70 }]);
  });

  it('drops calendar usage whose bucket no longer counts', () => {
    const l = new QuotaLedger(1, 1);
    l.add(day, 3, T0);
    expect(l.parts([], T0 + 3 * 86_400_000)).toEqual({ parts: [], dropped: 1 });
  });

  it('repays every unit a replica took alone from a full bucket for less than its refill time', () => {
    // The shared bucket was full (another replica kept it so); this one, at half the rate
    // (200 ms a unit), took 3 units over 600 ms: the shared bucket owes all 3.
    const l = new QuotaLedger(1, 0.5);
    const seed = T0 + 1_000;
    for (let i = 1; i <= 3; i++) l.add(rate, 1, T0 + i * 200, seed);
    const [p] = l.parts([], T0 + 600).parts;
    expect(p!.units).toBeCloseTo(3, 9);
  });

  it('writes back only what is still in the local bucket once its usage has drained', () => {
    const l = new QuotaLedger(1, 1);
    l.add(rate, 10, T0, 0); // a fresh bucket, emptied at once
    expect(l.parts([], T0 + 400).parts[0]!.units).toBeCloseTo(6, 9);
    expect(l.parts([], T0 + 2_000).parts).toEqual([]);
  });

  it('repays at most a full local bucket after a long outage', () => {
    const l = new QuotaLedger(1, 0.5);
    // Seeded full; then one unit every 200 ms (the local rate) for 10 s.
    for (let t = 200; t <= 10_000; t += 200) l.add(rate, 1, T0 + t, T0 + 1_000);
    // A full local bucket: 5 local units of 200 ms each.
    expect(l.parts([], T0 + 10_000).parts[0]!.units).toBeCloseTo(5, 9);
  });
});
