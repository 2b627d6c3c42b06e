import type { RollbackRules } from '../contracts/registry-store.js';
import type { WindowStats } from './live-window.js';

export type RuleVerdict =
  | { readonly kind: 'ok' }
  | { readonly kind: 'insufficient'; readonly detail: string }
  | {
      readonly kind: 'breach';
      readonly rule: string;
      readonly detail: string;
      readonly observed: Readonly<Record<string, number>>;
    };

const rate = (k: number, n: number): number => (n === 0 ? 0 : k / n);
const r4 = (x: number): number => Math.round(x * 10_000) / 10_000;

/**
 * Judges a candidate against its control over the live window. Rules are pre-declared per
 * release; the first breached rule is returned. Without enough samples on both sides nothing is
 * judged (and a ramp does not advance).
 */
export function judge(
  rules: RollbackRules,
  control: WindowStats,
  candidate: WindowStats,
): RuleVerdict {
  if (rules.shadow_disagreement !== undefined && candidate.shadowN >= rules.min_samples) {
    const d = rate(candidate.shadowDisagree, candidate.shadowN);
    if (d > rules.shadow_disagreement)
      return {
        kind: 'breach',
        rule: 'shadow_disagreement',
        detail: `shadow disagreement ${r4(d)} > ${rules.shadow_disagreement}`,
        observed: { disagreement: r4(d), samples: candidate.shadowN },
      };
  }
  if (candidate.n < rules.min_samples || control.n < rules.min_samples)
    return {
      kind: 'insufficient',
      detail: `samples control ${control.n}, candidate ${candidate.n} < ${rules.min_samples}`,
    };
  if (rules.p95_latency_ratio !== undefined && control.p95Ms > 0) {
    const ratio = candidate.p95Ms / control.p95Ms;
    const delta = candidate.p95Ms - control.p95Ms;
    if (ratio > rules.p95_latency_ratio && delta >= (rules.p95_latency_min_delta_ms ?? 0))
      return {
        kind: 'breach',
        rule: 'p95_latency_ratio',
        detail: `candidate p95 ${r4(candidate.p95Ms)} ms is ${r4(ratio)}× control ${r4(control.p95Ms)} ms (limit ${rules.p95_latency_ratio}×)`,
        observed: {
          candidate_p95_ms: r4(candidate.p95Ms),
          control_p95_ms: r4(control.p95Ms),
          ratio: r4(ratio),
        },
      };
  }
  const deltaRule = (
    name: 'error_rate_delta' | 'fallback_rate_delta',
    pick: (w: WindowStats) => number,
  ): RuleVerdict | undefined => {
    const limit = rules[name];
    if (limit === undefined) return undefined;
    const c = rate(pick(control), control.n);
    const t = rate(pick(candidate), candidate.n);
    if (t - c <= limit) return undefined;
    return {
      kind: 'breach',
      rule: name,
      detail: `candidate rate ${r4(t)} vs control ${r4(c)} (limit +${limit})`,
      observed: { candidate: r4(t), control: r4(c) },
    };
  };
  const e =
    deltaRule('error_rate_delta', (w) => w.errors) ??
    deltaRule('fallback_rate_delta', (w) => w.fallbacks);
  if (e !== undefined) return e;
  if (rules.policy_exception_rate !== undefined) {
    const p = rate(candidate.policy, candidate.n);
    if (p > rules.policy_exception_rate)
      return {
        kind: 'breach',
        rule: 'policy_exception_rate',
        detail: `candidate policy-exception rate ${r4(p)} > ${rules.policy_exception_rate}`,
        observed: { candidate: r4(p) },
      };
  }
  return { kind: 'ok' };
}
