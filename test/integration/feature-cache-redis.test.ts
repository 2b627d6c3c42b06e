import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { sharedRedisOrSkip } from '../support/redis-server.js';
import type { FeatureSource } from '../../src/contracts/feature-source.js';
import { isSwitchyardError } from '../../src/core/errors.js';
import type { FeatureCacheSettings } from '../../src/features/cached-feature-store.js';
import {
  openFeatureStore,
  type OpenedFeatureStore,
} from '../../src/features/open-feature-store.js';
import { RedisFeatureStore } from '../../src/features/redis-feature-store.js';
import { Metrics } from '../../src/observability/metrics.js';
import { startRelay, type Relay } from '../support/test-network.js';
import { ManualClock, TEST_DEFINITIONS } from '../contract/feature-source.contract.js';

/**
 * The local cache of a remote feature store (#17, edge nodes), over the real Redis reached through
 * a TCP relay the test controls: closing the relay is Redis becoming unreachable. The relay also
 * counts the HMGETs that reach Redis, which is how a hit is proven to cost no remote read.
 */

const REDIS_URL = 'redis://127.0.0.1:6379';

const up = await sharedRedisOrSkip('the feature cache tests');

const ALL_LABELS = ['public', 'consented', 'sensitive', 'restricted'] as const;
const SETTINGS: FeatureCacheSettings = {
  ttl_ms: 1_000,
  stale_ms: 10_000,
  max_entries: 100,
  labels: ALL_LABELS,
};

interface Harness {
  /** The cached store, opened as `features.store` with a `cache` section opens it. */
  readonly store: OpenedFeatureStore;
  /** The same Redis keys without a cache, on a direct connection: another node's writes. */
  readonly direct: FeatureSource;
  readonly clock: ManualClock;
  readonly relay: Relay;
  /** HMGETs (feature reads) that reached Redis through the relay so far. */
  reads(): number;
}

const run = randomBytes(4).toString('hex');
let n = 0;
const open: (() => Promise<void>)[] = [];

async function harness(cache: FeatureCacheSettings = SETTINGS): Promise<Harness> {
  const prefix = `sy-test:featcache:${run}:${n++}:`;
  const clock = new ManualClock();
  let hmgets = 0;
  const relay = await startRelay(REDIS_URL, '127.0.0.1', (chunk) => {
    hmgets += chunk.toString('latin1').match(/\r\nhmget\r\n/gi)?.length ?? 0;
  });
  const logger = { warn: () => undefined } as unknown as Parameters<
    typeof openFeatureStore
  >[2]['logger'];
  const store = await openFeatureStore(
    // What `features.store` in YAML becomes once the schema has filled its defaults.
    { kind: 'redis', url: relay.url, prefix, command_timeout_ms: 200, cache },
    TEST_DEFINITIONS,
    { dir: '.', clock, logger },
  );
  const direct = new RedisFeatureStore({
    url: REDIS_URL,
    prefix,
    definitions: TEST_DEFINITIONS,
    clock,
    commandTimeoutMs: 1_000,
  });
  await direct.ready(2_000);
  open.push(async () => {
    await store.close();
    await relay.close();
    const { Redis } = await import('ioredis');
    const r = new Redis(REDIS_URL, { maxRetriesPerRequest: 0 });
    const keys = await r.keys(`${prefix}*`);
    if (keys.length > 0) await r.del(...keys);
    r.disconnect();
    await direct.close();
  });
  return { store, direct, clock, relay, reads: () => hmgets };
}

afterEach(async () => {
  for (const close of open.splice(0)) await close();
});

const tier = { entityId: 'u1', feature: 'user.tier' };
const rides = { entityId: 'u1', feature: 'user.rides_7d' };

async function failure(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => 'resolved',
    (e: unknown) => (isSwitchyardError(e) ? e.code : e),
  );
}

describe.skipIf(!up)('the local cache of a Redis feature store (features.store.cache)', () => {
  it('answers a value read within ttl_ms from memory, without a read reaching Redis', async () => {
    const h = await harness();
    await h.store.write('acme', [{ ...tier, value: 'gold' }]);
    expect((await h.store.read('acme', [tier]))[0]?.value).toBe('gold');
    const before = h.reads();
    // Another node changes the value: this node keeps its copy until ttl_ms has passed.
    await h.direct.write('acme', [{ ...tier, value: 'basic' }]);
    h.clock.advance(999);
    expect((await h.store.read('acme', [tier]))[0]?.value).toBe('gold');
    expect(h.reads()).toBe(before);
    h.clock.advance(1);
    expect((await h.store.read('acme', [tier]))[0]?.value).toBe('basic');
    expect(h.reads()).toBe(before + 1);
  });

  it('caches that a value does not exist, and reads only the keys it does not hold', async () => {
    const h = await harness();
    expect(await h.store.read('acme', [tier])).toEqual([undefined]);
    const before = h.reads();
    expect(await h.store.read('acme', [tier])).toEqual([undefined]);
    expect(h.reads()).toBe(before);
    await h.direct.write('acme', [{ ...rides, value: 3 }]);
    const [t, r] = await h.store.read('acme', [tier, rides]);
    expect(t).toBeUndefined();
    expect(r?.value).toBe(3);
    expect(h.reads()).toBe(before + 1);
  });

  it('never serves a value past its own feature TTL, fresh or stale', async () => {
    const h = await harness({ ...SETTINGS, ttl_ms: 120_000 });
    const session = { entityId: 's1', feature: 'session.score' }; // ttl 60 s
    await h.store.write('acme', [{ ...session, value: 0.5, userId: 'u1' }]);
    expect((await h.store.read('acme', [session]))[0]?.value).toBe(0.5);
    h.clock.advance(60_000);
    expect(await h.store.read('acme', [session])).toEqual([undefined]);
  });

  it('serves values read within ttl_ms + stale_ms when Redis is unreachable, marked stale and counted', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    try {
      const h = await harness();
      await h.store.write('acme', [
        { ...tier, value: 'gold' },
        { ...rides, value: 4 },
      ]);
      expect(await h.store.readMarked!('acme', [tier, rides])).toMatchObject({ stale: false });
      await h.relay.close();
      // Fresh values need no Redis at all.
      expect((await h.store.readMarked!('acme', [tier])).stale).toBe(false);
      h.clock.advance(1_000 + 9_999);
      const stale = await h.store.readMarked!('acme', [tier, rides]);
      expect(stale.stale).toBe(true);
      expect(stale.entries.map((e) => e?.value)).toEqual(['gold', 4]);
      // A value never read is not guessed absent: the read fails as the store's would.
      expect(await failure(h.store.read('acme', [{ entityId: 'u2', feature: 'user.tier' }]))).toBe(
        'SY_ERR_FEATURE_STORE_UNAVAILABLE',
      );
      h.clock.advance(1);
      expect(await failure(h.store.read('acme', [tier]))).toBe('SY_ERR_FEATURE_STORE_UNAVAILABLE');
      const text = await metrics.render();
      expect(text).toMatch(/switchyard_feature_cache_total\{result="stale"\} 2\n/);
      expect(text).toMatch(/switchyard_feature_cache_total\{result="error"\} 2\n/);
      expect(text).toMatch(/switchyard_feature_cache_total\{result="hit"\} 1\n/);
      expect(text).toMatch(/switchyard_feature_cache_total\{result="miss"\} 2\n/);
    } finally {
      metrics.close();
    }
  });

  it('serves nothing stale when stale_ms is 0', async () => {
    const h = await harness({ ...SETTINGS, stale_ms: 0 });
    await h.store.write('acme', [{ ...tier, value: 'gold' }]);
    await h.store.read('acme', [tier]);
    await h.relay.close();
    h.clock.advance(1_000);
    expect(await failure(h.store.read('acme', [tier]))).toBe('SY_ERR_FEATURE_STORE_UNAVAILABLE');
  });

  it("drops a user's cached values at once on a purge, and only that user's", async () => {
    const h = await harness();
    await h.store.write('acme', [
      { ...rides, value: 4 },
      { entityId: 's1', feature: 'session.score', value: 0.5, userId: 'u1' },
      { entityId: 'u2', feature: 'user.rides_7d', value: 9 },
    ]);
    const keys = [rides, { entityId: 's1', feature: 'session.score' }];
    const other = { entityId: 'u2', feature: 'user.rides_7d' };
    await h.store.read('acme', [...keys, other]);
    // One purpose revoked: the cache drops all of u1's values whatever their purpose.
    expect(await h.store.purgeUser('acme', 'u1', ['behavioral_inference'])).toBe(2);
    await h.relay.close();
    // Redis is gone, so only the cache could answer: it no longer holds u1's values.
    expect(await failure(h.store.read('acme', [keys[0]!]))).toBe(
      'SY_ERR_FEATURE_STORE_UNAVAILABLE',
    );
    expect(await failure(h.store.read('acme', [keys[1]!]))).toBe(
      'SY_ERR_FEATURE_STORE_UNAVAILABLE',
    );
    expect((await h.store.read('acme', [other]))[0]?.value).toBe(9);
  });

  it('does not let a read in flight during a purge put the purged value back', async () => {
    const h = await harness();
    await h.store.write('acme', [{ ...rides, value: 4 }]);
    // The read reaches Redis before the purge and answers the value; it must not be kept.
    const reading = h.store.read('acme', [rides]);
    const purging = h.store.purgeUser('acme', 'u1');
    expect((await reading)[0]?.value).toBe(4);
    expect(await purging).toBe(1);
    await h.relay.close();
    expect(await failure(h.store.read('acme', [rides]))).toBe('SY_ERR_FEATURE_STORE_UNAVAILABLE');
  });

  it('drops a user on dropCachedUser (a revocation heard from another node) without asking Redis', async () => {
    const h = await harness();
    await h.store.write('acme', [{ ...rides, value: 4 }]);
    await h.store.read('acme', [rides]);
    await h.relay.close();
    expect(h.store.dropCachedUser!('acme', 'u1')).toBe(1);
    expect(await failure(h.store.read('acme', [rides]))).toBe('SY_ERR_FEATURE_STORE_UNAVAILABLE');
  });

  it('replaces a cached value at once when a write goes through this node', async () => {
    const h = await harness({ ...SETTINGS, ttl_ms: 60_000 });
    await h.store.write('acme', [{ ...tier, value: 'gold' }]);
    await h.store.read('acme', [tier]);
    await h.store.write('acme', [{ ...tier, value: 'plus' }]);
    expect((await h.store.read('acme', [tier]))[0]?.value).toBe('plus');
  });

  it('keeps at most max_entries values, the least recently used going first', async () => {
    const h = await harness({ ...SETTINGS, max_entries: 2 });
    const users = ['a', 'b', 'c'].map((u) => ({ entityId: u, feature: 'user.tier' }));
    await h.store.write(
      'acme',
      users.map((k) => ({ ...k, value: 'gold' })),
    );
    for (const k of users) await h.store.read('acme', [k]);
    // `a` was used least recently and went when `c` came in.
    await h.direct.write(
      'acme',
      users.map((k) => ({ ...k, value: 'basic' })),
    );
    const before = h.reads();
    const values = [];
    for (const k of [users[2]!, users[1]!, users[0]!])
      values.push((await h.store.read('acme', [k]))[0]?.value);
    expect(values).toEqual(['gold', 'gold', 'basic']);
    expect(h.reads()).toBe(before + 1);
  });

  it('never holds values of labels not listed in labels', async () => {
    // user.home_city is `sensitive`; user.tier is `public`.
    const h = await harness({ ...SETTINGS, labels: ['public'] });
    const city = { entityId: 'u1', feature: 'user.home_city' };
    await h.store.write('acme', [
      { ...tier, value: 'gold' },
      { ...city, value: 'Porto' },
    ]);
    await h.store.read('acme', [tier, city]);
    await h.direct.write('acme', [
      { ...tier, value: 'basic' },
      { ...city, value: 'Lisbon' },
    ]);
    const [t, c] = await h.store.read('acme', [tier, city]);
    expect(t?.value).toBe('gold');
    expect(c?.value).toBe('Lisbon');
    await h.relay.close();
    expect(await failure(h.store.read('acme', [city]))).toBe('SY_ERR_FEATURE_STORE_UNAVAILABLE');
  });
});
