import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { openRedis, redisReady } from '../state/redis.js';
import type {
  QuotaCharge,
  QuotaDecision,
  QuotaLimiter,
  QuotaReceipt,
  QuotaWindow,
} from '../contracts/limiter.js';
import type { Logger } from '../contracts/logger.js';
import type { Clock } from '../core/clock.js';
import { events, publish } from '../core/events.js';
import { MemoryLimiter } from './memory-limiter.js';
import {
  counterId,
  perUnit,
  QuotaLedger,
  type Counter,
  type WriteBackPart,
} from './quota-ledger.js';
import { settleTtl, spanOf, windowName } from './quota-window.js';
import { defineQuotaCommands, type QuotaCommands, type Reply } from './redis-quota-scripts.js';

export interface RedisLimiterOptions {
  readonly url: string;
  /** Prefix of every key (separate per deployment, or per test run). */
  readonly prefix: string;
  /** A command slower than this counts as an outage (TOOLCHAIN.md: the ioredis trap). */
  readonly commandTimeoutMs: number;
  /** How often to probe Redis while counting locally. */
  readonly probeMs: number;
  /** Share of each limit this replica enforces on its own while Redis is away. */
  readonly localShare: number;
  readonly clock: Clock;
  readonly logger: Logger;
}

export interface LimiterStatus {
  /** Whether decisions are taken in Redis now. */
  readonly shared: boolean;
  /** Outages whose local usage is not yet written back to Redis (0 once caught up). */
  readonly pendingWriteBacks: number;
}

/** A command's mark: a bit in a block of 65,536 per replica (see redis-quota-scripts.ts). */
const MARK_BITS = 65_536;
/**
 * How long marks and write-back claims are kept. A command that reached Redis longer than this
 * before its replica's write-back ran could be counted twice (Redis would have to be reachable
 * for the late command and then unreachable to this replica for an hour).
 */
const MARK_TTL_MS = 3_600_000;
/** Counters per write-back script call, so one call never holds Redis for long. */
const CHUNK = 256;
const SWEEP_EVERY = 4_096;

/** The last value Redis answered for a counter: where local counting starts in an outage. */
interface Known {
  counter: Counter;
  value: number;
  expiresAt: number;
}

/** One outage's local usage on its way back to Redis; survives failed attempts unchanged. */
interface WriteBack {
  readonly ledger: QuotaLedger;
  readonly at: number;
  readonly claimSeq: number;
  ran?: boolean[];
  chunks?: { readonly seq: number; readonly parts: readonly WriteBackPart[]; done: boolean }[];
  dropped?: number;
  /** Counters whose chunk is in Redis already (a retry after a failure skips them). */
  readonly written: Set<string>;
}

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * Quota counters shared across replicas in Redis, with a local fallback (issues #5, #13).
 *
 * ioredis is configured so that no command ever waits for Redis: no offline queue, no retries, a
 * short command timeout. The first failure switches to the in-process limiter at once, with
 * `localShare` of each limit. Local counting starts from the last state Redis answered for each
 * counter (a calendar counter at `localShare` of its last count, so the replica may take its
 * share of what was left; a rate at its last arrival time, which leaves the scaled bucket as full
 * as the shared one): a switch grants no fresh budget and no fresh burst.
 *
 * A probe every `probeMs` notices Redis's return; the usage counted locally is then written back
 * before counting is shared again. Calendar usage goes to the bucket it was counted in. For a
 * rate, what the outage added to the local bucket beyond its seed and still holds is added to
 * the shared bucket: usage that has drained would have drained from the shared bucket too, and
 * what the local bucket holds beyond the shared state it started from is what the shared bucket
 * would hold more (quota-ledger.ts says when this is exact).
 *
 * Every command that changes a counter is marked with this replica's id and a sequence number
 * (redis-quota-scripts.ts). A command that timed out is decided locally and remembered; the
 * write-back sets its mark (a late arrival then does nothing) or finds it set (it ran: what it
 * took in Redis is taken back). So a timed-out reservation is counted once, and so are its
 * settles. Each replica writes back only its own usage, once: every write-back step is marked too.
 *
 * Every switch and write-back logs a warning and publishes an event (metrics count them).
 */
export class RedisLimiter implements QuotaLimiter {
  private readonly redis: Redis & QuotaCommands;
  private readonly local: MemoryLimiter;
  private readonly replica = randomBytes(6).toString('hex');
  private seq = 0;
  private local_ = false;
  private outages = 1;
  private ledger: QuotaLedger;
  private readonly writeBacks: WriteBack[] = [];
  private writing: Promise<boolean> = Promise.resolve(true);
  private readonly known = new Map<string, Known>();
  private remembered = 0;
  private probing: NodeJS.Timeout | undefined;
  private probeBusy = false;
  private closed = false;

  constructor(private readonly opts: RedisLimiterOptions) {
    this.local = new MemoryLimiter(opts.clock, opts.localShare, false);
    this.ledger = new QuotaLedger(1, opts.localShare);
    const redis = openRedis({
      url: opts.url,
      commandTimeoutMs: opts.commandTimeoutMs,
      reconnectMaxMs: opts.probeMs,
      name: 'quota limiter',
      logger: opts.logger,
    });
    defineQuotaCommands(redis);
    redis.on('close', () => this.fallBack('connection closed'));
    // The gauge says "shared" from the first connection, not only after an outage (#13).
    redis.on('ready', () => {
      if (!this.local_ && !this.closed)
        publish(events.limiterState, { state: 'shared', reason: 'connected' });
    });
    this.redis = redis as Redis & QuotaCommands;
  }

  /** Resolves once connected, or after `timeoutMs` (requests are counted locally until then). */
  ready(timeoutMs: number): Promise<boolean> {
    return redisReady(this.redis, timeoutMs);
  }

  /** Whether decisions are taken locally now (Redis is away). */
  isLocal(): boolean {
    return this.local_ || this.redis.status !== 'ready';
  }

  status(): LimiterStatus {
    return {
      shared: !this.isLocal(),
      pendingWriteBacks: this.writeBacks.length + (this.ledger.empty ? 0 : 1),
    };
  }

  async reserve(charges: readonly QuotaCharge[]): Promise<QuotaDecision> {
    const now = this.opts.clock.wall();
    if (this.isLocal()) return this.decideLocally(charges, now);
    const seq = this.seq++;
    const mark = this.mark(seq);
    const counters = charges.map((c) => counterOf(c, now));
    const keys = counters.map((c) => this.key(c));
    const argv: (string | number)[] = [charges.length, now, mark.bit, MARK_TTL_MS];
    for (const c of charges) {
      if (typeof c.window === 'string')
        argv.push(0, c.limit, c.amount, 0, 0, Math.ceil(spanOf(c.window, now).ttlMs));
      else argv.push(1, c.limit, c.amount, perUnit(c.window, c.limit), c.burst ?? c.limit, 0);
    }
    let reply: Reply;
    try {
      reply = await this.redis.syReserve(keys.length + 1, ...keys, mark.key, ...argv);
    } catch (err) {
      // It may still reach Redis late: decided locally, and remembered for the write-back.
      this.fallBack(message(err));
      return this.decideLocally(charges, now, seq);
    }
    const refusedAt = Number(reply[0]);
    // A set mark: this command's usage was written back already. It cannot happen for a command
    // that is still awaited, but if it did, counting it locally once is right.
    if (refusedAt < 0) return this.decideLocally(charges, now);
    if (refusedAt === 0) {
      counters.forEach((c, i) => this.remember(c, Number(reply[i + 1])));
      return {
        allowed: true,
        retryAfterMs: 0,
        shared: true,
        receipts: charges.map((c, i) => ({
          key: c.key,
          window: c.window,
          bucket: counters[i]!.bucket,
          limit: c.limit,
          amount: c.amount,
          shared: true,
        })),
      };
    }
    const c = charges[refusedAt - 1]!;
    this.remember(counters[refusedAt - 1]!, Number(reply[2]));
    const wait = Number(reply[1] ?? 0);
    let retryAfterMs: number;
    if (typeof c.window === 'string') {
      const span = spanOf(c.window, now);
      retryAfterMs =
        c.amount > c.limit ? span.end - now + (span.end - span.bucket) : span.end - now;
    } else retryAfterMs = wait < 0 ? c.window.ms : wait;
    return {
      allowed: false,
      refused: c.key,
      retryAfterMs: Math.max(1, Math.ceil(retryAfterMs)),
      receipts: [],
      shared: true,
    };
  }

  async settle(receipt: QuotaReceipt, actual: number): Promise<void> {
    const delta = actual - receipt.amount;
    if (delta === 0) return;
    const now = this.opts.clock.wall();
    if (!receipt.shared && receipt.outage === this.ledger.outage) {
      // Counted locally in this outage, not written back yet: the write-back carries the change.
      this.countLocally(receipt, actual, now);
      return;
    }
    // A shared charge, or a local one already written back: the shared counter takes the change.
    if (this.isLocal()) {
      this.countLocally(receipt, actual, now);
      return;
    }
    if (typeof receipt.window === 'string' && settleTtl(receipt, now) <= 0) return;
    const seq = this.seq++;
    const mark = this.mark(seq);
    const key = this.key(receipt);
    try {
      const v =
        typeof receipt.window === 'string'
          ? await this.redis.sySettleCount(
              key,
              mark.key,
              delta,
              settleTtl(receipt, now),
              mark.bit,
              MARK_TTL_MS,
            )
          : await this.redis.sySettleRate(
              key,
              mark.key,
              now,
              delta,
              perUnit(receipt.window, receipt.limit),
              mark.bit,
              MARK_TTL_MS,
            );
      if (v !== null) this.remember(receipt, Number(v));
    } catch (err) {
      this.fallBack(message(err));
      this.countLocally(receipt, actual, now);
      this.ledger.addUncertain(seq, [{ counter: receipt, shared: delta }]);
    }
  }

  async usage(key: string, window: QuotaWindow): Promise<number> {
    if (this.isLocal()) return this.local.usage(key, window);
    const now = this.opts.clock.wall();
    const counter = counterOf({ key, window, limit: 1 }, now);
    let v: string | null;
    try {
      v = await this.redis.get(this.key(counter));
    } catch (err) {
      this.fallBack(message(err));
      return this.local.usage(key, window);
    }
    if (typeof window === 'string') return Math.max(0, Number(v ?? 0));
    if (v === null) return 0;
    const [tat, per] = v.split(':').map(Number);
    return Math.max(0, (tat ?? now) - now) / (per ?? 1);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.probing !== undefined) clearInterval(this.probing);
    await this.writing; // a write-back under way finishes (each command is bounded)
    this.redis.disconnect();
    await this.local.close();
  }

  /** A calendar bucket's key names its window: a month and its first day start alike. */
  private key(c: Counter): string {
    const p = this.opts.prefix;
    return typeof c.window === 'string'
      ? `${p}${c.key}:${windowName(c.window)}:${c.bucket}`
      : `${p}${c.key}:r`;
  }

  private mark(seq: number): { key: string; bit: number } {
    const block = Math.floor(seq / MARK_BITS);
    return { key: `${this.opts.prefix}op:${this.replica}:${block}`, bit: seq % MARK_BITS };
  }

  /** Decides locally; `uncertainSeq` names a command that timed out (it may yet reach Redis). */
  private decideLocally(
    charges: readonly QuotaCharge[],
    now: number,
    uncertainSeq?: number,
  ): QuotaDecision {
    this.fallBack('not connected');
    publish(events.limiterLocal, { decisions: 1 });
    const bases = charges.map((c) => this.baseOf(c));
    const d = this.local.reserveSync(charges, now);
    if (uncertainSeq !== undefined)
      this.ledger.addUncertain(
        uncertainSeq,
        charges.map((c, i) => ({ counter: counterOf(c, now), shared: c.amount, base: bases[i]! })),
      );
    if (!d.allowed) return d;
    const outage = this.ledger.outage;
    const receipts = d.receipts.map((r, i) => {
      this.ledger.add(r, r.amount, now, bases[i]);
      return { ...r, outage };
    });
    return { ...d, receipts };
  }

  private countLocally(receipt: QuotaReceipt, actual: number, now: number): void {
    const base = this.baseOf(receipt);
    this.local.settleSync(receipt, actual);
    this.ledger.add(receipt, actual - receipt.amount, now, base);
  }

  /** For a rate: the local bucket's arrival time now (where this outage's usage of it starts). */
  private baseOf(c: { readonly key: string; readonly window: QuotaWindow }): number {
    return typeof c.window === 'string' ? 0 : this.local.rateTat(c.key);
  }

  /** Keeps what Redis answered for a counter; while local, the local counter follows it. */
  private remember(counter: Counter, value: number): void {
    if (!Number.isFinite(value)) return;
    const now = this.opts.clock.wall();
    const expiresAt =
      typeof counter.window === 'string'
        ? now + settleTtl(counter, now)
        : Math.max(value, now) + 1_000;
    const id = counterId(counter);
    let k = this.known.get(id);
    if (k === undefined) {
      k = { counter, value, expiresAt };
      this.known.set(id, k);
    } else {
      k.counter = counter;
      k.value = value;
      k.expiresAt = expiresAt;
    }
    if (this.local_) this.seed(id, k, now);
    if (++this.remembered % SWEEP_EVERY === 0)
      for (const [i, e] of this.known) if (e.expiresAt <= now) this.known.delete(i);
  }

  /** Starts a local counter from its last shared state (and what this replica has not written back). */
  private seed(id: string, k: Known, now: number): void {
    const c = k.counter;
    if (typeof c.window !== 'string') {
      this.local.seedRate(c.key, c.window, c.limit, k.value);
      return;
    }
    if (spanOf(c.window, now).bucket !== c.bucket) return;
    let unwritten = this.ledger.count(id);
    for (const wb of this.writeBacks) if (!wb.written.has(id)) unwritten += wb.ledger.count(id);
    const value = Math.ceil(k.value * this.opts.localShare) + unwritten;
    this.local.seedCount(c.key, c.window, c.bucket, value, k.expiresAt);
  }

  /** Switches to local counting (once per outage) and starts probing for Redis's return. */
  private fallBack(why: string): void {
    if (this.local_ || this.closed) return;
    this.local_ = true;
    this.opts.logger.warn(
      { limiter: 'redis', reason: why },
      'quota limiter: Redis unreachable, counting locally',
    );
    publish(events.limiterState, { state: 'local', reason: why });
    const now = this.opts.clock.wall();
    for (const [id, k] of this.known) {
      if (k.expiresAt <= now) this.known.delete(id);
      else this.seed(id, k, now);
    }
    this.probing = setInterval(() => void this.probe(), this.opts.probeMs);
    this.probing.unref();
  }

  private async probe(): Promise<void> {
    if (this.redis.status !== 'ready' || this.probeBusy) return;
    this.probeBusy = true;
    try {
      await this.redis.ping();
      if (!this.local_ || this.closed) return;
      // What was counted locally goes back first, so shared counting resumes from the true count.
      this.rollLedger();
      if (!(await this.writeBack())) return; // away again: the next probe retries
      if (!this.local_ || this.closed) return;
      this.local_ = false;
      if (this.probing !== undefined) clearInterval(this.probing);
      this.probing = undefined;
      this.opts.logger.warn({ limiter: 'redis' }, 'quota limiter: Redis is back, counting shared');
      publish(events.limiterState, { state: 'shared', reason: 'redis answered' });
      this.rollLedger(); // what was counted while the write-back ran
      void this.writeBack();
    } catch {
      // Still away.
    } finally {
      this.probeBusy = false;
    }
  }

  /** Closes the current outage's ledger (it joins the write-back queue) and opens the next. */
  private rollLedger(): void {
    if (!this.ledger.empty || this.ledger.uncertain().length > 0)
      this.writeBacks.push({
        ledger: this.ledger,
        at: this.opts.clock.wall(),
        claimSeq: this.seq++,
        written: new Set(),
      });
    this.ledger = new QuotaLedger(++this.outages, this.opts.localShare);
  }

  /** Writes back every queued outage, in order; false (and local counting) if Redis fails. */
  private writeBack(): Promise<boolean> {
    this.writing = this.writing.then(async () => {
      while (this.writeBacks.length > 0) {
        if (this.closed) return false;
        try {
          await this.writeOne(this.writeBacks[0]!);
        } catch (err) {
          this.opts.logger.warn(
            { limiter: 'redis', err: message(err) },
            'quota limiter: write-back of local usage failed; kept for the next try',
          );
          publish(events.limiterWriteBack, {
            result: 'failed',
            counters: 0,
            ranLate: 0,
            neverRan: 0,
          });
          this.fallBack(message(err));
          return false;
        }
        this.writeBacks.shift();
      }
      return true;
    });
    return this.writing;
  }

  /** Claims the timed-out commands' marks, then adds the usage chunk by chunk (each step idempotent). */
  private async writeOne(wb: WriteBack): Promise<void> {
    const ops = wb.ledger.uncertain();
    if (wb.ran === undefined) {
      if (ops.length === 0) wb.ran = [];
      else {
        const blocks: string[] = [];
        const argv: (string | number)[] = [MARK_TTL_MS];
        for (const op of ops) {
          const m = this.mark(op.seq);
          let i = blocks.indexOf(m.key);
          if (i < 0) i = blocks.push(m.key) - 1;
          argv.push(i + 2, m.bit);
        }
        const claim = `${this.opts.prefix}wb:${this.replica}:${wb.claimSeq}`;
        const ran = await this.redis.syClaim(blocks.length + 1, claim, ...blocks, ...argv);
        wb.ran = ops.map((_, i) => ran[i] === '1');
      }
    }
    if (wb.chunks === undefined) {
      const { parts, dropped } = wb.ledger.parts(wb.ran, wb.at);
      wb.dropped = dropped;
      wb.chunks = [];
      for (let i = 0; i < parts.length; i += CHUNK)
        wb.chunks.push({ seq: this.seq++, parts: parts.slice(i, i + CHUNK), done: false });
    }
    for (const ch of wb.chunks) {
      if (ch.done) continue;
      const mark = this.mark(ch.seq);
      const argv: (string | number)[] = [ch.parts.length, wb.at, mark.bit, MARK_TTL_MS];
      for (const p of ch.parts) {
        const w = p.counter.window;
        if (typeof w === 'string')
          argv.push(0, p.units, 0, Math.max(1, settleTtl(p.counter, wb.at)));
        else argv.push(1, p.units, perUnit(w, p.counter.limit), 0);
      }
      const keys = ch.parts.map((p) => this.key(p.counter));
      const reply = await this.redis.syApply(keys.length + 1, ...keys, mark.key, ...argv);
      ch.done = true;
      for (const p of ch.parts) wb.written.add(counterId(p.counter));
      if (Number(reply[0]) === 0)
        ch.parts.forEach((p, i) => this.remember(p.counter, Number(reply[i + 1])));
    }
    const ranLate = wb.ran.filter(Boolean).length;
    const counters = wb.chunks.reduce((n, ch) => n + ch.parts.length, 0);
    this.opts.logger.warn(
      {
        limiter: 'redis',
        outage: wb.ledger.outage,
        counters,
        dropped: wb.dropped ?? 0,
        timed_out: ops.length,
        ran_late: ranLate,
      },
      'quota limiter: wrote back usage counted locally while Redis was away',
    );
    publish(events.limiterWriteBack, {
      result: 'written',
      counters,
      ranLate,
      neverRan: ops.length - ranLate,
    });
  }
}

/** The counter a charge goes to at `now`. */
function counterOf(
  c: { readonly key: string; readonly window: QuotaWindow; readonly limit: number },
  now: number,
): Counter {
  return {
    key: c.key,
    window: c.window,
    bucket: typeof c.window === 'string' ? spanOf(c.window, now).bucket : 0,
    limit: c.limit,
  };
}
