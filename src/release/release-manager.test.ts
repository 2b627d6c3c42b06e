import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ExperimentSpec } from '../contracts/registry-store.js';
import { seededRandom } from '../core/random.js';
import { SqliteRegistryStore } from '../state/sqlite-registry-store.js';
import { ReleaseManager } from './release-manager.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

class ManualClock {
  t = 1_000_000;
  now = (): number => this.t;
  wall = (): number => this.t;
}

async function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'sy-rm-'));
  const store = new SqliteRegistryStore(join(dir, 'state.db'));
  const clock = new ManualClock();
  const manager = new ReleaseManager({
    store,
    clock,
    random: seededRandom(21),
    evaluateMs: 0,
    flushMs: 0,
    pollMs: 0,
    shadow: { maxInFlight: 8, timeoutMs: 100 },
    feedbackTtlMs: 60_000,
    feedbackCapacity: 100_000,
  });
  await manager.start();
  closers.push(async () => {
    await manager.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { manager, store, clock };
}

const by = { actor: 'key:test', reason: 'test' };
const ab: ExperimentSpec = {
  id: 'ranker-ab',
  slot: 'ranker',
  kind: 'ab',
  layer: 'ranking',
  traffic: 100,
  holdout: 0,
  variants: [
    { name: 'control', model: 'ranker', version: '1', weight: 1 },
    { name: 'treatment', model: 'ranker', version: '2', weight: 1 },
  ],
};

describe('the release manager', () => {
  it('detects a sample ratio mismatch when one variant loses exposures', async () => {
    const { manager } = await setup();
    await manager.create(ab, by);
    for (let i = 0; i < 20_000; i++) {
      const unit = { tenant: 'acme', userId: `u${i}`, trafficClass: 'interactive' };
      const a = manager.resolve('ranker', unit)!;
      // A logging bug drops 6 % of treatment exposures.
      if (a.variant === 'treatment' && i % 17 === 0) continue;
      manager.report({ inferenceId: `r${i}`, slot: 'ranker', assignment: a, ms: 5, outcome: 'ok' });
    }
    await manager.flush();
    const stats = await manager.stats('ranker-ab');
    expect(stats.srm.mismatch).toBe(true);
    expect(stats.srm.p_value).toBeLessThan(0.001);
  });

  it('reports no mismatch on a healthy split, with exposures, intervals and sequential tests', async () => {
    const { manager } = await setup();
    await manager.create(ab, by);
    const random = seededRandom(4);
    for (let i = 0; i < 10_000; i++) {
      const unit = { tenant: 'acme', userId: `u${i}`, trafficClass: 'interactive' };
      const a = manager.resolve('ranker', unit)!;
      manager.report({
        inferenceId: `r${i}`,
        slot: 'ranker',
        assignment: a,
        ms: 5 + random(),
        outcome: 'ok',
      });
      const p = a.variant === 'treatment' ? 0.4 : 0.3;
      manager.feedback(`r${i}`, random() < p ? 1 : 0);
    }
    const stats = await manager.stats('ranker-ab');
    expect(stats.srm.mismatch).toBe(false);
    expect(stats.variants.map((v) => v.variant)).toEqual(['control', 'treatment']);
    expect(stats.variants[0]!.exposures + stats.variants[1]!.exposures).toBe(10_000);
    const reward = stats.sequential.find((s) => s.metric === 'reward')!;
    expect(reward.significant).toBe(true);
    expect(reward.ci95[0]).toBeGreaterThan(0);
    const exposures = await manager.store.listExposures({ experiment: 'ranker-ab', limit: 1 });
    expect(exposures.length).toBe(0); // not flushed yet: exposures are written behind
    await manager.flush();
    const [last] = await manager.store.listExposures({ inferenceId: 'r9999' });
    expect(last).toMatchObject({ experiment: 'ranker-ab', seed: 'ranker-ab', unit: 'acme/u9999' });
  });

  it('converges a bandit on the better arm through feedback keyed by inference id', async () => {
    const { manager } = await setup();
    await manager.create(
      {
        ...ab,
        id: 'reco-bandit',
        kind: 'bandit',
        variants: [
          { name: 'a', model: 'reco', version: '1', weight: 1 },
          { name: 'b', model: 'reco', version: '2', weight: 1 },
          { name: 'c', model: 'reco', version: '3', weight: 1 },
        ],
        bandit: { exploration_floor: 0.02 },
      },
      by,
    );
    const truth: Record<string, number> = { a: 0.04, b: 0.1, c: 0.06 };
    const random = seededRandom(8);
    const pulls: Record<string, number> = { a: 0, b: 0, c: 0 };
    for (let i = 0; i < 8_000; i++) {
      const unit = { tenant: 'acme', requestId: `q${i}`, trafficClass: 'interactive' };
      const a = manager.resolve('ranker', unit)!;
      manager.report({ inferenceId: `q${i}`, slot: 'ranker', assignment: a, ms: 1, outcome: 'ok' });
      if (i >= 6_000) pulls[a.variant!]!++;
      manager.feedback(`q${i}`, random() < truth[a.variant!]! ? 1 : 0);
    }
    expect(pulls['b']! / 2_000).toBeGreaterThan(0.7);
    expect(() => manager.feedback('q1', 1)).toThrow(
      expect.objectContaining({ code: 'SY_ERR_INFERENCE_UNKNOWN' }),
    );
  });

  it("takes an inference's reward from its own tenant only (#15)", async () => {
    const { manager } = await setup();
    await manager.create(ab, by);
    const unit = { tenant: 'acme', requestId: 'mine', trafficClass: 'interactive' };
    const a = manager.resolve('ranker', unit)!;
    manager.report({ inferenceId: 'mine', slot: 'ranker', assignment: a, ms: 1, outcome: 'ok' });
    expect(() => manager.feedback('mine', 1, 'beta')).toThrow(
      expect.objectContaining({ code: 'SY_ERR_INFERENCE_UNKNOWN' }),
    );
    // The other tenant's attempt took nothing: the owner's reward still counts, once.
    expect(manager.feedback('mine', 1, 'acme')).toEqual({
      experiment: 'ranker-ab',
      variant: a.variant,
    });
    expect(() => manager.feedback('mine', 1, 'acme')).toThrow(
      expect.objectContaining({ code: 'SY_ERR_INFERENCE_UNKNOWN' }),
    );
  });

  it('rejects overlapping experiments in a full layer and audits every change', async () => {
    const { manager, store } = await setup();
    await manager.create(ab, by);
    await expect(manager.create({ ...ab, id: 'other' }, by)).rejects.toMatchObject({
      code: 'SY_ERR_REGISTRY_CONFLICT',
    });
    await manager.setStatus('ranker-ab', 'paused', { actor: 'key:x', reason: 'investigate' });
    expect(
      manager.resolve('ranker', { tenant: 'acme', userId: 'u1', trafficClass: 'interactive' })
        ?.version,
    ).toBe('1');
    await manager.remove('ranker-ab', by);
    expect((await store.listAudit({ target: 'ranker-ab' })).map((e) => e.action)).toEqual([
      'experiment.delete',
      'experiment.paused',
      'experiment.create',
    ]);
  });

  it('refuses an invalid experiment with every problem listed', async () => {
    const { manager } = await setup();
    const err = await manager
      .create(
        {
          ...ab,
          kind: 'canary',
          variants: [...ab.variants, { name: 'x', model: 'm', weight: 1 }],
          ramp: { steps: [5, 1], hold_s: 0 },
        },
        by,
      )
      .catch((e: unknown) => e as Error & { code: string });
    expect(err).toMatchObject({ code: 'SY_ERR_REGISTRY_INVALID' });
    expect((err as Error).message).toMatch(/exactly two variants.*increase.*hold_s/);
  });
});
