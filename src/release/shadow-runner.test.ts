import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { SlotOutcome } from '../contracts/slot-resolver.js';
import { systemClock } from '../core/clock.js';
import { loopLag } from '../core/loop-lag.js';
import { CounterBuffer } from './counter-buffer.js';
import { ShadowRunner } from './shadow-runner.js';

const outcome: SlotOutcome = {
  inferenceId: 'req-1',
  slot: 'intent',
  assignment: {
    model: 'intent',
    reason: 'default',
    shadow: [{ model: 'intent', version: '2', experiment: 'intent-v2-shadow' }],
  },
  ms: 3,
  outcome: 'ok',
  output: { label: 'order_status' },
};

/** Keeps the loop late tick after tick (admitted work keeps the probe awake). */
async function stallLoop(ms: number, sliceMs: number): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    loopLag.wake();
    const slice = performance.now() + sliceMs;
    while (performance.now() < slice) {
      // busy
    }
    await new Promise<void>((r) => setImmediate(r));
  }
}

/** Mirrors one copy while the loop runs `sliceMs` late; says whether it was shed. */
async function mirrorWhileLate(maxLagMs: number, sliceMs: number): Promise<boolean> {
  const runner = new ShadowRunner(
    { maxInFlight: 8, timeoutMs: 1_000, maxLagMs },
    systemClock,
    new CounterBuffer(),
    () => undefined,
  );
  let invoked = 0;
  try {
    await stallLoop(200, sliceMs);
    runner.mirror(outcome, () => {
      invoked++;
      return Promise.resolve({ label: 'order_status' });
    });
    await sleep(20);
    return runner.shedCount === 1 && invoked === 0;
  } finally {
    runner.close();
  }
}

describe('ShadowRunner max_lag_ms', () => {
  it('sheds a copy while the event loop lags more than max_lag_ms', async () => {
    expect(await mirrorWhileLate(10, 40)).toBe(true);
  });

  it('mirrors it with the same lag when the bound is higher, or off (0)', async () => {
    expect(await mirrorWhileLate(500, 40)).toBe(false);
    expect(await mirrorWhileLate(0, 40)).toBe(false);
  });
});
