import type { AssignmentUnit } from '../contracts/slot-resolver.js';
import type { EligibilitySpec } from '../contracts/registry-store.js';

export type Predicate = (unit: AssignmentUnit) => boolean;

const always: Predicate = () => true;

/** The randomization unit id: `tenant/userId`, or the request id when there is no user. */
export function unitIdOf(unit: AssignmentUnit): string {
  return unit.userId !== undefined ? `${unit.tenant}/${unit.userId}` : (unit.requestId ?? '');
}

/**
 * Compiles an eligibility spec into one closure (a few comparisons per call, no allocation).
 * Every present field must match; a list matches any of its values; an attribute range
 * `{ gte, lte }` matches numbers within it (user history such as `rides_30d`).
 */
export function compileEligibility(spec: EligibilitySpec | undefined): Predicate {
  if (spec === undefined) return always;
  const checks: Predicate[] = [];
  const inSet = (
    values: readonly string[] | undefined,
    pick: (u: AssignmentUnit) => string | undefined,
  ) => {
    if (values === undefined) return;
    const set = new Set(values);
    checks.push((u) => {
      const v = pick(u);
      return v !== undefined && set.has(v);
    });
  };
  inSet(spec.geo, (u) => u.geo);
  inSet(spec.device, (u) => u.device);
  inSet(spec.tenant, (u) => u.tenant);
  inSet(spec.class, (u) => u.trafficClass);
  for (const [name, want] of Object.entries(spec.attributes ?? {})) {
    if (Array.isArray(want)) {
      const set = new Set<unknown>(want);
      checks.push((u) => set.has(u.attributes?.[name]));
    } else if (typeof want === 'object' && want !== null) {
      const range = want as { readonly gte?: number; readonly lte?: number };
      const lo = range.gte ?? Number.NEGATIVE_INFINITY;
      const hi = range.lte ?? Number.POSITIVE_INFINITY;
      checks.push((u) => {
        const v = u.attributes?.[name];
        return typeof v === 'number' && v >= lo && v <= hi;
      });
    } else checks.push((u) => u.attributes?.[name] === want);
  }
  if (checks.length === 0) return always;
  if (checks.length === 1) return checks[0]!;
  return (u) => {
    for (const c of checks) if (!c(u)) return false;
    return true;
  };
}

/** The bandit segment of a unit: `geo`, `device`, `tenant`, `class` or `attr.<name>`. */
export function segmentOf(by: string | undefined, unit: AssignmentUnit): string {
  if (by === undefined) return '';
  if (by === 'geo') return unit.geo ?? '';
  if (by === 'device') return unit.device ?? '';
  if (by === 'tenant') return unit.tenant;
  if (by === 'class') return unit.trafficClass;
  if (by.startsWith('attr.')) {
    const v = unit.attributes?.[by.slice(5)];
    return v === undefined || v === null ? '' : String(v);
  }
  return '';
}
