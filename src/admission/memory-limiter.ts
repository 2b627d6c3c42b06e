import type {
  QuotaCharge,
  QuotaDecision,
  QuotaLimiter,
  QuotaReceipt,
  QuotaWindow,
} from '../contracts/limiter.js';
import type { Clock } from '../core/clock.js';
import { gcraStep, spanOf, settleTtl, windowName } from './quota-window.js';

interface Cell {
  /** A counter (calendar windows) or a theoretical arrival time, epoch ms (rates). */
  value: number;
  /** For a rate: ms per unit, so the bucket's level can be read back in units. */
  per: number;
  expiresAt: number;
}

const SWEEP_EVERY = 4_096;

/** A calendar counter's cell: the window is part of it, as a month and its first day start alike. */
function countId(key: string, window: QuotaWindow, bucket: number): string {
  return `${key}|${windowName(window)}|${bucket}`;
}

/**
 * The in-process quota limiter (the embedded default, and the Redis limiter's local fallback).
 * Rates are GCRA cells (one theoretical arrival time per key); calendar budgets are counters per
 * bucket. Expired cells are swept now and then. `scale` multiplies every limit and burst (the
 * fallback's share of a shared limit).
 */
export class MemoryLimiter implements QuotaLimiter {
  private readonly cells = new Map<string, Cell>();
  private ops = 0;

  constructor(
    private readonly clock: Clock,
    private readonly scale = 1,
    private readonly shared = true,
  ) {}

  reserve(charges: readonly QuotaCharge[]): Promise<QuotaDecision> {
    return Promise.resolve(this.reserveSync(charges));
  }

  /** `now` (epoch ms) lets a caller decide at the instant it already chose (default: the clock). */
  reserveSync(charges: readonly QuotaCharge[], now = this.clock.wall()): QuotaDecision {
    if (++this.ops % SWEEP_EVERY === 0) this.sweep(now);
    const next: number[] = [];
    for (const c of charges) {
      const limit = Math.floor(c.limit * this.scale);
      if (typeof c.window !== 'string') {
        const burst = Math.floor((c.burst ?? c.limit) * this.scale);
        const step = gcraStep(
          this.get(`${c.key}|r`, now),
          now,
          c.window.ms,
          limit,
          burst,
          c.amount,
        );
        if (!step.allowed) return this.refuse(c.key, step.retryAfterMs);
        next.push(step.tat);
        continue;
      }
      const span = spanOf(c.window, now);
      const cur = this.get(countId(c.key, c.window, span.bucket), now);
      if (cur + c.amount > limit) {
        const wait = c.amount > limit ? span.end - now + (span.end - span.bucket) : span.end - now;
        return this.refuse(c.key, wait);
      }
      next.push(cur + c.amount);
    }
    const receipts: QuotaReceipt[] = charges.map((c, i) => {
      if (typeof c.window !== 'string') {
        const per = c.window.ms / Math.max(1, Math.floor(c.limit * this.scale));
        if (c.amount !== 0) this.set(`${c.key}|r`, next[i]!, next[i]! + 1_000, per);
        return {
          key: c.key,
          window: c.window,
          bucket: 0,
          limit: c.limit,
          amount: c.amount,
          shared: this.shared,
        };
      }
      const span = spanOf(c.window, now);
      if (c.amount !== 0)
        this.set(countId(c.key, c.window, span.bucket), next[i]!, now + span.ttlMs);
      return {
        key: c.key,
        window: c.window,
        bucket: span.bucket,
        limit: c.limit,
        amount: c.amount,
        shared: this.shared,
      };
    });
    return { allowed: true, retryAfterMs: 0, receipts, shared: this.shared };
  }

  settle(receipt: QuotaReceipt, actual: number): Promise<void> {
    this.settleSync(receipt, actual);
    return Promise.resolve();
  }

  settleSync(receipt: QuotaReceipt, actual: number): void {
    const delta = actual - receipt.amount;
    if (delta === 0) return;
    const now = this.clock.wall();
    if (typeof receipt.window !== 'string') {
      const per = receipt.window.ms / Math.max(1, Math.floor(receipt.limit * this.scale));
      const tat = Math.max(now, this.get(`${receipt.key}|r`, now)) + delta * per;
      this.set(`${receipt.key}|r`, tat, Math.max(now, tat) + 1_000, per);
      return;
    }
    const ttl = settleTtl(receipt, now);
    if (ttl <= 0) return; // the bucket no longer counts
    const id = countId(receipt.key, receipt.window, receipt.bucket);
    this.set(id, this.get(id, now) + delta, now + ttl);
  }

  /** Sets a calendar counter (the Redis limiter's fallback starts from the last shared count). */
  seedCount(
    key: string,
    window: 'day' | 'month',
    bucket: number,
    value: number,
    expiresAt: number,
  ): void {
    this.set(countId(key, window, bucket), value, expiresAt);
  }

  /**
   * Moves a rate's arrival time to at least `tat` (epoch ms). A bucket scaled by `scale` with the
   * same arrival time is as full as the unscaled one (its units are 1/scale as long), so the
   * shared store's arrival time is the local one.
   */
  seedRate(key: string, window: { readonly ms: number }, limit: number, tat: number): void {
    const now = this.clock.wall();
    const id = `${key}|r`;
    const next = Math.max(tat, this.get(id, now));
    if (next <= now) return;
    this.set(id, next, next + 1_000, window.ms / Math.max(1, Math.floor(limit * this.scale)));
  }

  /** A rate's theoretical arrival time (epoch ms; 0 when it has none). */
  rateTat(key: string): number {
    return this.get(`${key}|r`, this.clock.wall());
  }

  usage(key: string, window: QuotaWindow): Promise<number> {
    return Promise.resolve(this.usageSync(key, window));
  }

  usageSync(key: string, window: QuotaWindow): number {
    const now = this.clock.wall();
    if (typeof window !== 'string') {
      const cell = this.cells.get(`${key}|r`);
      if (cell === undefined || cell.expiresAt <= now) return 0;
      return Math.max(0, cell.value - now) / cell.per;
    }
    return this.get(countId(key, window, spanOf(window, now).bucket), now);
  }

  close(): Promise<void> {
    this.cells.clear();
    return Promise.resolve();
  }

  private refuse(key: string, retryAfterMs: number): QuotaDecision {
    return {
      allowed: false,
      refused: key,
      retryAfterMs: Math.max(1, Math.ceil(retryAfterMs)),
      receipts: [],
      shared: this.shared,
    };
  }

  private get(id: string, now: number): number {
    const cell = this.cells.get(id);
    return cell === undefined || cell.expiresAt <= now ? 0 : cell.value;
  }

  private set(id: string, value: number, expiresAt: number, per = 0): void {
    this.cells.set(id, { value, per, expiresAt });
  }

  private sweep(now: number): void {
    for (const [id, cell] of this.cells) if (cell.expiresAt <= now) this.cells.delete(id);
  }
}
