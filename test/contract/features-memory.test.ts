import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { FeatureSource } from '../../src/contracts/feature-source.js';
import { MemoryFeatureStore } from '../../src/features/memory-feature-store.js';
import { ReplicatedFeatureStore } from '../../src/features/replicated-feature-store.js';
import { SqliteFeatureJournal } from '../../src/features/sqlite-feature-journal.js';
import { ClusterBus } from '../support/cluster-bus.js';
import { featureSourceContract, ManualClock, TEST_DEFINITIONS } from './feature-source.contract.js';

featureSourceContract('in-process (memory only)', (definitions, clock, limits) => {
  const store = new MemoryFeatureStore({ definitions, clock, ...limits });
  return Promise.resolve({ store, close: () => store.close() });
});

featureSourceContract('in-process with SQLite write-behind', (definitions, clock, limits) => {
  const dir = mkdtempSync(join(tmpdir(), 'sy-features-'));
  const store = new MemoryFeatureStore({
    definitions,
    clock,
    ...limits,
    journal: new SqliteFeatureJournal(join(dir, 'features.db')),
    flushMs: 5,
  });
  return Promise.resolve({
    store,
    close: async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  });
});

describe('the SQLite journal behind the in-process feature store', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const open = (path: string, clock: ManualClock) =>
    new MemoryFeatureStore({
      definitions: TEST_DEFINITIONS,
      clock,
      journal: new SqliteFeatureJournal(path),
      flushMs: 1_000_000,
    });

  it('brings back live values after a restart, without expired or purged ones', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-features-'));
    dirs.push(dir);
    const path = join(dir, 'features.db');
    const clock = new ManualClock();
    const first = open(path, clock);
    await first.write('acme', [
      { entityId: 'u1', feature: 'user.rides_7d', value: 7 },
      { entityId: 'u2', feature: 'user.rides_7d', value: 8 },
      { entityId: 'u3', feature: 'user.tier', value: 'plus' },
      { entityId: 's1', feature: 'session.score', value: 0.5, userId: 'u3' },
    ]);
    // The journal lags behind memory until a flush: reads never wait for it.
    expect(first.readSync('acme', [{ entityId: 'u1', feature: 'user.rides_7d' }])[0]?.value).toBe(
      7,
    );
    expect(await first.purgeUser('acme', 'u2')).toBe(1);
    await first.close();

    clock.advance(60_000); // the session score's TTL has passed
    const second = open(path, clock);
    const out = await second.read('acme', [
      { entityId: 'u1', feature: 'user.rides_7d' },
      { entityId: 'u2', feature: 'user.rides_7d' },
      { entityId: 'u3', feature: 'user.tier' },
      { entityId: 's1', feature: 'session.score' },
    ]);
    expect(out.map((e) => e?.value)).toEqual([7, undefined, 'plus', undefined]);
    // The user index is rebuilt too: a purge after the restart still finds the user's values.
    expect(await second.purgeUser('acme', 'u3')).toBe(1);
    await second.close();
  });

  it('sweeps expired values nobody reads again out of memory and the journal, a slice at a time', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-features-'));
    dirs.push(dir);
    const path = join(dir, 'features.db');
    const clock = new ManualClock();
    const store = open(path, clock);
    const writes = Array.from({ length: 50 }, (_, i) => ({
      entityId: `s${i}`,
      feature: 'session.score',
      value: 0.5,
      userId: `u${i}`,
    }));
    await store.write('acme', [...writes, { entityId: 'u1', feature: 'user.tier', value: 'gold' }]);
    clock.advance(60_000);
    expect(store.size()).toBe(51);
    expect(store.sweepExpired(20)).toBe(20);
    expect(store.sweepExpired(1_000)).toBe(30);
    expect(store.size()).toBe(1);
    await store.flush();
    const reader = new SqliteFeatureJournal(path);
    expect(reader.load(0).map((r) => r.entry.feature)).toEqual(['user.tier']);
    reader.close();
    // The swept users are gone from the user index too.
    expect(await store.purgeUser('acme', 'u3')).toBe(0);
    await store.close();
  });

  it('makes a purge durable before it resolves, even with writes still queued', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-features-'));
    dirs.push(dir);
    const path = join(dir, 'features.db');
    const clock = new ManualClock();
    const first = open(path, clock);
    await first.write('acme', [{ entityId: 'u1', feature: 'user.rides_7d', value: 7 }]);
    await first.flush();
    await first.write('acme', [{ entityId: 'u1', feature: 'user.tier', value: 'gold' }]);
    await first.purgeUser('acme', 'u1');
    // A second process opening the file now (the first never closed) sees nothing of u1.
    const reader = new SqliteFeatureJournal(path);
    expect(reader.load(clock.wall()).filter((r) => r.entry.userId === 'u1')).toEqual([]);
    reader.close();
    await first.close();
  });
});

// #17: two workers of `serve --workers 2`. Every write goes through the first and every read
// through the second, so the suite passes only if a write is stored in the other worker before it
// resolves. A purge runs in both, as a consent change does (wiring/personalization.ts).
featureSourceContract('in-process, shared by two workers', (definitions, clock, limits) => {
  const bus = new ClusterBus();
  const [writer, reader] = [bus.join(), bus.join()].map(
    (w) =>
      new ReplicatedFeatureStore(new MemoryFeatureStore({ definitions, clock, ...limits }), w.peer),
  ) as [ReplicatedFeatureStore, ReplicatedFeatureStore];
  const store: FeatureSource = {
    definitions: () => reader.definitions(),
    definition: (name) => reader.definition(name),
    validate: (writes) => writer.validate(writes),
    write: (tenant, writes) => writer.write(tenant, writes),
    read: (tenant, keys) => reader.read(tenant, keys),
    readEntity: (tenant, entityId) => reader.readEntity(tenant, entityId),
    purgeUser: async (tenant, userId, purposes) => {
      const [n] = await Promise.all([
        reader.purgeUser(tenant, userId, purposes),
        writer.purgeUser(tenant, userId, purposes),
      ]);
      return n;
    },
    stored: (tenant) => reader.stored(tenant),
    storedByTenant: () => reader.storedByTenant(),
    flush: () => reader.flush(),
    close: async () => {
      await writer.close();
      await reader.close();
    },
  };
  return Promise.resolve({ store, close: () => store.close() });
});
