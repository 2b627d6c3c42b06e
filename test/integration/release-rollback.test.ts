import { afterEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/core/clock.js';
import { ModelCaller, modelUpstream, startManager } from './release/harness.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

/** The stated time: a breach is rolled back within this long of the regression starting. */
const ROLLBACK_WITHIN_MS = 3_000;

describe('automatic rollback on live traffic', () => {
  it('ramps a healthy canary, then rolls it back when its p95 latency regresses, and users are back on stable', async () => {
    const stable = await modelUpstream('billing', 0.9);
    const candidate = await modelUpstream('billing', 0.91);
    // Both answer in ~10 ms, so the healthy phase compares service times, not the scheduling
    // noise of sub-millisecond answers on a busy machine.
    stable.delayMs = 10;
    candidate.delayMs = 10;
    closers.push(
      () => stable.close(),
      () => candidate.close(),
    );
    const caller = new ModelCaller(
      new Map([
        ['intent@1', stable.url],
        ['intent@2', candidate.url],
      ]),
    );
    closers.push(() => caller.close());
    const { manager, store, close } = await startManager();
    closers.push(close);
    await manager.create(
      {
        id: 'intent-v2-canary',
        slot: 'intent',
        kind: 'canary',
        layer: 'default',
        traffic: 100,
        holdout: 0,
        variants: [
          { name: 'stable', model: 'intent', version: '1', weight: 1 },
          { name: 'canary', model: 'intent', version: '2', weight: 1 },
        ],
        ramp: { steps: [20, 50], hold_s: 0.3 },
        rules: { p95_latency_ratio: 1.5, error_rate_delta: 0.05, min_samples: 20, window_s: 1 },
      },
      { actor: 'key:test', reason: 'ship intent v2' },
    );

    let user = 0;
    const serve = async (): Promise<string> => {
      const unit = {
        tenant: 'acme',
        userId: `u${user++ % 500}`,
        trafficClass: 'interactive',
        requestId: `r${user}`,
      };
      const a = manager.resolve('intent', unit)!;
      const t0 = systemClock.now();
      let outcome = 'ok';
      try {
        await caller.callFor(a);
      } catch {
        outcome = 'SY_ERR_UPSTREAM_ERROR';
      }
      manager.report({
        inferenceId: unit.requestId,
        slot: 'intent',
        assignment: a,
        ms: systemClock.now() - t0,
        outcome,
      });
      return a.version ?? '';
    };
    const traffic = async (until: () => boolean, maxMs: number): Promise<void> => {
      const end = systemClock.now() + maxMs;
      while (!until() && systemClock.now() < end)
        await Promise.all(Array.from({ length: 8 }, serve));
    };

    // Healthy: the ramp advances from 20 % to 50 % while the guardrails hold.
    await traffic(() => manager.experiment('intent-v2-canary')?.step === 1, 10_000);
    expect(manager.experiment('intent-v2-canary')).toMatchObject({ step: 1, status: 'running' });

    // Inject a latency regression into the candidate only.
    candidate.delayMs = 60;
    const injectedAt = systemClock.now();
    await traffic(() => manager.experiment('intent-v2-canary')?.status === 'rolled_back', 10_000);
    const tookMs = systemClock.now() - injectedAt;
    expect(manager.experiment('intent-v2-canary')?.status).toBe('rolled_back');
    expect(tookMs).toBeLessThan(ROLLBACK_WITHIN_MS);

    // Everyone is on stable now, and requests reach the stable upstream only.
    const before = candidate.calls.length;
    const versions = new Set<string>();
    for (let i = 0; i < 200; i++) versions.add(await serve());
    expect([...versions]).toEqual(['1']);
    expect(candidate.calls.length).toBe(before);

    const audit = await store.listAudit({ target: 'intent-v2-canary' });
    expect(audit.map((e) => e.action)).toEqual([
      'experiment.rollback',
      'experiment.ramp',
      'experiment.create',
    ]);
    expect(audit[0]).toMatchObject({ actor: 'system', detail: { rule: 'p95_latency_ratio' } });
    expect(audit[0]!.reason).toMatch(/^p95_latency_ratio: candidate p95/);
  }, 30_000);
});
