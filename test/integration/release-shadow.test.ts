import { afterEach, describe, expect, it } from 'vitest';
import type { ShadowInvoke, SlotOutput } from '../../src/contracts/slot-resolver.js';
import { systemClock } from '../../src/core/clock.js';
import { ModelCaller, modelUpstream, startManager } from './release/harness.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

const shadowSpec = (percent: number) => ({
  id: 'intent-v3-shadow',
  slot: 'intent',
  kind: 'shadow' as const,
  layer: 'default',
  traffic: 100,
  holdout: 0,
  variants: [{ name: 'production', model: 'intent', version: '1', weight: 1 }],
  shadow: { percent, targets: [{ model: 'intent', version: '3' }] },
});

describe('shadow traffic', () => {
  it('never changes or delays the answer, and records agreement and latency side by side', async () => {
    const prod = await modelUpstream('billing', 0.8);
    // The shadow candidate disagrees, is slow, and sometimes fails outright.
    const cand = await modelUpstream('refund', 0.3);
    cand.delayMs = 150;
    closers.push(
      () => prod.close(),
      () => cand.close(),
    );
    const caller = new ModelCaller(
      new Map([
        ['intent@1', prod.url],
        ['intent@3', cand.url],
      ]),
    );
    closers.push(() => caller.close());
    const { manager, close } = await startManager();
    closers.push(close);
    await manager.create(shadowSpec(100), { actor: 'key:test', reason: 'compare v3' });

    let shadowCalls = 0;
    const invoke: ShadowInvoke = async (target, signal) => {
      if (shadowCalls++ % 10 === 0) throw new Error('shadow exploded');
      return caller.call(target.model, target.version, signal);
    };
    const answers: SlotOutput[] = [];
    for (let i = 0; i < 60; i++) {
      const unit = {
        tenant: 'acme',
        userId: `u${i}`,
        trafficClass: 'interactive',
        requestId: `r${i}`,
      };
      const a = manager.resolve('intent', unit)!;
      expect(a).toMatchObject({ model: 'intent', version: '1', shadow: [{ version: '3' }] });
      const t0 = systemClock.now();
      const out = await caller.callFor(a);
      const frozen = JSON.stringify(out);
      const r0 = systemClock.now();
      manager.report(
        {
          inferenceId: unit.requestId,
          slot: 'intent',
          assignment: a,
          ms: r0 - t0,
          outcome: 'ok',
          output: out,
        },
        invoke,
      );
      // report() returns at once: the shadow call has not even started (setImmediate).
      expect(cand.calls.length).toBeLessThanOrEqual(i);
      expect(JSON.stringify(out)).toBe(frozen);
      answers.push(out);
    }
    expect(answers.every((a) => a.label === 'billing' && a.score === 0.8)).toBe(true);
    await new Promise((r) => setTimeout(r, 600));
    await manager.flush();
    const stats = await manager.stats('intent-v3-shadow');
    expect(stats.shadow).toMatchObject({ shadow_agree_mean: 0, shadow_errors: 6 });
    expect(stats.shadow!['shadow_score_delta_mean']).toBeCloseTo(-0.5, 6);
    expect(stats.shadow!['shadow_latency_ms_mean']).toBeGreaterThan(
      stats.shadow!['primary_latency_ms_mean']!,
    );
  }, 30_000);

  it('sheds shadow copies first when the in-flight bound is reached or the gateway is under pressure', async () => {
    let pressure = false;
    const { manager, close } = await startManager({
      shadow: { maxInFlight: 2, timeoutMs: 1_000, shed: () => pressure },
    });
    closers.push(close);
    await manager.create(shadowSpec(100), { actor: 'key:test', reason: 'compare v3' });
    const pending: (() => void)[] = [];
    const invoke: ShadowInvoke = () =>
      new Promise<SlotOutput>((resolve) => pending.push(() => resolve({ label: 'x' })));
    const report = (i: number) => {
      const unit = {
        tenant: 'acme',
        userId: `u${i}`,
        trafficClass: 'interactive',
        requestId: `r${i}`,
      };
      const a = manager.resolve('intent', unit)!;
      manager.report(
        {
          inferenceId: `r${i}`,
          slot: 'intent',
          assignment: a,
          ms: 1,
          outcome: 'ok',
          output: { label: 'x' },
        },
        invoke,
      );
    };
    for (let i = 0; i < 5; i++) report(i);
    expect(manager.shadow.shedCount).toBe(3);
    await new Promise((r) => setImmediate(r));
    for (const p of pending.splice(0)) p();
    await new Promise((r) => setTimeout(r, 20));
    pressure = true;
    report(99);
    expect(manager.shadow.shedCount).toBe(4);
  });
});
