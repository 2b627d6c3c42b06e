import { gammaln, probit } from 'simple-statistics';

/**
 * Experiment statistics (issue #6): sample ratio mismatch, confidence intervals, and a sequential
 * test that stays valid under continuous peeking. simple-statistics supplies log-gamma and the
 * normal quantile; the chi-square tail is the regularized incomplete gamma function.
 */

/** Count, sum and sum of squares of one metric of one variant. */
export interface Moments {
  readonly n: number;
  readonly sum: number;
  readonly sumSq: number;
}

export const mean = (m: Moments): number => (m.n === 0 ? 0 : m.sum / m.n);

/** Unbiased sample variance (0 below two observations). */
export function variance(m: Moments): number {
  if (m.n < 2) return 0;
  const v = (m.sumSq - (m.sum * m.sum) / m.n) / (m.n - 1);
  return v > 0 ? v : 0;
}

/** Regularized lower incomplete gamma P(a, x) (Numerical Recipes §6.2). */
function lowerGamma(a: number, x: number): number {
  if (x <= 0) return 0;
  const lg = gammaln(a);
  if (x < a + 1) {
    let sum = 1 / a;
    let term = sum;
    for (let k = 1; k < 1000; k++) {
      term *= x / (a + k);
      sum += term;
      if (Math.abs(term) < Math.abs(sum) * 1e-15) break;
    }
    return sum * Math.exp(-x + a * Math.log(x) - lg);
  }
  // Continued fraction for Q(a, x) (modified Lentz).
  let b = x + 1 - a;
  let c = 1e300;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 1000; i++) {
    const an = -i * (i - a);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < 1e-300) d = 1e-300;
    c = b + an / c;
    if (Math.abs(c) < 1e-300) c = 1e-300;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-15) break;
  }
  return 1 - Math.exp(-x + a * Math.log(x) - lg) * h;
}

/** P(X ≥ x) for X ~ chi-square with `df` degrees of freedom. */
export function chiSquareSurvival(x: number, df: number): number {
  if (!(x > 0)) return 1;
  return Math.min(1, Math.max(0, 1 - lowerGamma(df / 2, x / 2)));
}

export interface SrmResult {
  readonly chi2: number;
  readonly df: number;
  readonly pValue: number;
  /** True when p < `threshold` (default 0.001, the usual SRM alarm level). */
  readonly mismatch: boolean;
  readonly expected: readonly number[];
}

/** Pearson chi-square goodness of fit of observed exposures against the configured split. */
export function sampleRatioMismatch(
  observed: readonly number[],
  weights: readonly number[],
  threshold = 0.001,
): SrmResult {
  const total = observed.reduce((a, b) => a + b, 0);
  const wsum = weights.reduce((a, b) => a + b, 0);
  const expected = weights.map((w) => (wsum === 0 ? 0 : (total * w) / wsum));
  let chi2 = 0;
  let df = -1;
  for (let i = 0; i < observed.length; i++) {
    const e = expected[i]!;
    if (e <= 0) continue;
    df++;
    chi2 += (observed[i]! - e) ** 2 / e;
  }
  if (total === 0 || df < 1)
    return { chi2: 0, df: Math.max(df, 0), pValue: 1, mismatch: false, expected };
  const pValue = chiSquareSurvival(chi2, df);
  return { chi2, df, pValue, mismatch: pValue < threshold, expected };
}

/** Two-sided normal confidence interval of a mean. */
export function meanInterval(m: Moments, level = 0.95): { low: number; high: number } {
  const mu = mean(m);
  if (m.n < 2) return { low: mu, high: mu };
  const z = probit(1 - (1 - level) / 2);
  const half = z * Math.sqrt(variance(m) / m.n);
  return { low: mu - half, high: mu + half };
}

export interface SequentialResult {
  /** Treatment mean minus control mean. */
  readonly effect: number;
  /** The mixture likelihood ratio Λ of the mSPRT. */
  readonly lambda: number;
  /** Always-valid p-value at this look: min(1, 1/Λ). Keep the running minimum across looks. */
  readonly pValue: number;
  /** Always-valid (1 - alpha) confidence interval of the effect. */
  readonly low: number;
  readonly high: number;
  readonly significant: boolean;
}

/**
 * Mixture sequential probability ratio test for a difference of means (Johari, Pekelis & Walsh,
 * "Always valid inference", 2017) with a normal mixing distribution N(0, τ²) over the effect:
 *
 *   V = s²_c/n_c + s²_t/n_t,   Λ = sqrt(V / (V + τ²)) · exp(τ² θ̂² / (2 V (V + τ²)))
 *
 * Rejecting H0 (no effect) when Λ ≥ 1/α keeps the type-I error ≤ α however often the result is
 * looked at. Inverting the test gives the always-valid interval
 * θ̂ ± sqrt(2 V (V + τ²)/τ² · (ln(1/α) + ½ ln((V + τ²)/V))).
 * τ² defaults to 1 % of the pooled variance (a standardized effect of 0.1 is most detectable).
 */
export function msprt(
  control: Moments,
  treatment: Moments,
  alpha = 0.05,
  tau2?: number,
): SequentialResult {
  const effect = mean(treatment) - mean(control);
  if (control.n < 2 || treatment.n < 2)
    return {
      effect,
      lambda: 1,
      pValue: 1,
      low: Number.NEGATIVE_INFINITY,
      high: Number.POSITIVE_INFINITY,
      significant: false,
    };
  const vc = variance(control);
  const vt = variance(treatment);
  const V = Math.max(vc / control.n + vt / treatment.n, 1e-300);
  const pooled = (vc * (control.n - 1) + vt * (treatment.n - 1)) / (control.n + treatment.n - 2);
  const t2 = tau2 ?? Math.max(pooled * 0.01, 1e-12);
  const logLambda = 0.5 * Math.log(V / (V + t2)) + (t2 * effect * effect) / (2 * V * (V + t2));
  const lambda = Math.exp(Math.min(logLambda, 700));
  const half = Math.sqrt(
    ((2 * V * (V + t2)) / t2) * (Math.log(1 / alpha) + 0.5 * Math.log((V + t2) / V)),
  );
  const pValue = Math.min(1, 1 / lambda);
  return {
    effect,
    lambda,
    pValue,
    low: effect - half,
    high: effect + half,
    significant: pValue <= alpha,
  };
}
