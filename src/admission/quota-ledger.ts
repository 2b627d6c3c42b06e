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
   * Calendar: units counted locally. Rate: the arrival time (epoch ms) of a bucket that saw only
   * this replica's local usage, refilled at the shared rate: what has drained from it would have
   * drained from the shared bucket too, so only the rest is written back.
   */
  value: number;
}

/** A store command that timed out: it may have reached the store late (taking `shared`), or not. */
export interface UncertainOp {
  readonly seq: number;
  readonly parts: readonly { readonly counter: Counter; readonly shared: number }[];
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
 */
export class QuotaLedger {
  private readonly entries = new Map<string, Entry>();
  private readonly ops: UncertainOp[] = [];

  constructor(readonly outage: number) {}

  get empty(): boolean {
    return this.entries.size === 0;
  }

  /** `units` counted locally into `counter` at `now` (negative: a refund). */
  add(counter: Counter, units: number, now: number): void {
    if (units === 0) return;
    const e = this.entry(counter);
    if (typeof counter.window === 'string') e.value += units;
    else {
      const per = perUnit(counter.window, counter.limit);
      e.value = Math.max(now, Math.max(e.value, now) + units * per);
    }
  }

  /** A command (sequence number `seq`) that timed out; what it would take is in `parts`. */
  addUncertain(seq: number, parts: UncertainOp['parts']): void {
    for (const p of parts) this.entry(p.counter);
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
        typeof w === 'string' ? e.value : Math.max(0, e.value - now) / perUnit(w, e.counter.limit),
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

  private entry(counter: Counter): Entry {
    const id = counterId(counter);
    let e = this.entries.get(id);
    if (e === undefined) {
      e = { counter, value: 0 };
      this.entries.set(id, e);
    }
    return e;
  }
}
