import type { CounterRow, ExposureRow, RegistryStore } from '../contracts/registry-store.js';
import { extend } from '../core/objects.js';

/**
 * Hot-path data waiting to be written: counter deltas merged by key, and exposures in a bounded
 * queue (the oldest are dropped, and counted, if the store falls behind). `flush` writes both in
 * one go, off the request path.
 */
export class CounterBuffer {
  private counters = new Map<
    string,
    { key: Omit<CounterRow, 'n' | 'sum' | 'sumSq'>; n: number; sum: number; sumSq: number }
  >();
  private exposures: ExposureRow[] = [];
  private flushing: Promise<void> | undefined;
  droppedExposures = 0;

  constructor(private readonly maxExposures = 100_000) {}

  add(experiment: string, variant: string, segment: string, metric: string, value = 1): void {
    const k = `${experiment}\u0000${variant}\u0000${segment}\u0000${metric}`;
    let c = this.counters.get(k);
    if (c === undefined) {
      c = { key: { experiment, variant, segment, metric }, n: 0, sum: 0, sumSq: 0 };
      this.counters.set(k, c);
    }
    c.n++;
    c.sum += value;
    c.sumSq += value * value;
  }

  exposure(row: ExposureRow): void {
    if (this.exposures.length >= this.maxExposures) {
      this.exposures.shift();
      this.droppedExposures++;
    }
    this.exposures.push(row);
  }

  /** Deltas not yet written, for one experiment (stats add them to the stored totals). */
  pending(experiment: string): CounterRow[] {
    const out: CounterRow[] = [];
    for (const c of this.counters.values())
      if (c.key.experiment === experiment)
        out.push(extend(c.key, { n: c.n, sum: c.sum, sumSq: c.sumSq }));
    return out;
  }

  /** Writes everything buffered; on failure the data goes back into the buffer. */
  flush(store: RegistryStore): Promise<void> {
    this.flushing ??= (async () => {
      const counters = this.counters;
      const exposures = this.exposures;
      this.counters = new Map();
      this.exposures = [];
      const rows = [...counters.values()].map((c) =>
        extend(c.key, { n: c.n, sum: c.sum, sumSq: c.sumSq }),
      );
      try {
        if (rows.length > 0) await store.addCounters(rows);
      } catch (err) {
        for (const r of rows) this.merge(r);
        this.exposures = exposures.concat(this.exposures).slice(-this.maxExposures);
        throw err;
      }
      try {
        if (exposures.length > 0) await store.appendExposures(exposures);
      } catch (err) {
        this.exposures = exposures.concat(this.exposures).slice(-this.maxExposures);
        throw err;
      }
    })().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private merge(r: CounterRow): void {
    const k = `${r.experiment}\u0000${r.variant}\u0000${r.segment}\u0000${r.metric}`;
    const c = this.counters.get(k);
    if (c === undefined)
      this.counters.set(k, {
        key: { experiment: r.experiment, variant: r.variant, segment: r.segment, metric: r.metric },
        n: r.n,
        sum: r.sum,
        sumSq: r.sumSq,
      });
    else {
      c.n += r.n;
      c.sum += r.sum;
      c.sumSq += r.sumSq;
    }
  }
}
