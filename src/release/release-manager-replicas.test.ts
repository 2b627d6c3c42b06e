import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import type { ExperimentSpec } from '../contracts/registry-store.js';
import { systemClock } from '../core/clock.js';
import { seededRandom } from '../core/random.js';
import { SqliteRegistryStore } from '../state/sqlite-registry-store.js';
import { ReleaseManager } from './release-manager.js';

/**
 * Rewards credited on whichever replica receives the feedback (#15): two release managers share
 * one SQLite store, as two replicas (or workers) share theirs. The cost ledger's claim (`first`)
 * decides; the replica that did not serve the inference finds it in the shared exposures.
 */

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

async function replicas(pollMs = 0) {
  const dir = mkdtempSync(join(tmpdir(), 'sy-rm-replicas-'));
  const path = join(dir, 'state.db');
  const store = new SqliteRegistryStore(path);
  const open = async (seed: number, poll: number) => {
    const m = new ReleaseManager({
      store,
      clock: systemClock,
      random: seededRandom(seed),
      evaluateMs: 0,
      flushMs: 0, // written by hand: an exposure stays in the buffer until the test flushes it
      pollMs: poll,
      shadow: { maxInFlight: 8, timeoutMs: 100 },
      feedbackTtlMs: 60_000,
      feedbackCapacity: 100_000,
    });
    await m.start();
    return m;
  };
  const a = await open(1, 0);
  const b = await open(2, pollMs);
  closers.push(async () => {
    await a.close();
    await b.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { a, b, store, path };
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
const bandit: ExperimentSpec = {
  ...ab,
  id: 'reco-bandit',
  kind: 'bandit',
  variants: [
    { name: 'a', model: 'ranker', version: '1', weight: 1 },
    { name: 'b', model: 'ranker', version: '2', weight: 1 },
  ],
  bandit: { exploration_floor: 0.02, segment_by: 'geo' },
};

function serve(m: ReleaseManager, id: string, geo?: string) {
  const unit = {
    tenant: 'acme',
    requestId: id,
    trafficClass: 'interactive',
    ...(geo === undefined ? {} : { geo }),
  };
  const a = m.resolve('ranker', unit)!;
  m.report({ inferenceId: id, slot: 'ranker', assignment: a, ms: 1, outcome: 'ok' });
  return a;
}

const rewardOf = async (m: ReleaseManager, exp: string) =>
  (await m.stats(exp)).variants.map((v) => [v.variant, v.metrics['reward']?.n ?? 0]);

/** What `/v1/feedback` does with the ledger's answer: the target first, then the claim's verdict. */
async function give(m: ReleaseManager, id: string, tenant: string, assigned: boolean, reward = 1) {
  const target = await m.feedbackTarget(id, tenant, assigned);
  return m.claimedFeedback(id, reward, tenant, true, target);
}

describe('rewards across replicas (#15)', () => {
  it('credits a reward given to the replica that did not serve, once, waiting for the exposure', async () => {
    const { a, b } = await replicas();
    await a.create(ab, by);
    await b.reload();
    const served = serve(a, 'inf-1');
    // A writes its exposures 100 ms later: B waits for them, bounded.
    setTimeout(() => void a.flush(), 100);
    const got = await give(b, 'inf-1', 'acme', true);
    expect(got).toEqual({ experiment: 'ranker-ab', variant: served.variant });
    // The same feedback on A, which served it: the ledger says duplicate, A credits nothing and
    // forgets the inference (a later local-only feedback cannot credit it either).
    const own = await a.feedbackTarget('inf-1', 'acme', true);
    expect(() => a.claimedFeedback('inf-1', 1, 'acme', false, own)).toThrow(
      expect.objectContaining({ code: 'SY_ERR_INFERENCE_UNKNOWN' }),
    );
    expect(() => a.feedback('inf-1', 1, 'acme')).toThrow(
      expect.objectContaining({ code: 'SY_ERR_INFERENCE_UNKNOWN' }),
    );
    await b.flush();
    const expected = ab.variants.map((v) => [v.name, v.name === served.variant ? 1 : 0]);
    expect(await rewardOf(a, 'ranker-ab')).toEqual(expected);
  });

  it("credits on the serving replica from its memory, and never another tenant's inference", async () => {
    const { a, b } = await replicas();
    await a.create(ab, by);
    await b.reload();
    serve(a, 'inf-2');
    await a.flush();
    expect(await b.feedbackTarget('inf-2', 'beta', false)).toBeUndefined();
    expect(await a.feedbackTarget('inf-2', 'beta', false)).toBeUndefined();
    await expect(give(b, 'inf-2', 'beta', false)).rejects.toMatchObject({
      code: 'SY_ERR_INFERENCE_UNKNOWN',
    });
    expect(await give(a, 'inf-2', 'acme', true, 0.5)).toMatchObject({ experiment: 'ranker-ab' });
    const rows = (await a.stats('ranker-ab')).variants.map((v) => v.metrics['reward']?.n ?? 0);
    expect(rows.reduce((x, y) => x + y, 0)).toBe(1);
  });

  it('reads the store once, without waiting, for a request in no experiment', async () => {
    const { b } = await replicas();
    const started = Date.now();
    expect(await b.feedbackTarget('none', 'acme', false)).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(100);
    // Assigned but never written: waits flush_ms (0) plus the 0.5 s margin, then refuses,
    // retryably, so that the feedback is not counted without its reward.
    const waited = Date.now();
    await expect(b.feedbackTarget('lost', 'acme', true)).rejects.toMatchObject({
      code: 'SY_ERR_FEEDBACK_STORE_FAILED',
      retryable: true,
      retryAfterS: 1,
    });
    expect(Date.now() - waited).toBeGreaterThanOrEqual(450);
  });

  it('refuses retryably while the exposure store fails, and finds the exposure once it is back', async () => {
    const { a, b, path } = await replicas();
    await a.create(ab, by);
    await b.reload();
    const served = serve(a, 'inf-3');
    await a.flush();
    // The exposures' table goes away under the running stores (another connection renames it).
    const admin = new Database(path);
    try {
      admin.exec('ALTER TABLE rs_exposures RENAME TO rs_exposures_away');
      await expect(b.feedbackTarget('inf-3', 'acme', true)).rejects.toMatchObject({
        code: 'SY_ERR_FEEDBACK_STORE_FAILED',
        retryable: true,
      });
      // A request in no experiment owes no reward: the failure does not hold its feedback up.
      expect(await b.feedbackTarget('inf-3', 'acme', false)).toBeUndefined();
      admin.exec('ALTER TABLE rs_exposures_away RENAME TO rs_exposures');
    } finally {
      admin.close();
    }
    expect(await give(b, 'inf-3', 'acme', true)).toEqual({
      experiment: 'ranker-ab',
      variant: served.variant,
    });
    await b.flush();
    const expected = ab.variants.map((v) => [v.name, v.name === served.variant ? 1 : 0]);
    expect(await rewardOf(a, 'ranker-ab')).toEqual(expected);
  });

  it("credits a bandit's reward to the inference's segment on the other replica", async () => {
    const { a, b, store } = await replicas();
    await a.create(bandit, by);
    await b.reload();
    const served = serve(a, 'inf-eu', 'eu-west');
    await a.flush();
    await give(b, 'inf-eu', 'acme', true);
    await b.flush();
    const reward = (await store.readCounters('reco-bandit')).filter((r) => r.metric === 'reward');
    expect(reward).toEqual([
      {
        experiment: 'reco-bandit',
        variant: served.variant,
        segment: 'eu-west',
        metric: 'reward',
        n: 1,
        sum: 1,
        sumSq: 1,
      },
    ]);
  });

  it("learns the rewards other replicas credited when it polls the store's counters (release.poll_ms)", async () => {
    const { a, b } = await replicas(50);
    await a.create({ ...bandit, bandit: { exploration_floor: 0.02 } }, by);
    await b.reload();
    const pulls = (m: ReleaseManager, n: number) => {
      let bs = 0;
      for (let i = 0; i < n; i++)
        if (
          m.resolve('ranker', { tenant: 'acme', userId: `u${i}`, trafficClass: 'x' })?.variant ===
          'b'
        )
          bs++;
      return bs / n;
    };
    // Before A's rewards reach the store, B's posteriors are flat: about half the pulls go to b.
    await new Promise((r) => setTimeout(r, 120));
    expect(pulls(b, 400)).toBeLessThan(0.7);
    // A learns that arm b wins: 300 inferences of each arm, b rewarded, a not.
    for (let i = 0; i < 600; i++) {
      const arm = i % 2 === 0 ? 'a' : 'b';
      a.counters.add('reco-bandit', arm, '', 'reward', arm === 'b' ? 1 : 0);
    }
    await a.flush();
    // B's poll loop (every 50 ms) rebuilds its posteriors from the stored counters.
    await new Promise((r) => setTimeout(r, 200));
    expect(pulls(b, 400)).toBeGreaterThan(0.9);
  });
});

describe('experiments declared in config, on two processes starting at once', () => {
  it('are created once: the second process takes the one the first created meanwhile', async () => {
    const { a, b } = await replicas();
    // a creates it after b last read the store: b's own create would find it and refuse.
    await a.ensure(ab, by);
    await expect(b.create(ab, by)).rejects.toMatchObject({ code: 'SY_ERR_REGISTRY_CONFLICT' });
    await b.ensure(ab, by);
    expect(b.experiment(ab.id)?.spec.id).toBe(ab.id);
    expect(a.experiments().filter((r) => r.spec.id === ab.id)).toHaveLength(1);
  });
});
