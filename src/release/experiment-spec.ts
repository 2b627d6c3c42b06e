import type { ExperimentSpec } from '../contracts/registry-store.js';
import { syError } from '../core/errors.js';

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * Semantic checks of an experiment definition (the config schema and the admin API check its
 * shape). Throws SY_ERR_REGISTRY_INVALID listing every problem.
 */
export function checkSpec(spec: ExperimentSpec): ExperimentSpec {
  const problems = specProblems(spec);
  if (problems.length > 0)
    throw syError('SY_ERR_REGISTRY_INVALID', `experiment ${spec.id}: ${problems.join('; ')}`);
  return spec;
}

/** Every semantic problem of an experiment definition (config validation lists them by path). */
export function specProblems(spec: ExperimentSpec): string[] {
  const problems: string[] = [];
  if (!ID.test(spec.id)) problems.push(`id must match ${ID.source}`);
  if (spec.slot.trim() === '') problems.push('slot is empty');
  if (!ID.test(spec.layer)) problems.push(`layer must match ${ID.source}`);
  if (!(spec.traffic > 0 && spec.traffic <= 100)) problems.push('traffic must be in (0, 100]');
  if (!(spec.holdout >= 0 && spec.holdout < 100)) problems.push('holdout must be in [0, 100)');
  const names = new Set<string>();
  for (const v of spec.variants) {
    if (!ID.test(v.name))
      problems.push(`variant name "${v.name.slice(0, 32)}" must match ${ID.source}`);
    if (v.name === 'holdout') problems.push('"holdout" is reserved');
    if (names.has(v.name)) problems.push(`variant "${v.name}" appears twice`);
    names.add(v.name);
    if (!(v.weight >= 0) || !Number.isFinite(v.weight))
      problems.push(`variant "${v.name}" weight must be ≥ 0`);
  }
  const k = spec.variants.length;
  switch (spec.kind) {
    case 'canary': {
      if (k !== 2)
        problems.push('a canary has exactly two variants: stable first, candidate second');
      const steps = spec.ramp?.steps ?? [];
      if (spec.ramp !== undefined) {
        if (steps.length === 0) problems.push('ramp.steps is empty');
        for (let i = 0; i < steps.length; i++) {
          const s = steps[i]!;
          if (!(s >= 0 && s <= 100 - spec.holdout))
            problems.push(`ramp step ${s} must be in [0, ${100 - spec.holdout}]`);
          if (i > 0 && s <= steps[i - 1]!)
            problems.push('ramp steps must increase (stickiness: a ramp only ever adds units)');
        }
        if (!(spec.ramp.hold_s > 0)) problems.push('ramp.hold_s must be > 0');
      }
      break;
    }
    case 'ab':
      if (k < 2) problems.push('an A/B test needs at least two variants');
      if (spec.variants.reduce((a, v) => a + v.weight, 0) <= 0)
        problems.push('variant weights sum to 0');
      break;
    case 'bandit': {
      if (k < 2) problems.push('a bandit needs at least two arms');
      const floor = spec.bandit?.exploration_floor ?? 0;
      if (!(floor >= 0 && floor <= 1 / Math.max(k, 1)))
        problems.push(`bandit.exploration_floor must be in [0, 1/${k}]`);
      const by = spec.bandit?.segment_by;
      if (
        by !== undefined &&
        !['geo', 'device', 'tenant', 'class'].includes(by) &&
        !/^attr\.[A-Za-z0-9_.-]{1,64}$/.test(by)
      )
        problems.push('bandit.segment_by must be geo, device, tenant, class or attr.<name>');
      break;
    }
    case 'shadow':
      if (k < 1) problems.push('a shadow release names the production variant first');
      if (spec.shadow === undefined || spec.shadow.targets.length === 0)
        problems.push('shadow.targets is empty');
      else if (!(spec.shadow.percent > 0 && spec.shadow.percent <= 100))
        problems.push('shadow.percent must be in (0, 100]');
      break;
  }
  const r = spec.rules;
  if (r !== undefined) {
    if (!(r.min_samples >= 1)) problems.push('rules.min_samples must be ≥ 1');
    if (!(r.window_s > 0)) problems.push('rules.window_s must be > 0');
    if (r.p95_latency_ratio !== undefined && !(r.p95_latency_ratio > 1))
      problems.push('rules.p95_latency_ratio must be > 1');
    const d = r.p95_latency_min_delta_ms;
    if (d !== undefined && !(Number.isFinite(d) && d >= 0))
      problems.push('rules.p95_latency_min_delta_ms must be a number ≥ 0');
  }
  return problems;
}
