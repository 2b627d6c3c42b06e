import { describe, expect, it } from 'vitest';
import type { ExperimentRecord, ExperimentSpec } from '../contracts/registry-store.js';
import type { AssignmentUnit } from '../contracts/slot-resolver.js';
import { seededRandom } from '../core/random.js';
import { allocate, SlotTable } from './slot-table.js';

const rec = (
  spec: Partial<ExperimentSpec> & { id: string },
  over: Partial<ExperimentRecord> = {},
): ExperimentRecord => ({
  spec: {
    slot: 'intent',
    kind: 'ab',
    layer: 'default',
    traffic: 100,
    holdout: 0,
    variants: [
      { name: 'control', model: 'intent', version: '1', weight: 1 },
      { name: 'treatment', model: 'intent', version: '2', weight: 1 },
    ],
    ...spec,
  },
  status: 'running',
  allocation: { start: 0, end: 10_000 },
  step: 0,
  stepSince: 0,
  reason: '',
  revision: 1,
  createdAt: 0,
  updatedAt: 0,
  ...over,
});

const unit = (i: number, extra: Partial<AssignmentUnit> = {}): AssignmentUnit => ({
  tenant: 'acme',
  userId: `u${i}`,
  trafficClass: 'interactive',
  ...extra,
});

const canary = (step: number): ExperimentRecord =>
  rec(
    {
      id: 'canary-1',
      kind: 'canary',
      variants: [
        { name: 'stable', model: 'intent', version: '1', weight: 1 },
        { name: 'canary', model: 'intent', version: '2', weight: 1 },
      ],
      ramp: { steps: [1, 5, 25, 50, 100], hold_s: 60 },
    },
    { step },
  );

describe('slot resolution', () => {
  it('returns undefined for a slot no experiment covers', () => {
    const t = new SlotTable([rec({ id: 'a' })], new Map(), seededRandom(1));
    expect(t.resolve('other', unit(1))).toBeUndefined();
  });

  it('keeps every canary user on the canary while the ramp grows (stickiness)', () => {
    const N = 20_000;
    let previous = new Set<number>();
    for (const [step, pct] of [
      [0, 1],
      [1, 5],
      [2, 25],
      [3, 50],
      [4, 100],
    ] as const) {
      const t = new SlotTable([canary(step)], new Map(), seededRandom(1));
      const now = new Set<number>();
      for (let i = 0; i < N; i++)
        if (t.resolve('intent', unit(i))?.variant === 'canary') now.add(i);
      for (const i of previous) expect(now.has(i)).toBe(true);
      expect(Math.abs(now.size / N - pct / 100)).toBeLessThan(0.01);
      previous = now;
    }
  });

  it('gives the same answer for the same unit every time, with seed and bucket to replay it', () => {
    const t = new SlotTable([rec({ id: 'a' })], new Map(), seededRandom(1));
    const a = t.resolve('intent', unit(7))!;
    expect(t.resolve('intent', unit(7))).toEqual(a);
    expect(a).toMatchObject({ experiment: 'a', seed: 'a', unit: 'acme/u7' });
    expect(a.bucket).toBeGreaterThanOrEqual(0);
  });

  it('keeps experiments of one layer mutually exclusive and layers independent', () => {
    const a = rec({ id: 'a', traffic: 50 }, { allocation: { start: 0, end: 5_000 } });
    const b = rec({ id: 'b', traffic: 50 }, { allocation: { start: 5_000, end: 10_000 } });
    const c = rec({ id: 'c', slot: 'ranker', layer: 'ranking' });
    const t = new SlotTable([a, b, c], new Map(), seededRandom(1));
    const N = 40_000;
    const joint = new Map<string, number>();
    for (let i = 0; i < N; i++) {
      const x = t.resolve('intent', unit(i))!;
      const y = t.resolve('ranker', unit(i))!;
      const k = `${x.experiment}/${x.variant}|${y.variant}`;
      joint.set(k, (joint.get(k) ?? 0) + 1);
    }
    // Each of the 4 intent cells × 2 ranker variants holds ~1/8 of the units: independence.
    expect(joint.size).toBe(8);
    for (const n of joint.values()) expect(Math.abs(n / N - 1 / 8)).toBeLessThan(0.012);
  });

  it('admits only eligible units and serves nobody else from the experiment', () => {
    const t = new SlotTable(
      [
        rec({
          id: 'geo',
          eligibility: {
            geo: ['de'],
            device: ['ios', 'android'],
            attributes: { rides_30d: { gte: 3 } },
          },
        }),
      ],
      new Map(),
      seededRandom(1),
    );
    expect(
      t.resolve('intent', unit(1, { geo: 'fr', device: 'ios', attributes: { rides_30d: 9 } })),
    ).toBeUndefined();
    expect(
      t.resolve('intent', unit(1, { geo: 'de', device: 'web', attributes: { rides_30d: 9 } })),
    ).toBeUndefined();
    expect(
      t.resolve('intent', unit(1, { geo: 'de', device: 'ios', attributes: { rides_30d: 1 } })),
    ).toBeUndefined();
    expect(
      t.resolve('intent', unit(1, { geo: 'de', device: 'ios', attributes: { rides_30d: 3 } }))
        ?.experiment,
    ).toBe('geo');
  });

  it('holds out the configured share on the control', () => {
    const t = new SlotTable([rec({ id: 'h', holdout: 10 })], new Map(), seededRandom(1));
    let held = 0;
    for (let i = 0; i < 20_000; i++) {
      const a = t.resolve('intent', unit(i))!;
      if (a.holdout === true) {
        held++;
        expect(a.version).toBe('1');
      }
    }
    expect(Math.abs(held / 20_000 - 0.1)).toBeLessThan(0.01);
  });

  it('sends everyone to the control once an experiment is rolled back', () => {
    const t = new SlotTable([{ ...canary(4), status: 'rolled_back' }], new Map(), seededRandom(1));
    for (let i = 0; i < 1_000; i++) {
      const a = t.resolve('intent', unit(i))!;
      expect(a.version).toBe('1');
      expect(a.reason).toBe('exp:canary-1/rolled_back');
    }
  });

  it('adds shadow targets without changing who serves', () => {
    const shadow = rec({
      id: 'sh',
      kind: 'shadow',
      variants: [{ name: 'production', model: 'intent', version: '1', weight: 1 }],
      shadow: { percent: 100, targets: [{ model: 'intent', version: '3' }] },
    });
    const t = new SlotTable([shadow], new Map(), seededRandom(1));
    expect(t.resolve('intent', unit(1, { requestId: 'r1' }))).toEqual({
      model: 'intent',
      version: '1',
      reason: 'default',
      shadow: [{ model: 'intent', version: '3', experiment: 'sh' }],
    });
  });

  it('allocates the first free range of a layer, below its holdout', () => {
    const taken = [rec({ id: 'a' }, { allocation: { start: 0, end: 3_000 } })];
    expect(allocate('default', 5_000, taken)).toEqual({ start: 3_000, end: 8_000 });
    expect(allocate('default', 5_000, taken, 30)).toBeUndefined();
    expect(allocate('other', 10_000, taken)).toEqual({ start: 0, end: 10_000 });
  });
});
