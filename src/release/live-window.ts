/**
 * Sliding-window health of one variant, for guardrails and rollback rules: a ring of time slots,
 * each with counts and a log-spaced latency histogram (5 % wide bins), so p95 over the window
 * costs one pass over the bins and recording costs a few increments.
 */
const BINS = 200;
const LOG_STEP = Math.log(1.05);

const binOf = (ms: number): number =>
  Math.min(BINS - 1, Math.max(0, Math.floor(Math.log(ms + 1) / LOG_STEP)));
const upperOf = (bin: number): number => Math.exp((bin + 1) * LOG_STEP) - 1;

interface Slot {
  epoch: number;
  n: number;
  errors: number;
  fallbacks: number;
  policy: number;
  shadowN: number;
  shadowDisagree: number;
  hist: Uint32Array;
}

export interface WindowStats {
  readonly n: number;
  readonly errors: number;
  readonly fallbacks: number;
  readonly policy: number;
  readonly p95Ms: number;
  readonly shadowN: number;
  readonly shadowDisagree: number;
}

export class LiveWindow {
  private readonly slots: Slot[];
  private readonly slotMs: number;

  constructor(windowMs: number, slotCount = 30) {
    this.slotMs = Math.max(1, Math.ceil(windowMs / slotCount));
    this.slots = Array.from({ length: slotCount }, () => ({
      epoch: -1,
      n: 0,
      errors: 0,
      fallbacks: 0,
      policy: 0,
      shadowN: 0,
      shadowDisagree: 0,
      hist: new Uint32Array(BINS),
    }));
  }

  private slot(now: number): Slot {
    const epoch = Math.floor(now / this.slotMs);
    const s = this.slots[epoch % this.slots.length]!;
    if (s.epoch !== epoch) {
      s.epoch = epoch;
      s.n = s.errors = s.fallbacks = s.policy = s.shadowN = s.shadowDisagree = 0;
      s.hist.fill(0);
    }
    return s;
  }

  record(now: number, ms: number, error: boolean, fallback: boolean, policy: boolean): void {
    const s = this.slot(now);
    s.n++;
    if (error) s.errors++;
    if (fallback) s.fallbacks++;
    if (policy) s.policy++;
    s.hist[binOf(ms)]!++;
  }

  recordShadow(now: number, agree: boolean): void {
    const s = this.slot(now);
    s.shadowN++;
    if (!agree) s.shadowDisagree++;
  }

  /** Totals over the slots within the window ending at `now`. */
  stats(now: number): WindowStats {
    const epoch = Math.floor(now / this.slotMs);
    const oldest = epoch - this.slots.length + 1;
    let n = 0;
    let errors = 0;
    let fallbacks = 0;
    let policy = 0;
    let shadowN = 0;
    let shadowDisagree = 0;
    const hist = new Float64Array(BINS);
    for (const s of this.slots) {
      if (s.epoch < oldest || s.epoch > epoch) continue;
      n += s.n;
      errors += s.errors;
      fallbacks += s.fallbacks;
      policy += s.policy;
      shadowN += s.shadowN;
      shadowDisagree += s.shadowDisagree;
      for (let i = 0; i < BINS; i++) hist[i]! += s.hist[i]!;
    }
    let p95Ms = 0;
    if (n > 0) {
      const want = Math.ceil(n * 0.95);
      let seen = 0;
      for (let i = 0; i < BINS; i++) {
        seen += hist[i]!;
        if (seen >= want) {
          p95Ms = upperOf(i);
          break;
        }
      }
    }
    return { n, errors, fallbacks, policy, p95Ms, shadowN, shadowDisagree };
  }
}
