import type { QuotaWindow } from '../contracts/limiter.js';
import { settleTtl, windowName } from './quota-window.js';

/** One counter: a key's calendar bucket (`day`, `month`), or its rate (bucket 0). */
export interface Counter {
  readonly key: string;
  readonly window: QuotaWindow;
  readonly bucket: number;
  /** The unscaled limit; a rate's unit lasts `window.ms / limit` ms. */
  readonly limit: number;
}

export function counterId(c: Counter): string {
  return typeof c.window === 'string'
    ? `${c.key}|${windowName(c.window)}|${c.bucket}`
    : `${c.key}|r`;
}

/** Ms per unit of a rate counter in the shared store. */
export function perUnit(window: { readonly ms: number }, limit: number): number {
  return window.ms / Math.max(1, limit);
}

interface Entry {
  readonly counter: Counter;
  /**
   * Calendar: units counted locally. Rate: the arrival time (epoch ms) of a copy of the local
   * bucket that saw only this outage's usage, from `base` on, at the local rate.
   */
  value: number;
  /** Rate: the local bucket's arrival time when this outage first used it (its seed). */
  readonly base: number;
}

/** A store command that timed out: it may have reached the store late (taking `shared`), or not. */
export interface UncertainOp {
  readonly seq: number;
  readonly parts: readonly {
    readonly counter: Counter;
    readonly shared: number;
    /** For a rate: the local bucket's arrival time before this command was decided. */
    readonly base?: number;
  }[];
}

/** Units to add to one counter in the shared store (a refund when negative). */
export interface WriteBackPart {
  readonly counter: Counter;
  readonly units: number;
}

/**
 * What one replica counted locally during one outage of the shared store (issue #13): units
 * per counter, and the commands that timed out. A write-back adds the units to the shared
 * counters and, for each timed-out command that did reach the store, takes back what it took
 * there, so that nothing is counted twice.
 *
 * A rate's units are what this outage added to the local bucket beyond its seed and still holds
 * at the write-back: the local bucket started from the shared one (its seed), so what it holds
 * beyond that is what the shared bucket would hold more had it counted the local usage. Exact
 * when every replica counted locally (a real outage), and when one replica alone counted
 * locally for less than a burst's refill time (a command that timed out on a busy machine);
 * a replica alone counting locally for longer repays at most its local burst.
 */
export class QuotaLedger {
  private readonly entries = new Map<string, Entry>();
  private readonly ops: UncertainOp[] = [];

  /** `share`: the local limiter's scale (a local rate unit lasts 1 / share shared units). */
  constructor(
    readonly outage: number,
    private readonly share: number,
  ) {}

  get empty(): boolean {
    return this.entries.size === 0;
  }

  /**
   * `units` counted locally into `counter` at `now` (negative: a refund). For a rate, `base` is
   * the local bucket's arrival time before the change (it seeds the entry on first use).
   */
  add(counter: Counter, units: number, now: number, base = 0): void {
    if (units === 0) return;
    const e = this.entry(counter, base);
    if (typeof counter.window === 'string') e.value += units;
    else {
      const per = this.localPer(counter.window, counter.limit);
      e.value = Math.max(now, Math.max(e.value, now) + units * per);
    }
  }

  /** A command (sequence number `seq`) that timed out; what it would take is in `parts`. */
  addUncertain(seq: number, parts: UncertainOp['parts']): void {
    for (const p of parts) this.entry(p.counter, p.base ?? 0);
    this.ops.push({ seq, parts });
  }

  /** Units counted locally into a calendar counter and not yet written back. */
  count(id: string): number {
    const e = this.entries.get(id);
    return e === undefined || typeof e.counter.window !== 'string' ? 0 : e.value;
  }

  uncertain(): readonly UncertainOp[] {
    return this.ops;
  }

  /**
   * What to add to each shared counter at `now`, given which timed-out commands reached the
   * store (`ran[i]` for the i-th of `uncertain()`). Calendar buckets that no longer count are
   * left out (`dropped`), and so are counters with nothing to add.
   */
  parts(ran: readonly boolean[], now: number): { parts: WriteBackPart[]; dropped: number } {
    const units = new Map<string, number>();
    for (const [id, e] of this.entries) {
      const w = e.counter.window;
      units.set(
        id,
        typeof w === 'string'
          ? e.value
          : Math.max(0, e.value - Math.max(e.base, now)) / this.localPer(w, e.counter.limit),
      );
    }
    this.ops.forEach((op, i) => {
      if (ran[i] !== true) return;
      for (const p of op.parts) {
        const id = counterId(p.counter);
        units.set(id, (units.get(id) ?? 0) - p.shared);
      }
    });
    const parts: WriteBackPart[] = [];
    let dropped = 0;
    for (const [id, u] of units) {
      const counter = this.entries.get(id)!.counter;
      if (typeof counter.window === 'string') {
        if (settleTtl(counter, now) <= 0) {
          dropped++;
          continue;
        }
        if (Math.round(u) !== 0) parts.push({ counter, units: Math.round(u) });
      } else if (Math.abs(u) > 1e-9) parts.push({ counter, units: u });
    }
    return { parts, dropped };
  }

  /** Ms per unit of a rate in the local bucket (the memory limiter scales limits by `share`). */
  private localPer(window: { readonly ms: number }, limit: number): number {
    return window.ms / Math.max(1, Math.floor(limit * this.share));
  }

  private entry(counter: Counter, base: number): Entry {
    const id = counterId(counter);
    let e = this.entries.get(id);
    if (e === undefined) {
      const seed = typeof counter.window === 'string' ? 0 : base;
      e = { counter, value: seed, base: seed };
      this.entries.set(id, e);
    }
    return e;
  }
}
