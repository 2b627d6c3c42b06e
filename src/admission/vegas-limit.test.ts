import { describe, expect, it } from 'vitest';
import { TEST_CONCURRENCY } from '../../test/support/admission-settings.js';
import { upstreamMs } from './admission-controller.js';
import { VegasLimit } from './vegas-limit.js';

const spec = {
  ...TEST_CONCURRENCY,
  algorithm: 'vegas' as const,
  initial_limit: 4,
  max_limit: 200,
  probe_interval_ms: 1e12,
};

/** An upstream with `slots` workers and a fixed service time: latency grows past `slots`. */
function rttAt(inFlight: number, slots: number, serviceMs: number): number {
  return serviceMs * Math.max(1, inFlight / slots);
}

describe('VegasLimit', () => {
  it('settles just above the upstream’s real concurrency when latency rises past it', () => {
    const limit = new VegasLimit({ ...spec, probe_interval_ms: 1_000 }, 0);
    let t = 0;
    for (let i = 0; i < 4_950; i++) {
      const inFlight = limit.current(); // saturated: always as many as allowed
      limit.onSample(rttAt(inFlight, 8, 20), inFlight, false, (t += 1));
    }
    expect(limit.current()).toBeGreaterThanOrEqual(8);
    expect(limit.current()).toBeLessThanOrEqual(16);
  });

  it('grows while latency stays at its no-load level', () => {
    const limit = new VegasLimit(spec, 0);
    for (let i = 0; i < 500; i++) limit.onSample(10, limit.current(), false, i);
    expect(limit.current()).toBeGreaterThan(40);
  });

  it('does not grow while the caller uses less than half of it', () => {
    const limit = new VegasLimit(spec, 0);
    for (let i = 0; i < 500; i++) limit.onSample(10, 1, false, i);
    expect(limit.current()).toBe(4);
  });

  it('backs off on drops and never goes under its minimum', () => {
    const limit = new VegasLimit({ ...spec, min_limit: 3 }, 0);
    for (let i = 0; i < 2_000; i++) limit.onSample(10, limit.current(), true, i);
    expect(limit.current()).toBe(3);
  });

  it('halves for a moment at each probe to measure the no-load latency again', () => {
    const limit = new VegasLimit({ ...spec, probe_interval_ms: 1_000 }, 0);
    for (let i = 0; i < 100; i++) limit.onSample(10, limit.current(), false, i);
    const before = limit.current();
    limit.onSample(10, before, false, 1_000);
    expect(limit.current()).toBeLessThanOrEqual(Math.ceil(before / 2));
  });

  it('follows demand, not latency, while the gateway’s own loop is saturated', () => {
    // Latency grows with the gateway's own load (it queues the answers itself), not the upstream's.
    const run = (busy: boolean): number => {
      const limit = new VegasLimit({ ...spec, initial_limit: 20 }, 0, () => busy);
      for (let i = 0; i < 5_000; i++) {
        const inFlight = limit.current();
        limit.onSample(20 + 0.5 * inFlight, inFlight, false, i);
      }
      return limit.current();
    };
    // Blaming the upstream, the limit stays small; following demand, it grows.
    expect(run(false)).toBeLessThan(30);
    expect(run(true)).toBeGreaterThan(60);
  });

  it('reaches the demand within two seconds while the gateway’s own loop is saturated', () => {
    // 200 clients in front of a 20 ms upstream: a sample every 0.1 ms, a window every 20 ms.
    const limit = new VegasLimit({ ...spec, initial_limit: 20, max_limit: 1_000 }, 0, () => true);
    let t = 0;
    for (let i = 0; i < 20_000; i++) {
      const inFlight = Math.min(200, limit.current());
      limit.onSample(25, inFlight, false, (t += 0.1));
    }
    expect(limit.current()).toBeGreaterThanOrEqual(200);
    expect(limit.current()).toBeLessThan(230);
  });

  it('closes half the queue a window while the gateway’s own loop is saturated', () => {
    // The same 200 clients, the gate telling how many wait for a slot: in half a second (57 at
    // 6 log10 a window).
    const limit = new VegasLimit({ ...spec, initial_limit: 20, max_limit: 1_000 }, 0, () => true);
    let t = 0;
    for (let i = 0; i < 5_000; i++) {
      const inFlight = Math.min(200, limit.current());
      limit.onSample(25, inFlight, false, (t += 0.1), 200 - inFlight);
    }
    expect(limit.current()).toBeGreaterThanOrEqual(170);
    expect(limit.current()).toBeLessThanOrEqual(200);
  });

  it('does not grow past demand while the gateway’s own loop is saturated', () => {
    const limit = new VegasLimit({ ...spec, initial_limit: 20 }, 0, () => true);
    for (let i = 0; i < 5_000; i++) limit.onSample(40, 12, false, i);
    expect(limit.current()).toBe(20);
  });

  it('still backs off on drops while the gateway’s own loop is saturated', () => {
    const limit = new VegasLimit({ ...spec, initial_limit: 100 }, 0, () => true);
    for (let i = 0; i < 5_000; i++) limit.onSample(20, limit.current(), true, i);
    expect(limit.current()).toBeLessThan(50);
  });

  it('learns streams (no latency) from demand and drops: grows while full, never backs off on their latency', () => {
    const limit = new VegasLimit({ ...spec, initial_limit: 10, probe_interval_ms: 1_000 }, 0);
    // A no-load latency from unary calls, then only streams, always filling every slot.
    for (let i = 0; i < 10; i++) limit.onSample(1, 10, false, i);
    for (let i = 0; i < 5_000; i++) limit.onSample(undefined, limit.current(), false, 10 + i);
    expect(limit.current()).toBeGreaterThan(20); // grew; no probe halved it
    const full = limit.current();
    // Streams using part of it: it holds.
    for (let i = 0; i < 5_000; i++) limit.onSample(undefined, 8, false, 10_000 + i);
    expect(limit.current()).toBe(full);
    // Dropped streams (first-event timeouts, upstream 429/503) back it off.
    for (let i = 0; i < 2_000; i++) limit.onSample(undefined, limit.current(), true, 20_000 + i);
    expect(limit.current()).toBeLessThan(full / 2);
  });
});

describe('round trips taken on a late event loop (upstreamMs, issue #14)', () => {
  it('are used as measured while the lateness is a small part of them, else not at all', () => {
    expect(upstreamMs(20, 2)).toBe(20);
    expect(upstreamMs(20, 5)).toBe(20);
    expect(upstreamMs(20, 6)).toBeUndefined();
    expect(upstreamMs(1, 30)).toBeUndefined();
  });

  it('learn a 20 ms upstream behind a busy loop that delays some answers and not others', () => {
    // The upstream answers in 20 ms at any concurrency; the gateway's loop, busy but not
    // saturated (lateness ~4 ms by its probe), makes each answer wait 0-6 ms for a callback.
    // Taken as `rtt − lag`, the fastest samples (16 ms) set the no-load latency and the mean of
    // a window read as a queue. The window's smallest round trip is the
    // upstream's.
    let seed = 7;
    const random = (): number => (seed = (seed * 48_271) % 2_147_483_647) / 2_147_483_647;
    const limit = new VegasLimit({ ...spec, initial_limit: 20 }, 0);
    let t = 0;
    for (let i = 0; i < 100_000; i++) {
      const inFlight = limit.current(); // 200 clients: every slot taken
      limit.onSample(upstreamMs(20 + 6 * random(), 4), inFlight, false, (t += 0.1));
    }
    // It reaches the spec's max_limit (200); with `rtt − lag` and a window's mean it held at 129.
    expect(limit.current()).toBeGreaterThanOrEqual(190);
  });

  it('keep the limit up in front of a 20 ms upstream through the gateway’s own loop stalls', () => {
    // The upstream answers in 20 ms at any concurrency. Now and then the gateway's loop stalls
    // (a GC pause, a burst of its own work): for 40 answers it is 30 ms late by its own probe
    // (fast attack, slow decay) while the answers waited 10 ms. Taken as `rtt − lag` (floored
    // at a tenth), such a stretch read as a 3 ms round trip: the limit's no-load latency, after
    // which every true 20 ms round trip looked like a long queue.
    const limit = new VegasLimit({ ...spec, initial_limit: 20 }, 0);
    let t = 0;
    for (let i = 0; i < 5_000; i++) {
      const stalled = i % 500 < 40;
      const rtt = upstreamMs(stalled ? 30 : 21, stalled ? 30 : 1);
      limit.onSample(rtt, limit.current(), false, (t += 1));
    }
    expect(limit.current()).toBeGreaterThanOrEqual(20);
  });
});
