/**
 * A latency profile learned from live traffic: a forward-decayed histogram (Cormode, Shkapenyuk,
 * Srivastava, Xu: "Forward Decay", ICDE 2009) over log-spaced buckets. Each observation weighs
 * 2^((t - landmark) / halfLife), so recent calls dominate and an old spike fades with the
 * half-life, without touching every bucket on every observation. Quantiles are read by a scan
 * over the buckets (10% wide, so the estimate is within ~5% of the true value).
 */
const MIN_MS = 0.05;
const GROWTH = 1.1;
const LOG_GROWTH = Math.log(GROWTH);
const BUCKETS = Math.ceil(Math.log(600_000 / MIN_MS) / LOG_GROWTH) + 1;
/** Renormalise before weights lose precision. */
const MAX_WEIGHT = 2 ** 40;

export class LatencyProfile {
  private readonly weights = new Float64Array(BUCKETS);
  private total = 0;
  private landmark: number;
  private cached: { q: number; at: number; value: number } | undefined;

  constructor(
    private readonly halfLifeMs: number,
    now: number,
  ) {
    this.landmark = now;
  }

  observe(ms: number, now: number): void {
    if (!Number.isFinite(ms) || ms < 0) return;
    let w = 2 ** ((now - this.landmark) / this.halfLifeMs);
    if (w > MAX_WEIGHT) {
      const scale = 1 / w;
      for (let i = 0; i < BUCKETS; i++) this.weights[i]! *= scale;
      this.total *= scale;
      this.landmark = now;
      w = 1;
    }
    this.weights[bucketOf(ms)]! += w;
    this.total += w;
    this.cached = undefined;
  }

  /** The decayed number of observations as of `now` (1 observation one half-life ago counts 0.5). */
  weight(now: number): number {
    return this.total / 2 ** ((now - this.landmark) / this.halfLifeMs);
  }

  /** The q-quantile in ms, or undefined before any observation. */
  quantile(q: number): number | undefined {
    if (this.total === 0) return undefined;
    if (this.cached?.q === q) return this.cached.value;
    const target = this.total * q;
    let acc = 0;
    let i = 0;
    for (; i < BUCKETS; i++) {
      acc += this.weights[i]!;
      if (acc >= target) break;
    }
    // The geometric middle of the bucket.
    const value = MIN_MS * GROWTH ** (Math.min(i, BUCKETS - 1) + 0.5);
    this.cached = { q, at: 0, value };
    return value;
  }
}

function bucketOf(ms: number): number {
  if (ms <= MIN_MS) return 0;
  return Math.min(BUCKETS - 1, Math.floor(Math.log(ms / MIN_MS) / LOG_GROWTH));
}
