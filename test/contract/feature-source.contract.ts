import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type {
  FeatureDefinition,
  FeatureSource,
  FeatureWrite,
} from '../../src/contracts/feature-source.js';
import type { Clock } from '../../src/core/clock.js';
import { isSwitchyardError } from '../../src/core/errors.js';

/** A clock the test moves by hand (wall and monotonic alike). */
export class ManualClock implements Clock {
  constructor(public t = 1_800_000_000_000) {}
  now(): number {
    return this.t;
  }
  wall(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

const lineage = { source: 'kafka:rides', transformation: 'count over 7d' };

export const TEST_DEFINITIONS: readonly FeatureDefinition[] = [
  {
    name: 'user.rides_7d',
    entity: 'user',
    type: 'int',
    min: 0,
    max: 1000,
    label: 'consented',
    purpose: 'behavioral_inference',
    version: 2,
    lineage,
    description: 'Rides in the last 7 days',
  },
  {
    name: 'user.home_city',
    entity: 'user',
    type: 'string',
    maxLength: 16,
    label: 'sensitive',
    purpose: 'location',
    version: 1,
    lineage: { source: 'profile', transformation: 'identity' },
  },
  {
    name: 'user.tier',
    entity: 'user',
    type: 'enum',
    values: ['basic', 'plus', 'gold'],
    label: 'public',
    version: 1,
    lineage: { source: 'billing', transformation: 'identity' },
  },
  {
    name: 'user.embedding',
    entity: 'user',
    type: 'vector',
    dims: 4,
    min: -1,
    max: 1,
    label: 'consented',
    purpose: 'cross_service_personalization',
    version: 1,
    lineage: { source: 'trainer', transformation: 'two-tower user tower' },
  },
  {
    name: 'session.score',
    entity: 'session',
    type: 'float',
    min: 0,
    max: 1,
    ttlMs: 60_000,
    label: 'consented',
    purpose: 'behavioral_inference',
    version: 1,
    lineage: { source: 'clickstream', transformation: 'ewma' },
  },
  {
    name: 'item.in_stock',
    entity: 'item',
    type: 'bool',
    label: 'public',
    version: 1,
    lineage: { source: 'inventory', transformation: 'identity' },
  },
];

export interface FeatureSourceHarness {
  readonly store: FeatureSource;
  close(): Promise<void>;
}

/** What a store is opened with beside its definitions and clock. */
export interface FeatureStoreLimits {
  /** Most values one tenant may hold (`features.max_values_per_tenant`); absent: no cap. */
  readonly maxValuesPerTenant?: number;
}

/** Starts a fresh, empty store over `definitions`, reading time from `clock`. */
export type FeatureSourceFactory = (
  definitions: readonly FeatureDefinition[],
  clock: Clock,
  limits?: FeatureStoreLimits,
) => Promise<FeatureSourceHarness>;

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a rejection');
}

/**
 * The one FeatureSource contract suite; each implementation's test file runs it. `skip` carries a
 * reason when the implementation's service is unreachable (Redis).
 */
export function featureSourceContract(
  name: string,
  factory: FeatureSourceFactory,
  skip: string | false = false,
): void {
  describe.skipIf(skip !== false)(`FeatureSource contract: ${name}`, () => {
    let clock: ManualClock;
    let h: FeatureSourceHarness;
    let store: FeatureSource;

    beforeEach(async () => {
      clock = new ManualClock();
      h = await factory(TEST_DEFINITIONS, clock);
      store = h.store;
    });
    afterEach(async () => {
      await h.close();
    });

    it('lists every definition with its type, label, version and lineage', () => {
      expect(store.definitions().map((d) => d.name)).toEqual(TEST_DEFINITIONS.map((d) => d.name));
      expect(store.definition('user.rides_7d')).toMatchObject({
        type: 'int',
        label: 'consented',
        version: 2,
        lineage: { source: 'kafka:rides', transformation: 'count over 7d' },
      });
      expect(store.definition('nope')).toBeUndefined();
    });

    it('returns written values with their label, purpose, version and owner', async () => {
      await store.write('acme', [
        { entityId: 'u1', feature: 'user.rides_7d', value: 12 },
        { entityId: 'u1', feature: 'user.tier', value: 'gold' },
        { entityId: 's9', feature: 'session.score', value: 0.25, userId: 'u1' },
        { entityId: 'i3', feature: 'item.in_stock', value: false, jurisdiction: 'eu' },
      ]);
      const [rides, tier, score, stock] = await store.read('acme', [
        { entityId: 'u1', feature: 'user.rides_7d' },
        { entityId: 'u1', feature: 'user.tier' },
        { entityId: 's9', feature: 'session.score' },
        { entityId: 'i3', feature: 'item.in_stock' },
      ]);
      expect(rides).toMatchObject({
        value: 12,
        version: 2,
        label: 'consented',
        purpose: 'behavioral_inference',
        userId: 'u1',
        writtenAt: clock.t,
      });
      expect(rides?.expiresAt).toBeUndefined();
      expect(tier).toMatchObject({ value: 'gold', label: 'public', userId: 'u1' });
      expect(score).toMatchObject({ value: 0.25, userId: 'u1', expiresAt: clock.t + 60_000 });
      expect(stock).toMatchObject({ value: false, jurisdiction: 'eu' });
      expect(stock?.userId).toBeUndefined();
    });

    it('returns undefined in place for missing values and unknown features', async () => {
      await store.write('acme', [{ entityId: 'u1', feature: 'user.tier', value: 'plus' }]);
      const out = await store.read('acme', [
        { entityId: 'u2', feature: 'user.tier' },
        { entityId: 'u1', feature: 'user.tier' },
        { entityId: 'u1', feature: 'no.such' },
      ]);
      expect(out).toHaveLength(3);
      expect(out[0]).toBeUndefined();
      expect(out[1]?.value).toBe('plus');
      expect(out[2]).toBeUndefined();
    });

    it('keeps vectors exactly and replaces a value on overwrite', async () => {
      await store.write('acme', [
        { entityId: 'u1', feature: 'user.embedding', value: [0.5, -0.25, 1, -1] },
      ]);
      await store.write('acme', [
        { entityId: 'u1', feature: 'user.embedding', value: [0.125, 0, 0, 0.75] },
      ]);
      const [e] = await store.read('acme', [{ entityId: 'u1', feature: 'user.embedding' }]);
      expect(e?.value).toEqual([0.125, 0, 0, 0.75]);
    });

    it('never shows one tenant the values of another', async () => {
      await store.write('acme', [{ entityId: 'u1', feature: 'user.rides_7d', value: 1 }]);
      await store.write('globex', [{ entityId: 'u1', feature: 'user.rides_7d', value: 2 }]);
      const [a] = await store.read('acme', [{ entityId: 'u1', feature: 'user.rides_7d' }]);
      const [b] = await store.read('globex', [{ entityId: 'u1', feature: 'user.rides_7d' }]);
      const [c] = await store.read('initech', [{ entityId: 'u1', feature: 'user.rides_7d' }]);
      expect([a?.value, b?.value, c]).toEqual([1, 2, undefined]);
      expect(await store.purgeUser('globex', 'u1')).toBe(1);
      const [again] = await store.read('acme', [{ entityId: 'u1', feature: 'user.rides_7d' }]);
      expect(again?.value).toBe(1);
    });

    it('refuses an invalid batch as a whole, naming every problem', async () => {
      const writes: FeatureWrite[] = [
        { entityId: 'u1', feature: 'user.tier', value: 'gold' },
        { entityId: 'u1', feature: 'user.rides_7d', value: 1001 },
        { entityId: 'u1', feature: 'user.rides_7d', value: 2.5 },
        { entityId: 'u1', feature: 'user.rides_7d', value: '12' },
        { entityId: 'u1', feature: 'user.tier', value: 'platinum' },
        { entityId: 'u1', feature: 'user.embedding', value: [0, 0, 0] },
        { entityId: 'u1', feature: 'user.embedding', value: [0, 2, 0, 0] },
        { entityId: 'u1', feature: 'user.home_city', value: 'x'.repeat(17) },
        { entityId: 'u1', feature: 'user.rides_7d', value: 3, version: 1 },
        { entityId: 'u1', feature: 'user.unknown', value: 1 },
        { entityId: '', feature: 'item.in_stock', value: true },
        { entityId: 'u1', feature: 'session.score', value: Number.NaN },
      ];
      const issues = store.validate(writes);
      expect(issues.map((i) => [i.index, i.path])).toEqual([
        [1, 'value'],
        [2, 'value'],
        [3, 'value'],
        [4, 'value'],
        [5, 'value'],
        [6, 'value[1]'],
        [7, 'value'],
        [8, 'version'],
        [9, 'feature'],
        [10, 'entity_id'],
        [11, 'value'],
      ]);
      const err = await rejection(store.write('acme', writes));
      expect(isSwitchyardError(err) && err.code).toBe('SY_ERR_FEATURE_INVALID');
      expect(err.message).toContain('writes[1].value (user.rides_7d): 1001 is above max 1000');
      expect(err.message).toContain('must be one of "basic", "plus", "gold", got "platinum"');
      expect(err.message).toContain('unknown feature "user.unknown"');
      const [tier] = await store.read('acme', [{ entityId: 'u1', feature: 'user.tier' }]);
      expect(tier).toBeUndefined();
    });

    it('stops returning a value once its TTL has passed on the injected clock', async () => {
      await store.write('acme', [
        { entityId: 's1', feature: 'session.score', value: 0.5, userId: 'u1' },
        { entityId: 's1', feature: 'item.in_stock', value: true },
      ]);
      clock.advance(59_999);
      const [live] = await store.read('acme', [{ entityId: 's1', feature: 'session.score' }]);
      expect(live?.value).toBe(0.5);
      clock.advance(1);
      const [gone] = await store.read('acme', [{ entityId: 's1', feature: 'session.score' }]);
      expect(gone).toBeUndefined();
      expect((await store.readEntity('acme', 's1')).map((e) => e.feature)).toEqual([
        'item.in_stock',
      ]);
      // A fresh write starts a fresh TTL.
      await store.write('acme', [
        { entityId: 's1', feature: 'session.score', value: 0.75, userId: 'u1' },
      ]);
      clock.advance(30_000);
      const [fresh] = await store.read('acme', [{ entityId: 's1', feature: 'session.score' }]);
      expect(fresh?.value).toBe(0.75);
    });

    it("lists an entity's live values", async () => {
      await store.write('acme', [
        { entityId: 'u1', feature: 'user.rides_7d', value: 4 },
        { entityId: 'u1', feature: 'user.tier', value: 'basic' },
      ]);
      const all = await store.readEntity('acme', 'u1');
      expect(all.map((e) => [e.feature, e.value]).sort()).toEqual([
        ['user.rides_7d', 4],
        ['user.tier', 'basic'],
      ]);
      expect(await store.readEntity('acme', 'nobody')).toEqual([]);
    });

    it("purges every value of a user, on every entity, and nothing of anyone else's", async () => {
      await store.write('acme', [
        { entityId: 'u1', feature: 'user.rides_7d', value: 4 },
        { entityId: 'u1', feature: 'user.tier', value: 'gold' },
        { entityId: 's1', feature: 'session.score', value: 0.5, userId: 'u1' },
        { entityId: 'u2', feature: 'user.rides_7d', value: 9 },
        { entityId: 's2', feature: 'session.score', value: 0.1, userId: 'u2' },
      ]);
      expect(await store.purgeUser('acme', 'u1')).toBe(3);
      const out = await store.read('acme', [
        { entityId: 'u1', feature: 'user.rides_7d' },
        { entityId: 'u1', feature: 'user.tier' },
        { entityId: 's1', feature: 'session.score' },
        { entityId: 'u2', feature: 'user.rides_7d' },
        { entityId: 's2', feature: 'session.score' },
      ]);
      expect(out.map((e) => e?.value)).toEqual([undefined, undefined, undefined, 9, 0.1]);
      expect(await store.purgeUser('acme', 'u1')).toBe(0);
    });

    it('purges only the values that need the revoked purposes when purposes are given', async () => {
      await store.write('acme', [
        { entityId: 'u1', feature: 'user.rides_7d', value: 4 },
        { entityId: 'u1', feature: 'user.home_city', value: 'Lyon' },
        { entityId: 'u1', feature: 'user.tier', value: 'gold' },
        { entityId: 's1', feature: 'session.score', value: 0.5, userId: 'u1' },
      ]);
      expect(await store.purgeUser('acme', 'u1', ['behavioral_inference'])).toBe(2);
      const left = await store.readEntity('acme', 'u1');
      expect(left.map((e) => e.feature).sort()).toEqual(['user.home_city', 'user.tier']);
      expect(await store.readEntity('acme', 's1')).toEqual([]);
      expect(await store.purgeUser('acme', 'u1', ['location'])).toBe(1);
      expect(await store.purgeUser('acme', 'u1')).toBe(1);
    });

    it("counts each tenant's values exactly and refuses a batch past its cap, whole (#13)", async () => {
      const capped = await factory(TEST_DEFINITIONS, clock, { maxValuesPerTenant: 5 });
      const s = capped.store;
      const full = async (p: Promise<unknown>): Promise<void> => {
        const err = await rejection(p);
        expect(isSwitchyardError(err) && err.code).toBe('SY_ERR_TENANT_STORAGE_FULL');
      };
      try {
        // A value written twice in one batch, and again later, takes room once.
        await s.write('acme', [
          { entityId: 'u1', feature: 'user.rides_7d', value: 1 },
          { entityId: 'u1', feature: 'user.rides_7d', value: 2 },
          { entityId: 'u1', feature: 'user.tier', value: 'gold' },
          { entityId: 'u2', feature: 'user.tier', value: 'basic' },
          { entityId: 's1', feature: 'session.score', value: 0.5, userId: 'u3' },
        ]);
        expect(await s.stored('acme')).toBe(4);
        await s.write('acme', [{ entityId: 'u1', feature: 'user.rides_7d', value: 9 }]);
        expect(await s.stored('acme')).toBe(4);
        // Two new values do not fit: nothing of the batch is stored, the update included.
        await full(
          s.write('acme', [
            { entityId: 'u1', feature: 'user.rides_7d', value: 10 },
            { entityId: 'u3', feature: 'user.tier', value: 'gold' },
            { entityId: 'u4', feature: 'user.tier', value: 'gold' },
          ]),
        );
        expect(await s.stored('acme')).toBe(4);
        const [kept] = await s.read('acme', [{ entityId: 'u1', feature: 'user.rides_7d' }]);
        expect(kept?.value).toBe(9);
        // Each tenant has its own room.
        await s.write(
          'globex',
          ['a', 'b', 'c', 'd', 'e'].map((e) => ({
            entityId: e,
            feature: 'user.tier',
            value: 'gold',
          })),
        );
        expect(await s.stored('globex')).toBe(5);
        await s.write('acme', [{ entityId: 'u3', feature: 'user.tier', value: 'gold' }]);
        await full(s.write('acme', [{ entityId: 'u4', feature: 'user.tier', value: 'gold' }]));
        // Purges and expiry free exactly their room.
        expect(await s.purgeUser('acme', 'u2')).toBe(1);
        expect(await s.stored('acme')).toBe(4);
        clock.advance(60_000);
        expect(await s.readEntity('acme', 's1')).toEqual([]);
        expect(await s.stored('acme')).toBe(3);
        await s.write('acme', [
          { entityId: 'u4', feature: 'user.tier', value: 'gold' },
          { entityId: 'u5', feature: 'user.tier', value: 'gold' },
        ]);
        expect(await s.stored('acme')).toBe(5);
        expect(Object.fromEntries(await s.storedByTenant())).toMatchObject({ acme: 5, globex: 5 });
      } finally {
        await capped.close();
      }
    });

    it('accepts an int exactly when it is whole and within [min, max] (property, fixed seed)', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.oneof(fc.integer({ min: -50, max: 1100 }), fc.double({ min: -10, max: 1100 })),
          async (v) => {
            const ok = Number.isInteger(v) && v >= 0 && v <= 1000;
            const w = { entityId: 'p', feature: 'user.rides_7d', value: v };
            expect(store.validate([w])).toHaveLength(ok ? 0 : 1);
            if (ok) {
              await store.write('acme', [w]);
              const [e] = await store.read('acme', [w]);
              expect(e?.value).toBe(v);
            }
          },
        ),
        { seed: 7, numRuns: 60 },
      );
    });
  });
}
