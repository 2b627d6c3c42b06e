import type { QuotaWindow } from '../contracts/limiter.js';

/** Where `now` falls in a calendar window: the bucket to count into and when it ends. */
export interface WindowSpan {
  /** Start of the current bucket, epoch ms. */
  readonly bucket: number;
  /** End of the current bucket, epoch ms. */
  readonly end: number;
  /** How long the bucket is kept (a little past its end, for late settles). */
  readonly ttlMs: number;
}

const DAY_MS = 86_400_000;
/** Buckets outlive their window a little, so a late settle still finds its bucket. */
const SLACK_MS = 3_600_000;

export function windowName(w: QuotaWindow): string {
  return typeof w === 'string' ? w : `${w.ms}ms`;
}

/** The bucket containing `bucketStart`'s successor: the end of that bucket. */
export function bucketEnd(w: QuotaWindow, bucketStart: number): number {
  if (w === 'day') return bucketStart + DAY_MS;
  if (w === 'month') {
    const d = new Date(bucketStart);
    return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
  }
  return bucketStart + w.ms;
}

/** How much longer a receipt's bucket counts (ms from `now`; <= 0 once it no longer does). */
export function settleTtl(
  receipt: { readonly window: QuotaWindow; readonly bucket: number },
  now: number,
): number {
  const end = bucketEnd(receipt.window, receipt.bucket);
  const keep = typeof receipt.window === 'string' ? SLACK_MS : receipt.window.ms + 1_000;
  return Math.ceil(end + keep - now);
}

/** One GCRA step: whether `amount` fits a bucket of `burst` units refilled at `limit` per `ms`. */
export function gcraStep(
  storedTat: number,
  now: number,
  ms: number,
  limit: number,
  burst: number,
  amount: number,
): { allowed: boolean; tat: number; retryAfterMs: number } {
  const per = ms / Math.max(1, limit);
  const tat = Math.max(storedTat, now);
  const next = tat + amount * per;
  const over = next - now - burst * per;
  if (amount > burst) return { allowed: false, tat, retryAfterMs: ms };
  // A hair of tolerance: float time arithmetic must not refuse the last unit of a burst.
  if (over > 1e-6) return { allowed: false, tat, retryAfterMs: over };
  return { allowed: true, tat: next, retryAfterMs: 0 };
}

export function spanOf(w: QuotaWindow, now: number): WindowSpan {
  let bucket: number;
  if (w === 'day') bucket = Math.floor(now / DAY_MS) * DAY_MS;
  else if (w === 'month') {
    const d = new Date(now);
    bucket = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  } else bucket = Math.floor(now / w.ms) * w.ms;
  const end = bucketEnd(w, bucket);
  return { bucket, end, ttlMs: end - now + SLACK_MS };
}
