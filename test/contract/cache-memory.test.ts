import { describe, expect, it } from 'vitest';
import { MemoryCache } from '../../src/state/cache-memory.js';
import { cacheContract } from './cache.contract.js';

function clock() {
  let t = 1_700_000_000_000;
  return { now: () => t, wall: () => t, advance: (ms: number) => void (t += ms) };
}

cacheContract('MemoryCache', () => {
  const c = clock();
  return Promise.resolve({ cache: new MemoryCache({ clock: c }), clock: c });
});

describe('MemoryCache', () => {
  it('evicts the least recently used entries of a scope past its size', async () => {
    const c = clock();
    const cache = new MemoryCache({ clock: c, maxEntriesPerScope: 10 });
    const s = { tenant: 'acme', namespace: 'j' };
    for (let i = 0; i < 10; i++) await cache.set(s, `k${i}`, { i }, { ttlMs: 1000, staleMs: 0 });
    await cache.get(s, 'k0'); // k0 is now the most recently used
    await cache.set(s, 'k10', { i: 10 }, { ttlMs: 1000, staleMs: 0 });
    expect(await cache.get(s, 'k0')).toBeDefined();
    expect(await cache.get(s, 'k1')).toBeUndefined();
    expect(await cache.get(s, 'k10')).toBeDefined();
  });
});
