import { afterEach, describe, expect, it } from 'vitest';
import type { FeatureEntry } from '../contracts/feature-source.js';
import { ManualClock, TEST_DEFINITIONS } from '../../test/contract/feature-source.contract.js';
import { ClusterBus, type BusWorker } from '../../test/support/cluster-bus.js';
import { MemoryFeatureStore } from './memory-feature-store.js';
import { ReplicatedFeatureStore, type ReplicationOptions } from './replicated-feature-store.js';

const T0 = 1_800_000_000_000;

describe('the embedded feature store shared by the workers of serve --workers N (#17)', () => {
  const open: ReplicatedFeatureStore[] = [];
  afterEach(async () => {
    for (const s of open.splice(0)) await s.close();
  });

  const worker = (
    bus: ClusterBus,
    clock: ManualClock,
    options: ReplicationOptions = {},
    up = true,
  ): { store: ReplicatedFeatureStore; w: BusWorker } => {
    const w = bus.join(up);
    const memory = new MemoryFeatureStore({ definitions: TEST_DEFINITIONS, clock, sweepMs: 0 });
    const store = new ReplicatedFeatureStore(memory, w.peer, options);
    open.push(store);
    return { store, w };
  };

  const one = async (store: ReplicatedFeatureStore, entityId: string, feature: string) =>
    (await store.read('acme', [{ entityId, feature }]))[0];

  it("stores a write in every other worker before it resolves, with the writer's stamp and TTL", async () => {
    const bus = new ClusterBus();
    const clockA = new ManualClock(T0);
    // The other worker's clock reads later: the value must still expire 60 s after its write.
    const clockB = new ManualClock(T0 + 30_000);
    const a = worker(bus, clockA).store;
    const b = worker(bus, clockB).store;
    await a.write('acme', [
      { entityId: 's1', feature: 'session.score', value: 0.5, userId: 'u1' },
      { entityId: 'u1', feature: 'user.tier', value: 'gold' },
    ]);
    expect(await one(b, 'u1', 'user.tier')).toMatchObject({ value: 'gold', writtenAt: T0 });
    expect(await one(b, 's1', 'session.score')).toMatchObject({
      value: 0.5,
      userId: 'u1',
      writtenAt: T0,
      expiresAt: T0 + 60_000,
    });
    clockB.t = T0 + 60_000;
    expect(await one(b, 's1', 'session.score')).toBeUndefined();
    expect(await b.stored('acme')).toBe(1);
  });

  it('keeps the same value of a key in every worker when two writes of it cross', async () => {
    for (const [ta, tb] of [
      [T0, T0 + 1],
      [T0 + 1, T0],
      [T0, T0],
    ] as const) {
      const bus = new ClusterBus();
      const a = worker(bus, new ManualClock(ta)).store;
      const b = worker(bus, new ManualClock(tb)).store;
      // Each stores its own value at once, then hears of the other's: opposite orders.
      await Promise.all([
        a.write('acme', [{ entityId: 'u1', feature: 'user.tier', value: 'gold' }]),
        b.write('acme', [{ entityId: 'u1', feature: 'user.tier', value: 'plus' }]),
      ]);
      const [inA, inB] = [await one(a, 'u1', 'user.tier'), await one(b, 'u1', 'user.tier')];
      expect(inA).toEqual(inB);
      if (ta !== tb) expect(inA?.value).toBe(ta > tb ? 'gold' : 'plus');
    }
  });

  it('hands a rewrite made in the same millisecond to the other worker as the newer value', async () => {
    const bus = new ClusterBus();
    const clock = new ManualClock(T0);
    const a = worker(bus, clock).store;
    const b = worker(bus, new ManualClock(T0)).store;
    // 'plus' sorts after 'basic': kept on a tie, it would win the rewrite in the other worker.
    await a.write('acme', [{ entityId: 'u1', feature: 'user.tier', value: 'plus' }]);
    await a.write('acme', [{ entityId: 'u1', feature: 'user.tier', value: 'basic' }]);
    expect((await one(a, 'u1', 'user.tier'))?.value).toBe('basic');
    expect(await one(b, 'u1', 'user.tier')).toEqual(await one(a, 'u1', 'user.tier'));
    expect((await one(b, 'u1', 'user.tier'))?.writtenAt).toBe(T0 + 1);
  });

  it('copies every value to a worker that starts, chunk by chunk, and the writes made meanwhile', async () => {
    const bus = new ClusterBus();
    const clock = new ManualClock(T0);
    const a = worker(bus, clock).store;
    const users = Array.from({ length: 25 }, (_, i) => `u${i}`);
    await a.write(
      'acme',
      users.map((u) => ({ entityId: u, feature: 'user.rides_7d', value: 1 })),
    );
    await a.write('globex', [{ entityId: 'g1', feature: 'user.tier', value: 'gold' }]);
    const c = worker(bus, new ManualClock(T0 + 5), { chunk: 4 }, false);
    const joining = c.store.join();
    // Written while the copy runs: it reaches the starting worker as a broadcast, after the copy.
    await a.write('acme', [
      { entityId: 'u0', feature: 'user.rides_7d', value: 9 },
      { entityId: 'late', feature: 'user.tier', value: 'plus' },
    ]);
    expect(await joining).toBeGreaterThanOrEqual(26);
    await bus.start(c.w);
    expect(await c.store.stored('acme')).toBe(26);
    expect(await c.store.stored('globex')).toBe(1);
    expect((await one(c.store, 'u0', 'user.rides_7d'))?.value).toBe(9);
    expect((await one(c.store, 'late', 'user.tier'))?.value).toBe('plus');
    expect((await one(c.store, 'u24', 'user.rides_7d'))?.value).toBe(1);
  });

  it('starts the copy over when a chunk is lost on the way, and still gets every value', async () => {
    const bus = new ClusterBus();
    const a = worker(bus, new ManualClock(T0)).store;
    await a.write(
      'acme',
      Array.from({ length: 10 }, (_, i) => ({
        entityId: `u${i}`,
        feature: 'user.tier',
        value: 'gold',
      })),
    );
    const w = bus.join(false);
    let asked = 0;
    // The second chunk is handed out (the other worker moves past it) but never arrives.
    const lossy = {
      ...w.peer,
      askPeer: async (topic: string, body: unknown) => {
        const answer = await w.peer.askPeer(topic, body);
        if (++asked === 2) throw new Error('the worker did not answer features.copy in 5000 ms');
        return answer;
      },
    };
    const memory = new MemoryFeatureStore({
      definitions: TEST_DEFINITIONS,
      clock: new ManualClock(T0),
      sweepMs: 0,
    });
    const c = new ReplicatedFeatureStore(memory, lossy, { chunk: 3 });
    open.push(c);
    await c.join();
    expect(asked).toBeGreaterThan(2);
    expect(await c.stored('acme')).toBe(10);
  });

  it('copies nothing when no other worker is up', async () => {
    const bus = new ClusterBus();
    const a = worker(bus, new ManualClock(T0), {}, false).store;
    worker(bus, new ManualClock(T0), {}, false);
    expect(await a.join()).toBe(0);
  });

  it('does not store a value the other worker no longer admits when it arrives', async () => {
    const bus = new ClusterBus();
    const seen: FeatureEntry[] = [];
    const a = worker(bus, new ManualClock(T0)).store;
    const b = worker(bus, new ManualClock(T0), {
      admit: (tenant, entry) => {
        seen.push(entry);
        return entry.purpose === undefined;
      },
    }).store;
    await a.write('acme', [
      { entityId: 'u1', feature: 'user.rides_7d', value: 3 },
      { entityId: 'u1', feature: 'user.tier', value: 'gold' },
    ]);
    expect(seen.map((e) => e.feature)).toEqual(['user.rides_7d', 'user.tier']);
    expect(await one(b, 'u1', 'user.rides_7d')).toBeUndefined();
    expect((await one(b, 'u1', 'user.tier'))?.value).toBe('gold');
    expect((await one(a, 'u1', 'user.rides_7d'))?.value).toBe(3);
  });
});
