import { afterEach, describe, expect, it } from 'vitest';
import {
  NO_COUNTS,
  type CostDelta,
  type CostLedgerStore,
} from '../../src/contracts/cost-ledger.js';

/** A store, and a second handle on the same backing store (another replica). */
export interface LedgerFixture {
  readonly store: CostLedgerStore;
  /** Another connection to the same totals (a second replica). */
  another(): Promise<CostLedgerStore>;
  close(): Promise<void>;
}

function delta(over: Partial<CostDelta>): CostDelta {
  return {
    day: '2026-12-06',
    tenant: 'acme',
    journey: '',
    model: 'chat',
    trafficClass: 'interactive',
    experiment: '',
    arm: '',
    ...NO_COUNTS,
    ...over,
  };
}

/** The one suite every cost-ledger store passes (#15). */
export function costLedgerContract(
  name: string,
  open: () => Promise<LedgerFixture>,
  skip: string | false = false,
): void {
  describe.skipIf(skip !== false)(`cost ledger contract: ${name}`, () => {
    let f: LedgerFixture | undefined;
    afterEach(async () => {
      await f?.close();
      f = undefined;
    });

    it('adds deltas to the same key and totals them per dimension', async () => {
      f = await open();
      await f.store.add([
        delta({ calls: 1, inputTokens: 10, outputTokens: 5, costNanos: 1_500 }),
        delta({ calls: 1, inputTokens: 7, outputTokens: 3, costNanos: 700, estimatedCalls: 1 }),
        delta({ model: 'small', calls: 2, costNanos: 40, edgeCalls: 2 }),
        delta({ tenant: 'beta', journey: 'support', calls: 1, costNanos: 9 }),
      ]);
      const byModel = await f.store.totals({ groupBy: 'model' });
      expect(byModel.map((g) => [g.key, g.calls, g.costNanos])).toEqual([
        ['chat', 3, 2_209],
        ['small', 2, 40],
      ]);
      const chat = byModel[0]!;
      expect(chat).toMatchObject({ inputTokens: 17, outputTokens: 8, estimatedCalls: 1 });
      const byTenant = await f.store.totals({ groupBy: 'tenant' });
      expect(byTenant.map((g) => [g.key, g.costNanos])).toEqual([
        ['acme', 2_240],
        ['beta', 9],
      ]);
      const byJourney = await f.store.totals({ groupBy: 'journey' });
      expect(byJourney.map((g) => [g.key, g.costNanos])).toEqual([
        ['', 2_240],
        ['support', 9],
      ]);
      expect(await f.store.spentNanos('acme', '2026-12-06')).toBe(2_240);
      expect(await f.store.spentNanos('acme', '2026-12-07')).toBe(0);
    });

    it('filters by day range and tenant, and groups arms by experiment/variant', async () => {
      f = await open();
      await f.store.add([
        delta({ day: '2026-12-05', costNanos: 1 }),
        delta({ day: '2026-12-06', costNanos: 10, experiment: 'e1', arm: 'control' }),
        delta({ day: '2026-12-06', costNanos: 100, experiment: 'e1', arm: 'treatment' }),
        delta({ day: '2026-12-07', costNanos: 1000, tenant: 'beta' }),
      ]);
      const days = await f.store.totals({ groupBy: 'day', since: '2026-12-06' });
      expect(days.map((g) => [g.key, g.costNanos])).toEqual([
        ['2026-12-06', 110],
        ['2026-12-07', 1000],
      ]);
      const until = await f.store.totals({ groupBy: 'day', until: '2026-12-06', tenant: 'acme' });
      expect(until.map((g) => g.key)).toEqual(['2026-12-05', '2026-12-06']);
      const arms = await f.store.totals({ groupBy: 'arm' });
      expect(arms.map((g) => [g.key, g.costNanos])).toEqual([
        ['e1/control', 10],
        ['e1/treatment', 100],
      ]);
      expect(await f.store.totals({ groupBy: 'tenant', tenant: 'nobody' })).toEqual([]);
    });

    it('keeps totals exact when two replicas add to the same rows at once', async () => {
      f = await open();
      const other = await f.another();
      const batches = Array.from({ length: 20 }, (_, i) =>
        [0, 1, 2].map((j) => delta({ model: `m${j}`, calls: 1, costNanos: i * 1_000 + j })),
      );
      await Promise.all(batches.map((b, i) => (i % 2 === 0 ? f!.store : other).add(b)));
      const totals = await f.store.totals({ groupBy: 'model' });
      const want = [0, 1, 2].map((j) => [
        `m${j}`,
        20,
        batches.reduce((n, b) => n + b[j]!.costNanos, 0),
      ]);
      expect(totals.map((g) => [g.key, g.calls, g.costNanos])).toEqual(want);
      expect((await other.totals({ groupBy: 'model' })).map((g) => g.costNanos)).toEqual(
        want.map((w) => w[2]),
      );
    });

    it('counts an outcome once per tenant and request, whichever replica gives it', async () => {
      f = await open();
      const other = await f.another();
      const key = { ...delta({}), model: '', journey: 'support' };
      const claim = { requestId: 'req-1', key, reward: 1, at: 1 };
      expect(await f.store.addOutcome(claim)).toBe(true);
      // The same feedback again, here and on another replica: nothing more is counted.
      expect(await other.addOutcome(claim)).toBe(false);
      expect(await f.store.addOutcome({ ...claim, reward: 0 })).toBe(false);
      // Another tenant's request with the same id is its own (ids may repeat across tenants).
      const beta = { ...key, tenant: 'beta' };
      expect(await other.addOutcome({ requestId: 'req-1', key: beta, reward: 0, at: 2 })).toBe(
        true,
      );
      // A reward of 0 is feedback without a conversion.
      expect(await f.store.addOutcome({ ...claim, requestId: 'req-2', reward: 0 })).toBe(true);
      const byTenant = await f.store.totals({ groupBy: 'tenant' });
      expect(byTenant.map((g) => [g.key, g.feedback, g.conversions, g.requests])).toEqual([
        ['acme', 2, 1, 0],
        ['beta', 1, 0, 0],
      ]);
      // On the request's own row (model ''), beside what its calls added.
      expect(await f.store.totals({ groupBy: 'model' })).toEqual([]);
      const byJourney = await other.totals({ groupBy: 'journey', tenant: 'acme' });
      expect(byJourney.map((g) => [g.key, g.feedback, g.conversions])).toEqual([['support', 2, 1]]);
    });

    it('tells whether a request has its outcome, on any replica, counting nothing', async () => {
      f = await open();
      const other = await f.another();
      const key = { ...delta({}), model: '', journey: 'support' };
      expect(await f.store.hasOutcome('acme', 'req-1')).toBe(false);
      expect(await other.hasOutcome('acme', 'req-1')).toBe(false);
      // Asking takes nothing: the first claim still counts.
      expect(await f.store.addOutcome({ requestId: 'req-1', key, reward: 1, at: 1 })).toBe(true);
      expect(await other.hasOutcome('acme', 'req-1')).toBe(true);
      // Per tenant and request id.
      expect(await other.hasOutcome('beta', 'req-1')).toBe(false);
      expect(await f.store.hasOutcome('acme', 'req-2')).toBe(false);
      const t = await f.store.totals({ groupBy: 'tenant' });
      expect(t.map((g) => [g.key, g.feedback])).toEqual([['acme', 1]]);
      // A pruned claim is no longer there.
      await f.store.pruneOutcomes(2);
      expect(await f.store.hasOutcome('acme', 'req-1')).toBe(false);
    });

    it('forgets outcome claims older than a time: a repeat after that counts again', async () => {
      f = await open();
      const key = { ...delta({}), model: '', journey: 'support' };
      expect(await f.store.addOutcome({ requestId: 'old', key, reward: 1, at: 1_000 })).toBe(true);
      expect(await f.store.addOutcome({ requestId: 'new', key, reward: 1, at: 5_000 })).toBe(true);
      expect(await f.store.pruneOutcomes(2_000)).toBe(1);
      expect(await f.store.addOutcome({ requestId: 'old', key, reward: 1, at: 6_000 })).toBe(true);
      expect(await f.store.addOutcome({ requestId: 'new', key, reward: 1, at: 6_000 })).toBe(false);
      // The totals keep every outcome counted.
      const byTenant = await f.store.totals({ groupBy: 'tenant' });
      expect(byTenant.map((g) => [g.key, g.feedback])).toEqual([['acme', 3]]);
    });

    it('counts one of many concurrent outcomes for a request across replicas', async () => {
      f = await open();
      const other = await f.another();
      const key = { ...delta({}), model: '' };
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          (i % 2 === 0 ? f!.store : other).addOutcome({ requestId: 'r', key, reward: 1, at: i }),
        ),
      );
      expect(results.filter((r) => r)).toHaveLength(1);
      const t = await f.store.totals({ groupBy: 'tenant' });
      expect(t.map((g) => [g.feedback, g.conversions])).toEqual([[1, 1]]);
    });

    it('keeps costs above 2^31 nano-units exactly', async () => {
      f = await open();
      const big = 5_000_000_000_123; // 5000.000000123 units
      await f.store.add([delta({ costNanos: big }), delta({ costNanos: 1 })]);
      expect(await f.store.spentNanos('acme', '2026-12-06')).toBe(big + 1);
    });
  });
}
