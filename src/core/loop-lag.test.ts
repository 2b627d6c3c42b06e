import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { LoopLag } from './loop-lag.js';

/** Keeps the loop busy for `ms` in slices, yielding to timers between them; work wakes `lag`. */
async function spin(ms: number, lag: LoopLag): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    lag.wake();
    const slice = performance.now() + 8;
    while (performance.now() < slice) {
      // busy
    }
    await new Promise<void>((r) => setImmediate(r));
  }
}

describe('LoopLag', () => {
  it('says busy while the loop works without rest, and not once it idles again', async () => {
    const lag = new LoopLag(5);
    const stop = lag.acquire();
    try {
      expect(lag.busy()).toBe(false);
      await spin(300, lag);
      expect(lag.utilizationNow()).toBeGreaterThan(0.85);
      expect(lag.busy()).toBe(true);
      await sleep(300);
      expect(lag.busy()).toBe(false);
    } finally {
      stop();
    }
    expect(lag.busy()).toBe(false);
  });

  it('sleeps once no work came for a few ticks, and wakes with the next', async () => {
    const lag = new LoopLag(5);
    const stop = lag.acquire();
    try {
      expect(lag.sampling()).toBe(true);
      await sleep(150); // 30 ticks, no wake
      expect(lag.sampling()).toBe(false);
      expect(lag.busy()).toBe(false);
      expect(lag.sustainedMs()).toBe(0);
      lag.wake();
      expect(lag.sampling()).toBe(true);
      await spin(300, lag);
      expect(lag.busy()).toBe(true);
      // Work that keeps coming keeps it awake.
      for (let i = 0; i < 10; i++) {
        lag.wake();
        await sleep(10);
      }
      expect(lag.sampling()).toBe(true);
    } finally {
      stop();
    }
    lag.wake(); // released: a wake does not restart it
    expect(lag.sampling()).toBe(false);
  });
});
