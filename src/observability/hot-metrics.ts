import type { Aggregator, Metric, Registry } from 'prom-client';

type Labels = Record<string, string>;
/** One label value per label name, in order: `['route', 'model']` takes `[route, model]`. */
type Values<L extends readonly string[]> = { readonly [K in keyof L]: string };

interface Config<L extends readonly string[]> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: L;
  readonly registers: readonly Pick<Registry, 'registerMetric'>[];
}

/** The sample shape prom-client's registry renders and its cluster aggregation sums. */
interface Sample {
  labels: Record<string, string | number>;
  value: number;
  metricName?: string;
  exemplar?: Exemplar | null;
}

/** What prom-client's OpenMetrics rendering reads of an exemplar (`value.exemplar`). */
interface Exemplar {
  labelSet: Labels;
  value: number;
  timestamp: number;
}

/**
 * A labelled metric for the request path, read by prom-client's registry at scrape time only.
 * prom-client's `labels(...)` builds a child per call and re-validates and re-hashes its labels
 * on every `inc`/`observe`; here a series is found by its label values through nested Maps (so
 * no separator can collide) and updated in place. The registry needs `name`, `help`, `type`,
 * `aggregator`, `get()` and `reset()`; the docs test reads `labelNames`.
 */
abstract class HotMetric<L extends readonly string[], S extends { readonly labels: Labels }> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: L;
  readonly aggregator: Aggregator = 'sum';
  abstract readonly type: 'counter' | 'histogram';
  private root = new Map<string, unknown>();
  /** The series in creation order, the order prom-client renders them. */
  protected all: S[] = [];

  constructor(config: Config<L>) {
    if (config.labelNames.length === 0) throw new Error(`${config.name}: at least one label`);
    this.name = config.name;
    this.help = config.help;
    this.labelNames = config.labelNames;
    // The registry renders anything with this shape; its types only name its own classes.
    for (const r of config.registers) r.registerMetric(this as unknown as Metric);
  }

  protected abstract create(labels: Labels): S;

  protected series(values: Values<L>): S {
    let node = this.root;
    const last = values.length - 1;
    for (let i = 0; i < last; i++) {
      let next = node.get(values[i]!) as Map<string, unknown> | undefined;
      if (next === undefined) node.set(values[i]!, (next = new Map()));
      node = next;
    }
    let s = node.get(values[last]!) as S | undefined;
    if (s === undefined) {
      const labels: Labels = {};
      for (let i = 0; i <= last; i++) labels[this.labelNames[i]!] = values[i]!;
      node.set(values[last]!, (s = this.create(labels)));
      this.all.push(s);
    }
    return s;
  }

  protected abstract samples(): Sample[];

  /** prom-client's MetricObject: what `registry.metrics()` and `getMetricsAsJSON()` read. */
  get(): Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: Aggregator;
    values: Sample[];
  }> {
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      values: this.samples(),
      aggregator: this.aggregator,
    });
  }

  reset(): void {
    this.root = new Map();
    this.all = [];
  }
}

interface CounterSeries {
  readonly labels: Labels;
  value: number;
}

export class HotCounter<const L extends readonly string[]> extends HotMetric<L, CounterSeries> {
  readonly type = 'counter';

  /** Adds `by` (1 unless given); a negative or non-finite amount is ignored, never thrown. */
  inc(values: Values<L>, by = 1): void {
    if (!(by >= 0 && by !== Infinity)) return;
    this.series(values).value += by;
  }

  protected create(labels: Labels): CounterSeries {
    return { labels, value: 0 };
  }

  protected samples(): Sample[] {
    return this.all.map((s) => ({ value: s.value, labels: { ...s.labels } }));
  }
}

interface HistogramSeries {
  readonly labels: Labels;
  /** Per bucket, not cumulative; the last one past the highest bound (`+Inf`). */
  readonly counts: number[];
  sum: number;
  count: number;
  /** The latest exemplar per bucket, as `counts`. */
  exemplars: (Exemplar | null)[] | undefined;
}

export class HotHistogram<const L extends readonly string[]> extends HotMetric<L, HistogramSeries> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];

  constructor(config: Config<L> & { readonly buckets: readonly number[] }) {
    super(config);
    this.buckets = config.buckets;
  }

  /**
   * Records `value` (a non-finite one is ignored, never thrown); `exemplar` labels, such as a
   * trace id, replace the exemplar of the value's bucket (OpenMetrics output only).
   */
  observe(values: Values<L>, value: number, exemplar?: Labels): void {
    if (!Number.isFinite(value)) return;
    const s = this.series(values);
    const b = this.buckets;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    s.counts[i]!++;
    s.sum += value;
    s.count++;
    if (exemplar === undefined) return;
    s.exemplars ??= s.counts.map(() => null);
    s.exemplars[i] = { labelSet: exemplar, value, timestamp: Date.now() / 1000 };
  }

  protected create(labels: Labels): HistogramSeries {
    return {
      labels,
      counts: new Array<number>(this.buckets.length + 1).fill(0),
      sum: 0,
      count: 0,
      exemplars: undefined,
    };
  }

  /** As prom-client's Histogram.get(): cumulative `_bucket`s with `le` first, `+Inf`, `_sum`, `_count`. */
  protected samples(): Sample[] {
    const bucket = `${this.name}_bucket`;
    const out: Sample[] = [];
    for (const s of this.all) {
      let acc = 0;
      const exemplar = (i: number): Exemplar | null => s.exemplars?.[i] ?? null;
      this.buckets.forEach((le, i) => {
        acc += s.counts[i]!;
        out.push({
          labels: { le, ...s.labels },
          value: acc,
          metricName: bucket,
          exemplar: exemplar(i),
        });
      });
      out.push(
        {
          labels: { le: '+Inf', ...s.labels },
          value: s.count,
          metricName: bucket,
          exemplar: exemplar(this.buckets.length),
        },
        {
          labels: { ...s.labels },
          value: s.sum,
          metricName: `${this.name}_sum`,
        },
        {
          labels: { ...s.labels },
          value: s.count,
          metricName: `${this.name}_count`,
        },
      );
    }
    return out;
  }
}
