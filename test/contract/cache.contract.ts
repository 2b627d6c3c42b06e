import { describe, expect, it } from 'vitest';
import type { Cache } from '../../src/contracts/cache.js';

/** A clock the suite moves; implementations must read wall time from it. */
export interface SuiteClock {
  advance(ms: number): void;
}

/**
 * The Cache contract suite (#4): every implementation (in process now, Redis later) runs it.
 * `make` returns a fresh, empty cache driven by the given clock.
 */
export function cacheContract(
  name: string,
  make: () => Promise<{ cache: Cache; clock: SuiteClock }>,
): void {
  const a = { tenant: 'acme', namespace: 'support' };
  const b = { tenant: 'globex', namespace: 'support' };

  describe(`${name} (Cache contract)`, () => {
    it('returns what was set until the TTL, then nothing', async () => {
      const { cache, clock } = await make();
      await cache.set(a, 'k', { output: 1 }, { ttlMs: 1000, staleMs: 0 });
      expect((await cache.get(a, 'k'))?.entry.value).toEqual({ output: 1 });
      clock.advance(1000);
      expect(await cache.get(a, 'k')).toBeUndefined();
      expect(await cache.get(a, 'k', { allowStale: true })).toBeUndefined();
    });

    it('serves an expired entry only when asked for stale, within its stale window', async () => {
      const { cache, clock } = await make();
      await cache.set(a, 'k', { output: 1 }, { ttlMs: 1000, staleMs: 5000 });
      clock.advance(2000);
      expect(await cache.get(a, 'k')).toBeUndefined();
      expect(await cache.get(a, 'k', { allowStale: true })).toMatchObject({ stale: true });
      clock.advance(4000);
      expect(await cache.get(a, 'k', { allowStale: true })).toBeUndefined();
    });

    it('keeps tenants apart for the same key and for similar vectors', async () => {
      const { cache } = await make();
      await cache.set(a, 'k', { output: 'acme' }, { ttlMs: 1000, staleMs: 0, vector: [1, 0] });
      expect(await cache.get(b, 'k')).toBeUndefined();
      expect((await cache.nearest(b, [1, 0], { threshold: 0.5 })).hit).toBeUndefined();
      await cache.set(b, 'k', { output: 'globex' }, { ttlMs: 1000, staleMs: 0 });
      expect((await cache.get(a, 'k'))?.entry.value).toEqual({ output: 'acme' });
      expect(await cache.clearTenant('acme')).toBe(1);
      expect((await cache.get(b, 'k'))?.entry.value).toEqual({ output: 'globex' });
    });

    it('finds the nearest entry at or above the threshold, and reports the best below it', async () => {
      const { cache } = await make();
      await cache.set(a, 'x', { output: 'x' }, { ttlMs: 1000, staleMs: 0, vector: [1, 0, 0] });
      await cache.set(a, 'y', { output: 'y' }, { ttlMs: 1000, staleMs: 0, vector: [0, 1, 0] });
      const near = await cache.nearest(a, [0.9, 0.1, 0], { threshold: 0.95 });
      expect(near.hit?.key).toBe('x');
      expect(near.hit!.similarity).toBeCloseTo(0.9939, 3);
      const far = await cache.nearest(a, [0.6, 0.6, 0.5], { threshold: 0.95 });
      expect(far.hit).toBeUndefined();
      expect(far.best).toBeCloseTo(0.6 / Math.sqrt(0.97), 3);
      expect(
        (await cache.nearest({ tenant: 'acme', namespace: 'other' }, [1, 0, 0], { threshold: 0 }))
          .best,
      ).toBeUndefined();
    });

    it('deletes one entry', async () => {
      const { cache } = await make();
      await cache.set(a, 'k', { output: 1 }, { ttlMs: 1000, staleMs: 0 });
      expect(await cache.delete(a, 'k')).toBe(true);
      expect(await cache.get(a, 'k')).toBeUndefined();
      expect(await cache.delete(a, 'k')).toBe(false);
    });
  });
}
