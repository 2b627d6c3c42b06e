import { describe, expect, it } from 'vitest';
import type { Clock } from '../core/clock.js';
import { isSwitchyardError } from '../core/errors.js';
import {
  ConcurrencyGate,
  type GateObserver,
  type GateRefusal,
  type Permit,
} from './concurrency-gate.js';
import { TEST_CLASSES, TEST_CONCURRENCY } from '../../test/support/admission-settings.js';

class ManualClock implements Clock {
  t = 1_000;
  now(): number {
    return this.t;
  }
  wall(): number {
    return this.t;
  }
}

function setup(spec = TEST_CONCURRENCY) {
  const clock = new ManualClock();
  const refusals: [string, GateRefusal][] = [];
  const observer: GateObserver = {
    queued: () => undefined,
    refused: (req, why) => refusals.push([req.trafficClass, why]),
  };
  const gate = new ConcurrencyGate('m', spec, clock, observer, 3);
  const ac = new AbortController();
  const req = (cls: string, deadlineIn = 60_000) => ({
    trafficClass: cls,
    priority: TEST_CLASSES[cls]!.priority,
    deadlineAt: clock.t + deadlineIn,
    budgetMs: deadlineIn,
    maxWaitMs: 60_000,
    signal: ac.signal,
  });
  return { clock, gate, refusals, req, ac };
}

describe('ConcurrencyGate', () => {
  it('samples the share of calls it shed, once enough calls came to mean something', async () => {
    const { gate, req } = setup({ ...TEST_CONCURRENCY, max_queue: 1 });
    const running = await gate.acquire(req('interactive'));
    const waiting = gate.acquire(req('interactive'));
    const shed = await Promise.all(
      Array.from({ length: 8 }, () => gate.acquire(req('interactive')).catch((e: unknown) => e)),
    );
    expect(shed.every((e) => isSwitchyardError(e) && e.code === 'SY_ERR_SHED')).toBe(true);
    gate.noteShed(); // a shed-curve refusal counts too
    // 1 started + 9 shed + 1 queued (not yet started): 9 of 10 decided calls were shed.
    expect(gate.takeSample().shedRate).toBeCloseTo(0.9);
    running.release({ ok: true });
    (await waiting).release({ ok: true });
    // A quiet sample (one call) says nothing.
    expect(gate.takeSample().shedRate).toBe(0);
  });

  it('serves waiting requests most critical class first, oldest first within a class', async () => {
    const { gate, req } = setup();
    let permit: Permit = await gate.acquire(req('interactive'));
    const order: string[] = [];
    const permits = new Map<string, Permit>();
    const arrivals: [string, string][] = [
      ['batch', 'batch-1'],
      ['background', 'background-1'],
      ['interactive', 'interactive-1'],
      ['background', 'background-2'],
      ['personalization', 'personalization-1'],
      ['interactive', 'interactive-2'],
    ];
    for (const [cls, tag] of arrivals) {
      void gate.acquire(req(cls)).then((p) => {
        order.push(tag);
        permits.set(tag, p);
      });
    }
    for (let i = 0; i < arrivals.length; i++) {
      permit.release({ ok: true });
      await new Promise((r) => setImmediate(r));
      expect(order).toHaveLength(i + 1); // one slot freed, exactly one more started
      permit = permits.get(order.at(-1)!)!;
    }
    permit.release({ ok: true });
    expect(order).toEqual([
      'interactive-1',
      'interactive-2',
      'personalization-1',
      'background-1',
      'background-2',
      'batch-1',
    ]);
  });

  it('drops a waiting request whose deadline passed without ever starting it', async () => {
    const { gate, req, clock, refusals } = setup();
    const running = await gate.acquire(req('interactive'));
    const late = gate.acquire(req('interactive', 50));
    const onTime = gate.acquire(req('background', 10_000));
    clock.t += 100; // the first waiter's deadline is gone, the second's is not
    running.release({ ok: true });
    await expect(late).rejects.toMatchObject({ code: 'SY_ERR_DEADLINE_EXCEEDED' });
    const p = await onTime;
    expect(refusals).toEqual([['interactive', 'deadline']]);
    expect(gate.stats()).toMatchObject({ inFlight: 1, queued: 0 });
    p.release({ ok: true });
  });

  it('refuses at once when the queue is full of requests as critical or more', async () => {
    const { gate, req, refusals } = setup({ ...TEST_CONCURRENCY, max_queue: 2 });
    const running = await gate.acquire(req('interactive'));
    const queued = [gate.acquire(req('interactive')), gate.acquire(req('interactive'))];
    const err: unknown = await gate.acquire(req('background')).catch((e: unknown) => e);
    expect(isSwitchyardError(err) && err.code).toBe('SY_ERR_SHED');
    expect(isSwitchyardError(err) && err.retryAfterS).toBe(3);
    expect(refusals).toEqual([['background', 'queue_full']]);
    expect(gate.stats().queued).toBe(2);
    running.release({ ok: true });
    (await queued[0]!).release({ ok: true });
    (await queued[1]!).release({ ok: true });
  });

  it('lets a critical request evict the newest waiter of a lower class from a full queue', async () => {
    const { gate, req, refusals } = setup({ ...TEST_CONCURRENCY, max_queue: 2 });
    const running = await gate.acquire(req('interactive'));
    const bg1 = gate.acquire(req('background'));
    const bg2 = gate.acquire(req('background'));
    const vip = gate.acquire(req('interactive'));
    await expect(bg2).rejects.toMatchObject({ code: 'SY_ERR_SHED' });
    expect(refusals).toEqual([['background', 'evicted']]);
    running.release({ ok: true });
    (await vip).release({ ok: true });
    (await bg1).release({ ok: true });
    expect(gate.stats()).toMatchObject({ inFlight: 0, queued: 0 });
  });

  it('gives a waiter back when its client goes away', async () => {
    const { gate, req, ac, refusals } = setup();
    const running = await gate.acquire(req('interactive'));
    const waiting = gate.acquire(req('background'));
    ac.abort(new Error('gone'));
    await expect(waiting).rejects.toBeDefined();
    expect(refusals).toEqual([['background', 'cancelled']]);
    expect(gate.stats().queued).toBe(0);
    running.release({ ok: true });
  });

  it('sheds a waiter that waited its class queue timeout', async () => {
    const { gate, req, refusals } = setup();
    const running = await gate.acquire(req('interactive'));
    const waiting = gate.acquire({ ...req('background'), maxWaitMs: 5 });
    await expect(waiting).rejects.toMatchObject({ code: 'SY_ERR_SHED' });
    expect(refusals).toEqual([['background', 'queue_timeout']]);
    running.release({ ok: true });
  });

  it('refuses at once a request that could not start before its queue timeout', async () => {
    const { gate, req, clock, refusals } = setup();
    const first = await gate.acquire(req('interactive'));
    clock.t += 100;
    first.release({ ok: true }); // permits are held ~100 ms
    const running = await gate.acquire(req('interactive'));
    const err = await gate
      .acquire({ ...req('background'), maxWaitMs: 50 })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'SY_ERR_SHED' });
    expect(refusals).toEqual([['background', 'wait_too_long']]);
    expect(gate.stats().queued).toBe(0);
    running.release({ ok: true });
  });

  it('sheds a queued waiter at once when more critical arrivals push it past its queue timeout', async () => {
    const { gate, req, clock, refusals } = setup();
    const first = await gate.acquire(req('interactive'));
    clock.t += 100;
    first.release({ ok: true }); // permits are held ~100 ms, one at a time
    const running = await gate.acquire(req('interactive'));
    let outcome = 'waiting';
    const bg = gate.acquire({ ...req('background'), maxWaitMs: 250 }).then(
      () => (outcome = 'started'),
      (e: unknown) => (outcome = (e as { code: string }).code),
    );
    // Second in line (~200 ms) still fits its 250 ms.
    const i1 = gate.acquire(req('interactive'));
    await Promise.resolve();
    expect(outcome).toBe('waiting');
    // Third in line (~300 ms) does not: refused now, not after waiting 250 ms.
    const i2 = gate.acquire(req('interactive'));
    await bg;
    expect(outcome).toBe('SY_ERR_SHED');
    expect(refusals).toEqual([['background', 'wait_too_long']]);
    expect(clock.t).toBe(1_100);
    running.release({ ok: true });
    (await i1).release({ ok: true });
    (await i2).release({ ok: true });
  });

  it('reports pressure from queue depth', async () => {
    const { gate, req } = setup({ ...TEST_CONCURRENCY, max_queue: 4 });
    expect(gate.pressure()).toBe(0);
    const running = await gate.acquire(req('interactive'));
    const w = [gate.acquire(req('interactive')), gate.acquire(req('interactive'))];
    expect(gate.pressure()).toBeGreaterThanOrEqual(0.5);
    running.release({ ok: true });
    (await w[0]!).release({ ok: true });
    (await w[1]!).release({ ok: true });
  });

  it('does not let the first-event time of 8 streams started at once shrink its limit (latency: false)', async () => {
    // Vegas, 20 slots; unary calls set a no-load latency of 1 ms. Then waves of 8 streams, each
    // held 1.3 s, whose first events came 2 to 9 ms after they started (a burst queues on the
    // gateway's own loop). As latency, that reads as a queue and pins the limit below 8.
    const run = async (latency: boolean): Promise<number> => {
      const { clock, gate, req } = setup({
        ...TEST_CONCURRENCY,
        algorithm: 'vegas',
        initial_limit: 20,
        probe_interval_ms: 5_000,
      });
      for (let i = 0; i < 10; i++) {
        const p = await gate.acquire(req('interactive'));
        clock.t += 1;
        p.release({ ok: true, rttMs: 1 });
      }
      for (let wave = 0; wave < 20; wave++) {
        // Below 8 the next wave would wait 1.3 s for slots and be shed.
        if (gate.stats().limit < 8) break;
        const permits = await Promise.all(
          Array.from({ length: 8 }, () => gate.acquire(req('interactive'))),
        );
        clock.t += 1_300;
        permits.forEach((p, i) => p.release({ ok: true, rttMs: 2 + i, latency }));
      }
      return gate.stats().limit;
    };
    expect(await run(true)).toBeLessThan(8);
    expect(await run(false)).toBeGreaterThanOrEqual(8);
  });
});
