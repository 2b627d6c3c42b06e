import type { ClusterPeer } from '../contracts/cluster.js';
import type {
  QuotaCharge,
  QuotaDecision,
  QuotaLimiter,
  QuotaReceipt,
  QuotaWindow,
} from '../contracts/limiter.js';
import { systemClock, type Clock } from '../core/clock.js';
import { extend } from '../core/objects.js';
import type { MemoryLimiter } from './memory-limiter.js';

/**
 * One limiter operation, as a worker sends it to the primary. A reserve with `leaseFor` (the
 * number of workers) also asks for a lease on each of its rate charges (below).
 */
export type LimiterOp =
  | {
      readonly op: 'reserve';
      readonly charges: readonly QuotaCharge[];
      readonly leaseFor?: number;
    }
  | { readonly op: 'lease'; readonly charges: readonly QuotaCharge[]; readonly leaseFor: number }
  | { readonly op: 'settle'; readonly receipt: QuotaReceipt; readonly actual: number }
  | { readonly op: 'usage'; readonly key: string; readonly window: QuotaWindow };

/** A reserve's answer, with the leases the primary granted beside it (one per charge or none). */
export interface LeasedDecision extends QuotaDecision {
  /** Per charge: the units granted (taken from the bucket now), or null. */
  readonly leases?: readonly (QuotaReceipt | null)[];
}

export const LIMITER_TOPIC = 'limiter';

/** A lease is at most this many requests' worth of a charge... */
const LEASE_MAX_REQUESTS = 256;
/** ...at most this share of the limit, across all the workers together... */
const LEASE_LIMIT_SHARE = 0.01;
/** ...and at most this share of what the bucket can still take. */
const LEASE_HEADROOM_SHARE = 0.25;
/** How long a worker holds a lease before it gives back what it did not use (ms). */
export const LEASE_MS = 100;

/**
 * The units of a lease on a rate charge that was just taken, or 0: the primary's part of the
 * lease rule. A lease takes units from the bucket now for requests the worker admits later, so it
 * is granted only where that cannot matter: at most 1% of the limit across the workers (which
 * bounds what the GCRA's any-window guarantee can be off by while leases are out) and a quarter
 * of the bucket's headroom, so a tenant near its limit is counted request by request, exactly.
 */
function leaseUnits(limiter: MemoryLimiter, c: QuotaCharge, workers: number): number {
  if (typeof c.window === 'string' || c.amount <= 0) return 0;
  const burst = c.burst ?? c.limit;
  const headroom = burst - limiter.usageSync(c.key, c.window);
  const units = Math.floor(
    Math.min(
      LEASE_MAX_REQUESTS * c.amount,
      (c.limit * LEASE_LIMIT_SHARE) / Math.max(1, workers),
      headroom * LEASE_HEADROOM_SHARE,
    ),
  );
  return units >= c.amount ? units : 0;
}

/** A lease on each charge where the rule allows one (its receipt), else null. */
function grant(
  limiter: MemoryLimiter,
  charges: readonly QuotaCharge[],
  workers: number,
): (QuotaReceipt | null)[] {
  return charges.map((c) => {
    const units = leaseUnits(limiter, c, workers);
    if (units === 0) return null;
    const lease = limiter.reserveSync([extend(c, { amount: units })]);
    return lease.allowed ? lease.receipts[0]! : null;
  });
}

/** The primary's side: runs a batch of operations, in order, on the one in-process limiter. */
export function runLimiterOps(limiter: MemoryLimiter, ops: readonly LimiterOp[]): unknown[] {
  return ops.map((o) => {
    switch (o.op) {
      case 'reserve': {
        const d = limiter.reserveSync(o.charges);
        if (!d.allowed || o.leaseFor === undefined) return d;
        const leases = grant(limiter, o.charges, o.leaseFor);
        return leases.every((l) => l === null) ? d : extend(d, { leases });
      }
      case 'lease':
        return grant(limiter, o.charges, o.leaseFor);
      case 'settle':
        limiter.settleSync(o.receipt, o.actual);
        return null;
      case 'usage':
        return limiter.usageSync(o.key, o.window);
    }
  });
}

interface Waiting {
  readonly op: LimiterOp;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

/** Units of a rate charge this worker took from the primary and may admit on its own. */
interface Credit {
  units: number;
  /** A lease's receipt: what a refund of the units left is settled against. */
  receipt: QuotaReceipt;
  /** The last grant's size: below half of it, the next lease is asked for ahead of need. */
  granted: number;
  /** Monotonic ms after which the units left go back (the last grant's time + LEASE_MS). */
  until: number;
}

/**
 * The embedded quota limiter of a worker process (`serve --workers N`, #17): every operation is
 * decided by the one `MemoryLimiter` the primary process holds, so N workers never admit more
 * than one process would. Operations started in one turn of the event loop go out as one message
 * (one IPC round trip for a burst of requests). A worker whose primary is gone refuses (it is
 * about to exit with it): it never counts on its own.
 *
 * Leases: a tenant far from its limit gets a lease on each rate charge (at most 256 requests'
 * worth, 1% of the limit across the workers, a quarter of the bucket's headroom): units taken
 * from the bucket in the primary, which this worker then admits on its own without a round trip.
 * The next lease is asked for when half is used, and a request that finds the credit spent while
 * a lease is on its way waits for it rather than asking alone. Units not used `LEASE_MS` (100 ms)
 * after the last grant go back (a settle). Every unit admitted was taken in the primary first,
 * so no more is ever admitted than the limit allows; near the limit there is no lease and each
 * request is counted by the primary, exactly (bench:workers measures the IPC this saves).
 */
export class PeerLimiter implements QuotaLimiter {
  private batch: Waiting[] = [];
  private readonly credits = new Map<string, Credit>();
  /** Lease requests in flight, by key: one at a time per key. */
  private readonly leasing = new Map<string, Promise<void>>();
  private sweeper: NodeJS.Timeout | undefined;
  /** Closed: leases that land now are given back at once. */
  private closed = false;

  constructor(
    private readonly peer: ClusterPeer,
    private readonly clock: Clock = systemClock,
  ) {}

  async reserve(charges: readonly QuotaCharge[]): Promise<QuotaDecision> {
    const local = this.fromCredit(charges);
    if (local !== undefined) return local;
    // The next lease on its way for a key this worker holds leases on: wait for it rather than
    // ask alone. (A first lease is not waited for: the requests of its turn go in its message.)
    const coming = charges
      .map((c) => (this.credits.has(c.key) ? this.leasing.get(c.key) : undefined))
      .filter((p) => p !== undefined);
    if (coming.length > 0) {
      await Promise.all(coming);
      const now = this.fromCredit(charges);
      if (now !== undefined) return now;
    }
    const ask = charges.filter((c) => typeof c.window !== 'string' && !this.leasing.has(c.key));
    const op: LimiterOp =
      ask.length === 0
        ? { op: 'reserve', charges }
        : { op: 'reserve', charges, leaseFor: this.peer.workers };
    const reply = this.enqueue(op);
    const landed = reply.then(
      (d) => {
        const leases = (d as LeasedDecision).leases;
        if (leases !== undefined) this.keep(leases);
      },
      () => undefined,
    );
    this.track(ask, landed);
    return reply.then(
      (d) => {
        const decision = d as LeasedDecision;
        return decision.leases === undefined
          ? decision
          : {
              allowed: decision.allowed,
              retryAfterMs: decision.retryAfterMs,
              receipts: decision.receipts,
              shared: decision.shared,
            };
      },
      (): QuotaDecision => ({
        allowed: false,
        refused: charges[0]?.key ?? '',
        retryAfterMs: 1_000,
        receipts: [],
        shared: true,
      }),
    );
  }

  async settle(receipt: QuotaReceipt, actual: number): Promise<void> {
    if (actual === receipt.amount) return;
    await this.enqueue({ op: 'settle', receipt, actual }).catch(() => undefined);
  }

  usage(key: string, window: QuotaWindow): Promise<number> {
    return this.enqueue({ op: 'usage', key, window }).then(
      (n) => n as number,
      () => 0,
    );
  }

  /** Gives back what is left of every lease, those still on their way included. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.leasing.values());
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.sweeper = undefined;
    await this.giveBack(Infinity);
  }

  /** A decision from this worker's leases, when every charge is covered by one; else undefined. */
  private fromCredit(charges: readonly QuotaCharge[]): QuotaDecision | undefined {
    if (this.credits.size === 0) return undefined;
    const now = this.clock.now();
    for (const c of charges) {
      const credit = this.credits.get(c.key);
      if (
        credit === undefined ||
        credit.units < c.amount ||
        now >= credit.until ||
        typeof c.window === 'string' ||
        typeof credit.receipt.window === 'string' ||
        credit.receipt.window.ms !== c.window.ms ||
        credit.receipt.limit !== c.limit
      )
        return undefined;
    }
    const receipts: QuotaReceipt[] = [];
    const low: QuotaCharge[] = [];
    for (const c of charges) {
      const credit = this.credits.get(c.key)!;
      credit.units -= c.amount;
      if (credit.units < credit.granted / 2 && !this.leasing.has(c.key)) low.push(c);
      // The receipt the primary would have made: a settle goes there, as for any reserve.
      receipts.push({
        key: c.key,
        window: c.window,
        bucket: 0,
        limit: c.limit,
        amount: c.amount,
        shared: true,
      });
    }
    if (low.length > 0) this.refill(low);
    return { allowed: true, retryAfterMs: 0, receipts, shared: true };
  }

  /** Asks for the next lease on these charges ahead of need. */
  private refill(charges: readonly QuotaCharge[]): void {
    const landed = this.enqueue({ op: 'lease', charges, leaseFor: this.peer.workers }).then(
      (leases) => this.keep(leases as (QuotaReceipt | null)[]),
      () => undefined,
    );
    this.track(charges, landed);
  }

  /** Marks a lease request in flight for each of these keys until it lands. */
  private track(charges: readonly QuotaCharge[], landed: Promise<void>): void {
    if (charges.length === 0) return;
    const done = landed.finally(() => {
      for (const c of charges) if (this.leasing.get(c.key) === done) this.leasing.delete(c.key);
    });
    for (const c of charges) this.leasing.set(c.key, done);
  }

  /**
   * Adds granted leases to the credit: a key's live units add up and its time restarts; units
   * whose time is over go back first, so none is admitted later than LEASE_MS after its grant's
   * last renewal.
   */
  private keep(leases: readonly (QuotaReceipt | null)[]): void {
    const now = this.clock.now();
    const until = this.closed ? -Infinity : now + LEASE_MS;
    for (const receipt of leases) {
      if (receipt === null) continue;
      const credit = this.credits.get(receipt.key);
      if (
        credit !== undefined &&
        now < credit.until &&
        typeof credit.receipt.window !== 'string' &&
        typeof receipt.window !== 'string' &&
        credit.receipt.window.ms === receipt.window.ms &&
        credit.receipt.limit === receipt.limit
      ) {
        credit.units += receipt.amount;
        credit.granted = receipt.amount;
        credit.until = until;
        continue;
      }
      if (credit !== undefined) void this.refund(credit);
      this.credits.set(receipt.key, {
        units: receipt.amount,
        receipt,
        granted: receipt.amount,
        until,
      });
    }
    this.sweeper ??= setInterval(() => void this.giveBack(this.clock.now()), LEASE_MS / 2);
    this.sweeper.unref();
  }

  /** Gives back the units left of the leases that ended by `now`. */
  private async giveBack(now: number): Promise<void> {
    const ended: Credit[] = [];
    for (const [key, credit] of this.credits)
      if (now >= credit.until) {
        this.credits.delete(key);
        ended.push(credit);
      }
    if (this.credits.size === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
    await Promise.all(ended.map((c) => this.refund(c)));
  }

  private refund(credit: Credit): Promise<void> {
    const left = credit.units;
    credit.units = 0;
    if (left <= 0) return Promise.resolve();
    // A refund of what is left: settled as a receipt of that many units that used none.
    return this.settle(extend(credit.receipt, { amount: left }), 0);
  }

  private enqueue(op: LimiterOp): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (this.batch.length === 0) setImmediate(() => this.flush());
      this.batch.push({ op, resolve, reject });
    });
  }

  private flush(): void {
    const batch = this.batch;
    this.batch = [];
    this.peer
      .request(
        LIMITER_TOPIC,
        batch.map((w) => w.op),
      )
      .then(
        (results) => {
          const list = results as unknown[];
          batch.forEach((w, i) => w.resolve(list[i]));
        },
        (err: unknown) => {
          const e = err instanceof Error ? err : new Error(String(err));
          for (const w of batch) w.reject(e);
        },
      );
  }
}
