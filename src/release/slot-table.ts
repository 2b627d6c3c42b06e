import type { AssignmentUnit, ShadowTarget, SlotAssignment } from '../contracts/slot-resolver.js';
import type { ExperimentRecord, VariantSpec } from '../contracts/registry-store.js';
import type { Random } from '../core/random.js';
import { thompsonChoose, type ArmPosterior } from './bandit.js';
import { compileEligibility, segmentOf, unitIdOf, type Predicate } from './eligibility.js';
import { BUCKETS, bucketer } from './hashing.js';
import { extend } from '../core/objects.js';

/** Live posteriors of a bandit experiment, per segment (created on first use). */
export interface BanditState {
  arms(segment: string): ArmPosterior[];
}

interface Compiled {
  readonly id: string;
  readonly kind: 'ab' | 'canary' | 'bandit';
  readonly seed: string;
  readonly bucket: (unit: string) => number;
  readonly start: number;
  readonly end: number;
  readonly eligible: Predicate;
  readonly variants: readonly VariantSpec[];
  /** Variant buckets at or above this are the holdout. */
  readonly holdoutFrom: number;
  /** A/B: cumulative bucket thresholds per variant over [0, holdoutFrom). */
  readonly cumulative: readonly number[];
  /** Canary: candidate iff bucket < this. */
  readonly canaryBelow: number;
  /** Rolled back or paused: everyone in range gets the control. */
  readonly frozen: string | undefined;
  readonly reasons: readonly string[];
  readonly segmentBy: string | undefined;
  readonly floor: number;
}

interface CompiledShadow {
  readonly id: string;
  readonly seed: string;
  readonly bucket: (unit: string) => number;
  readonly below: number;
  readonly eligible: Predicate;
  readonly targets: readonly ShadowTarget[];
}

interface Layer {
  readonly bucket: (unit: string) => number;
  readonly experiments: readonly Compiled[];
}

interface SlotEntry {
  readonly layers: readonly Layer[];
  readonly shadows: readonly CompiledShadow[];
  /** The control of the slot's first experiment: who serves when only shadows apply. */
  readonly control: VariantSpec;
}

export const layerSeed = (layer: string): string => `layer:${layer}`;
export const seedOf = (r: ExperimentRecord): string => r.spec.seed ?? r.spec.id;

/** The candidate share of a canary now, in percent. */
export function canaryPercent(r: ExperimentRecord): number {
  const steps = r.spec.ramp?.steps;
  if (steps === undefined || steps.length === 0) return r.spec.variants[1]?.weight ?? 0;
  return steps[Math.min(r.step, steps.length - 1)]!;
}

function compile(r: ExperimentRecord): Compiled {
  const s = r.spec;
  const holdoutFrom = Math.round(BUCKETS - s.holdout * 100);
  const total = s.variants.reduce((a, v) => a + v.weight, 0) || 1;
  let acc = 0;
  const cumulative = s.variants.map((v) => {
    acc += v.weight;
    return Math.round((acc / total) * holdoutFrom);
  });
  const frozen = r.status === 'running' ? undefined : r.status;
  return {
    id: s.id,
    kind: s.kind === 'shadow' ? 'ab' : s.kind,
    seed: seedOf(r),
    bucket: bucketer(seedOf(r)),
    start: r.allocation.start,
    end: r.allocation.end,
    eligible: compileEligibility(s.eligibility),
    variants: s.variants,
    holdoutFrom,
    cumulative,
    canaryBelow: Math.min(holdoutFrom, Math.round(canaryPercent(r) * 100)),
    frozen,
    reasons: s.variants.map((v) =>
      frozen === undefined ? `exp:${s.id}/${v.name}` : `exp:${s.id}/${frozen}`,
    ),
    segmentBy: s.bandit?.segment_by,
    floor: s.bandit?.exploration_floor ?? 0,
  };
}

/**
 * The compiled experiments of every slot: what `resolve` reads on the hot path. Rebuilt (never
 * mutated) whenever an experiment changes, so a resolve always sees one consistent table.
 */
export class SlotTable {
  private readonly slots = new Map<string, SlotEntry>();

  constructor(
    records: readonly ExperimentRecord[],
    private readonly bandits: ReadonlyMap<string, BanditState>,
    private readonly random: Random,
  ) {
    const bySlot = new Map<string, ExperimentRecord[]>();
    for (const r of records) {
      if (r.status === 'completed') continue;
      const list = bySlot.get(r.spec.slot) ?? [];
      list.push(r);
      bySlot.set(r.spec.slot, list);
    }
    for (const [slot, list] of bySlot) {
      list.sort((a, b) => a.createdAt - b.createdAt || (a.spec.id < b.spec.id ? -1 : 1));
      const layers = new Map<string, Compiled[]>();
      const shadows: CompiledShadow[] = [];
      for (const r of list) {
        if (r.spec.kind === 'shadow') {
          if (r.status !== 'running' || r.spec.shadow === undefined) continue;
          shadows.push({
            id: r.spec.id,
            seed: seedOf(r),
            bucket: bucketer(seedOf(r)),
            below: Math.round(r.spec.shadow.percent * 100),
            eligible: compileEligibility(r.spec.eligibility),
            targets: r.spec.shadow.targets.map((t) => ({
              model: t.model,
              ...(t.version === undefined ? {} : { version: t.version }),
              experiment: r.spec.id,
            })),
          });
          continue;
        }
        const l = layers.get(r.spec.layer) ?? [];
        l.push(compile(r));
        layers.set(r.spec.layer, l);
      }
      this.slots.set(slot, {
        layers: [...layers.entries()]
          .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
          .map(([name, experiments]) => ({ bucket: bucketer(layerSeed(name)), experiments })),
        shadows,
        control: list[0]!.spec.variants[0]!,
      });
    }
  }

  /** Slot resolution: eligibility, one hash per layer touched, one per experiment entered. */
  resolve(slot: string, unit: AssignmentUnit): SlotAssignment | undefined {
    const entry = this.slots.get(slot);
    if (entry === undefined) return undefined;
    const unitId = unitIdOf(unit);
    let out: SlotAssignment | undefined;
    for (const layer of entry.layers) {
      const lb = layer.bucket(unitId);
      for (const e of layer.experiments) {
        if (lb < e.start || lb >= e.end) continue;
        // Within a layer the unit belongs to this experiment's range only.
        if (e.eligible(unit)) out = this.assign(e, unit, unitId);
        break;
      }
      if (out !== undefined) break;
    }
    if (entry.shadows.length > 0) {
      let targets: ShadowTarget[] | undefined;
      const rid = unit.requestId ?? unitId;
      for (const s of entry.shadows) {
        if (!s.eligible(unit) || s.bucket(rid) >= s.below) continue;
        targets ??= [];
        for (const t of s.targets) targets.push(t);
      }
      if (targets !== undefined) {
        out ??= {
          model: entry.control.model,
          ...(entry.control.version === undefined ? {} : { version: entry.control.version }),
          reason: 'default',
        };
        out = extend(out, { shadow: targets });
      }
    }
    return out;
  }

  private assign(e: Compiled, unit: AssignmentUnit, unitId: string): SlotAssignment {
    let idx = 0;
    let holdout = false;
    let bucket: number;
    if (e.kind === 'bandit' && e.frozen === undefined) {
      // Bandits choose per request from the posterior; the bucket still decides the holdout.
      bucket = e.bucket(unitId);
      if (bucket >= e.holdoutFrom) holdout = true;
      else {
        const state = this.bandits.get(e.id);
        idx =
          state === undefined
            ? 0
            : thompsonChoose(state.arms(segmentOf(e.segmentBy, unit)), e.floor, this.random);
      }
    } else {
      bucket = e.bucket(unitId);
      if (bucket >= e.holdoutFrom) holdout = true;
      else if (e.frozen !== undefined) idx = 0;
      else if (e.kind === 'canary') idx = bucket < e.canaryBelow ? 1 : 0;
      else {
        const c = e.cumulative;
        while (idx < c.length - 1 && bucket >= c[idx]!) idx++;
      }
    }
    const v = e.variants[idx]!;
    return {
      model: v.model,
      ...(v.version === undefined ? {} : { version: v.version }),
      experiment: e.id,
      variant: holdout ? 'holdout' : v.name,
      seed: e.seed,
      bucket,
      unit: unitId,
      ...(holdout ? { holdout: true } : {}),
      reason: holdout ? `exp:${e.id}/holdout` : e.reasons[idx]!,
    };
  }
}

/**
 * A free range of `size` layer buckets for a new experiment: the first gap among the running
 * experiments of the layer, below the layer's holdout. Undefined when the layer is full.
 */
export function allocate(
  layer: string,
  size: number,
  records: readonly ExperimentRecord[],
  layerHoldout = 0,
): { start: number; end: number } | undefined {
  const limit = Math.round(BUCKETS - layerHoldout * 100);
  const taken = records
    .filter((r) => r.spec.layer === layer && r.status !== 'completed' && r.spec.kind !== 'shadow')
    .map((r) => r.allocation)
    .sort((a, b) => a.start - b.start);
  let at = 0;
  for (const t of taken) {
    if (t.start - at >= size) break;
    at = Math.max(at, t.end);
  }
  return at + size <= limit ? { start: at, end: at + size } : undefined;
}
