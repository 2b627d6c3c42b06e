import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { LoopLag } from './loop-lag.js';

/** Keeps the loop busy for `ms` in slices, yielding to timers between them. */
async function spin(ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
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
      await spin(300);
      expect(lag.utilizationNow()).toBeGreaterThan(0.85);
      expect(lag.busy()).toBe(true);
      await sleep(300);
      expect(lag.busy()).toBe(false);
    } finally {
      stop();
    }
    expect(lag.busy()).toBe(false);
  });
});
