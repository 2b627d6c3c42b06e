import type { CounterRow, ExperimentRecord } from '../contracts/registry-store.js';
import { canaryPercent } from './slot-table.js';
import { mean, meanInterval, msprt, sampleRatioMismatch, type Moments } from './stats.js';

export interface VariantReport {
  readonly variant: string;
  readonly exposures: number;
  readonly metrics: Record<string, { n: number; mean: number; ci95: [number, number] }>;
}

export interface ComparisonReport {
  readonly variant: string;
  readonly metric: string;
  readonly effect: number;
  /** Always-valid p-value (running minimum over looks). */
  readonly p_value: number;
  readonly ci95: [number, number];
  readonly significant: boolean;
}

export interface ExperimentReport {
  readonly id: string;
  readonly status: string;
  readonly variants: VariantReport[];
  readonly srm: {
    chi2: number;
    df: number;
    p_value: number;
    mismatch: boolean;
    expected: number[];
  };
  readonly sequential: ComparisonReport[];
  readonly shadow?: Record<string, number>;
}

const EMPTY: Moments = { n: 0, sum: 0, sumSq: 0 };
const r6 = (x: number): number => (Number.isFinite(x) ? Math.round(x * 1e6) / 1e6 : x);

/** The split the experiment intended, as weights per variant (for the SRM test). */
function intendedWeights(r: ExperimentRecord): number[] {
  const s = r.spec;
  if (s.kind === 'canary') {
    const p = canaryPercent(r);
    return [100 - s.holdout - p, p];
  }
  if (s.kind === 'ab' || s.kind === 'shadow') return s.variants.map((v) => v.weight);
  return []; // bandits allocate adaptively: no fixed ratio to test
}

/**
 * Everything the admin API shows about an experiment: exposures and metrics per variant with
 * 95 % intervals, the SRM chi-square against the intended split, and mSPRT comparisons of each
 * variant with the control for latency, errors and reward. `minP` keeps the running minimum of
 * each always-valid p-value, which is what makes repeated looks safe.
 */
export function buildReport(
  r: ExperimentRecord,
  rows: readonly CounterRow[],
  minP: Map<string, number>,
): ExperimentReport {
  const byVariant = new Map<string, Map<string, Moments>>();
  for (const row of rows) {
    let m = byVariant.get(row.variant);
    if (m === undefined) {
      m = new Map<string, Moments>();
      byVariant.set(row.variant, m);
    }
    const cur = m.get(row.metric) ?? EMPTY;
    m.set(row.metric, { n: cur.n + row.n, sum: cur.sum + row.sum, sumSq: cur.sumSq + row.sumSq });
  }
  const names = [...r.spec.variants.map((v) => v.name), 'holdout', 'shadow'].filter(
    (n) => byVariant.has(n) || r.spec.variants.some((v) => v.name === n),
  );
  const variants: VariantReport[] = names.map((name) => {
    const m = byVariant.get(name) ?? new Map<string, Moments>();
    const metrics: VariantReport['metrics'] = {};
    for (const [metric, mo] of m) {
      if (metric.startsWith('exposures')) continue;
      const ci = meanInterval(mo);
      metrics[metric] = { n: mo.n, mean: r6(mean(mo)), ci95: [r6(ci.low), r6(ci.high)] };
    }
    return { variant: name, exposures: m.get('exposures')?.n ?? 0, metrics };
  });
  const weights = intendedWeights(r);
  const exposureMetric = r.spec.kind === 'canary' ? `exposures_step_${r.step}` : 'exposures';
  const observed = r.spec.variants.map((v) => byVariant.get(v.name)?.get(exposureMetric)?.n ?? 0);
  const srm =
    weights.length === observed.length
      ? sampleRatioMismatch(observed, weights)
      : { chi2: 0, df: 0, pValue: 1, mismatch: false, expected: [] };
  const sequential: ComparisonReport[] = [];
  const control = r.spec.variants[0]!.name;
  for (const v of r.spec.variants.slice(1)) {
    for (const metric of ['latency_ms', 'errors', 'reward']) {
      const c = byVariant.get(control)?.get(metric);
      const t = byVariant.get(v.name)?.get(metric);
      if (c === undefined || t === undefined) continue;
      const res = msprt(c, t);
      const key = `${r.spec.id}/${v.name}/${metric}`;
      const p = Math.min(minP.get(key) ?? 1, res.pValue);
      minP.set(key, p);
      sequential.push({
        variant: v.name,
        metric,
        effect: r6(res.effect),
        p_value: r6(p),
        ci95: [r6(res.low), r6(res.high)],
        significant: p <= 0.05,
      });
    }
  }
  const sh = byVariant.get('shadow');
  const shadow =
    sh === undefined
      ? undefined
      : {
          // Copies that answered (and were compared); `_shed` and `_errors` are counts too.
          shadow_completed: sh.get('shadow_latency_ms')?.n ?? 0,
          ...Object.fromEntries(
            [...sh.entries()].map(([k, mo]) => [
              k.endsWith('_shed') || k.endsWith('_errors') ? k : `${k}_mean`,
              r6(k.endsWith('_shed') || k.endsWith('_errors') ? mo.n : mean(mo)),
            ]),
          ),
        };
  return {
    id: r.spec.id,
    status: r.status,
    variants,
    srm: {
      chi2: r6(srm.chi2),
      df: srm.df,
      p_value: r6(srm.pValue),
      mismatch: srm.mismatch,
      expected: srm.expected.map(r6),
    },
    sequential,
    ...(shadow === undefined ? {} : { shadow }),
  };
}
