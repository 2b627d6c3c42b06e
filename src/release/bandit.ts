import type { Random } from '../core/random.js';

/** Beta(alpha, beta) posterior of one arm's Bernoulli reward. */
export interface ArmPosterior {
  alpha: number;
  beta: number;
}

/** A standard normal draw (Box–Muller; one of the pair is dropped to stay stateless). */
function normal(random: Random): number {
  let u = 0;
  while (u === 0) u = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * random());
}

/** A Gamma(shape, 1) draw (Marsaglia & Tsang 2000; boosted for shape < 1). */
export function sampleGamma(shape: number, random: Random): number {
  if (shape < 1) {
    let u = 0;
    while (u === 0) u = random();
    return sampleGamma(shape + 1, random) * Math.pow(u, 1 / shape);
  }
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = normal(random);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = random();
    if (u < 1 - 0.0331 * x * x * x * x) return d * v;
    if (Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

export function sampleBeta(alpha: number, beta: number, random: Random): number {
  const x = sampleGamma(alpha, random);
  const y = sampleGamma(beta, random);
  return x / (x + y);
}

/**
 * Thompson sampling over Bernoulli arms with an exploration floor: with probability
 * `floor × arms` an arm is drawn uniformly, otherwise the arm with the highest posterior sample
 * wins. Every arm is therefore chosen with probability ≥ `floor`, whatever the posteriors say.
 */
export function thompsonChoose(
  arms: readonly ArmPosterior[],
  floor: number,
  random: Random,
): number {
  const k = arms.length;
  if (k <= 1) return 0;
  const explore = Math.min(1, Math.max(0, floor) * k);
  if (explore > 0 && random() < explore) return Math.min(k - 1, Math.floor(random() * k));
  let best = 0;
  let bestDraw = -1;
  for (let i = 0; i < k; i++) {
    const a = arms[i]!;
    const draw = sampleBeta(a.alpha, a.beta, random);
    if (draw > bestDraw) {
      bestDraw = draw;
      best = i;
    }
  }
  return best;
}
