import type { Clock } from '../core/clock.js';

const WINDOW = 2048;
const QPS_WINDOW_MS = 10_000;

/** Rolling per-shard search numbers: QPS over the last 10 s and p95 over the last 2048 searches. */
export class SearchStats {
  private readonly ms = new Float64Array(WINDOW);
  private readonly at = new Float64Array(WINDOW);
  private n = 0;
  searches = 0;
  recall: number | undefined;

  constructor(private readonly clock: Clock) {}

  record(startedAt: number): void {
    const now = this.clock.now();
    const i = this.n % WINDOW;
    this.ms[i] = now - startedAt;
    this.at[i] = now;
    this.n++;
    this.searches++;
  }

  qps(): number {
    const now = this.clock.now();
    const count = Math.min(this.n, WINDOW);
    let recent = 0;
    let oldest = now;
    for (let i = 0; i < count; i++) {
      const t = this.at[i]!;
      if (now - t <= QPS_WINDOW_MS) {
        recent++;
        if (t < oldest) oldest = t;
      }
    }
    if (recent === 0) return 0;
    // With a full window of samples, the rate is over the span they cover.
    const span = recent === WINDOW ? Math.max(1, now - oldest) : QPS_WINDOW_MS;
    return (recent * 1000) / span;
  }

  p95(): number {
    const count = Math.min(this.n, WINDOW);
    if (count === 0) return 0;
    const sorted = Array.from(this.ms.subarray(0, count)).sort((a, b) => a - b);
    return sorted[Math.min(count - 1, Math.floor(count * 0.95))]!;
  }
}
