import type { Clock } from '../core/clock.js';
import { abortReason } from '../core/deadline.js';
import { syError, type SwitchyardError } from '../core/errors.js';
import { events, publish } from '../core/events.js';
import type { ConcurrencySpec } from './settings.js';
import { createLimit, type ConcurrencyLimit } from './vegas-limit.js';

export interface GateRequest {
  readonly trafficClass: string;
  /** Lower is served first. */
  readonly priority: number;
  /** Monotonic ms; a request still waiting then is dropped without being started. */
  readonly deadlineAt: number;
  /** The request's whole budget, ms (for the error message). */
  readonly budgetMs: number;
  /** Longest wait in the queue before the request is shed. */
  readonly maxWaitMs: number;
  readonly signal: AbortSignal;
}

/** How a permit's call went. */
export interface PermitOutcome {
  readonly ok: boolean;
  /** The upstream timed out or was overloaded (the limit backs off). */
  readonly dropped?: boolean;
  /** The call's latency as the limit should learn it; default: the time the permit was held. */
  readonly rttMs?: number;
  /**
   * False for a stream: its slot is held for the whole generation, and its time to first event
   * is no clean latency signal (a burst of stream starts queues on the gateway's own loop before
   * any byte is sent). The limit then learns from drops and demand only.
   */
  readonly latency?: boolean;
}

/** The right to run one request; give it back exactly once. */
export interface Permit {
  release(outcome: PermitOutcome): void;
}

interface Waiter {
  readonly req: GateRequest;
  readonly enqueuedAt: number;
  readonly resolve: (p: Permit) => void;
  readonly reject: (e: SwitchyardError) => void;
  timer: NodeJS.Timeout | undefined;
  onAbort: (() => void) | undefined;
  done: boolean;
}

/** Why a request was refused or dropped by the gate. */
export type GateRefusal =
  'queue_full' | 'wait_too_long' | 'evicted' | 'queue_timeout' | 'deadline' | 'cancelled';

export interface GateObserver {
  refused(req: GateRequest, why: GateRefusal): void;
  queued(req: GateRequest): void;
}

const EWMA = 0.1;
/** Calls a sample needs before its shed rate means anything (one of one shed is not overload). */
const MIN_SHED_SAMPLE = 10;

/**
 * A concurrency limit for one model with a bounded priority queue in front of it. A free slot
 * goes to the most critical class waiting, oldest first; a request whose deadline has passed is
 * dropped before it starts. When the queue is full, a new request evicts the newest waiter of a
 * less critical class, or is refused at once: refusing costs a comparison and an exception, no
 * timer, no upstream call.
 */
export class ConcurrencyGate {
  private readonly limit: ConcurrencyLimit;
  private inFlight = 0;
  private queued = 0;
  /** Waiters by priority level, FIFO per level; finished waiters are skipped lazily. */
  private readonly levels = new Map<number, Waiter[]>();
  private sortedLevels: number[] = [];
  private queueDelayMs = 0;
  private lastLimit = -1;
  /** Counters for the mode controller's signals, reset by `takeSample`. */
  private peakInFlight = 0;
  private released = 0;
  private failed = 0;
  private delaysSeen = 0;
  /** Calls started and calls shed since the last sample (the shed rate signal). */
  private startedCount = 0;
  private shedCount = 0;
  /** Waiters per priority level (the finished ones excluded). */
  private readonly waiting = new Map<number, number>();
  /** Typical time a permit is held, ms (0 until the first release). */
  private rttMs = 0;

  constructor(
    readonly name: string,
    private spec: ConcurrencySpec,
    private readonly clock: Clock,
    private readonly observer: GateObserver,
    private retryAfterS = 1,
  ) {
    this.limit = createLimit(spec, clock.now());
    this.publishLimit();
  }

  configure(spec: ConcurrencySpec, retryAfterS: number): void {
    this.spec = spec;
    this.retryAfterS = retryAfterS;
  }

  /** 0 with a slot free; 1 when the queue is full or waits reach the target delay. */
  pressure(): number {
    // A free slot and nobody waiting: no pressure, whatever the recent waits were.
    if (this.queued === 0 && this.inFlight < this.limit.current()) return 0;
    const depth = this.queued / this.spec.max_queue;
    const delay = this.queueDelayMs / this.spec.target_queue_delay_ms;
    return Math.max(depth, delay);
  }

  stats(): { limit: number; inFlight: number; queued: number; queueDelayMs: number } {
    return {
      limit: this.limit.current(),
      inFlight: this.inFlight,
      queued: this.queued,
      queueDelayMs: this.queueDelayMs,
    };
  }

  /** A call refused before it reached the gate's queue (the shed curve): counts as shed. */
  noteShed(): void {
    this.shedCount++;
  }

  /**
   * Signals since the last sample: peak saturation (in flight / limit), the failure share, and
   * the share of calls shed (`shedRate`, 0 until at least `MIN_SHED_SAMPLE` calls came).
   */
  takeSample(): { saturation: number; errorRate: number; queueDelayMs: number; shedRate: number } {
    const limit = this.limit.current();
    const saturation = Math.max(this.peakInFlight, this.inFlight + this.queued) / limit;
    const errorRate = this.released === 0 ? 0 : this.failed / this.released;
    const calls = this.startedCount + this.shedCount;
    const shedRate = calls < MIN_SHED_SAMPLE ? 0 : this.shedCount / calls;
    this.startedCount = 0;
    this.shedCount = 0;
    this.peakInFlight = this.inFlight;
    this.released = 0;
    this.failed = 0;
    // With no wait seen since the last sample, an idle gate's delay signal decays to zero.
    if (this.delaysSeen === 0 && this.queued === 0) this.queueDelayMs *= 0.5;
    this.delaysSeen = 0;
    return { saturation, errorRate, queueDelayMs: this.queueDelayMs, shedRate };
  }

  /** A permit at once when a slot is free and nobody more critical waits; otherwise a wait. */
  /** A permit now when a slot is free and nobody waits; otherwise undefined (call `acquire`). */
  tryAcquire(req: Pick<GateRequest, 'signal'>): Permit | undefined {
    if (req.signal.aborted || this.inFlight >= this.limit.current() || this.queued !== 0)
      return undefined;
    this.noteDelay(0);
    return this.start();
  }

  acquire(req: GateRequest): Promise<Permit> {
    if (req.signal.aborted) return Promise.reject(abortReason(req.signal));
    if (this.inFlight < this.limit.current() && this.queued === 0) {
      this.noteDelay(0);
      return Promise.resolve(this.start());
    }
    // Refuse at once what would only time out in the queue: the waiters as critical or more,
    // drained at limit / rtt, would take longer than this request may wait.
    const ahead = this.waitingUpTo(req.priority);
    const mayWait = Math.min(req.maxWaitMs, req.deadlineAt - this.clock.now());
    if (this.rttMs > 0 && ((ahead + 1) * this.rttMs) / this.limit.current() > mayWait) {
      this.observer.refused(req, 'wait_too_long');
      this.shedCount++;
      return Promise.reject(this.shed(`${this.name} would not start it in time`));
    }
    if (this.queued >= this.spec.max_queue && !this.evictFor(req.priority)) {
      this.observer.refused(req, 'queue_full');
      this.shedCount++;
      return Promise.reject(this.shed(`the queue of ${this.name} is full`));
    }
    return new Promise<Permit>((resolve, reject) => {
      const w: Waiter = {
        req,
        enqueuedAt: this.clock.now(),
        resolve,
        reject,
        timer: undefined,
        onAbort: undefined,
        done: false,
      };
      const wait = Math.min(req.maxWaitMs, req.deadlineAt - w.enqueuedAt);
      const byDeadline = req.deadlineAt - w.enqueuedAt <= req.maxWaitMs;
      w.timer = setTimeout(
        () => {
          w.timer = undefined;
          if (byDeadline) this.drop(w, 'deadline', deadline(req));
          else
            this.drop(w, 'queue_timeout', this.shed(`waited ${req.maxWaitMs} ms for ${this.name}`));
        },
        Math.max(0, wait),
      );
      w.onAbort = () => {
        const reason = abortReason(req.signal);
        this.drop(w, reason.code === 'SY_ERR_DEADLINE_EXCEEDED' ? 'deadline' : 'cancelled', reason);
      };
      req.signal.addEventListener('abort', w.onAbort, { once: true });
      this.enqueue(w);
      this.observer.queued(req);
      this.shedOvertaken(req.priority);
    });
  }

  /**
   * A request just queued ahead of the waiters of less critical classes. Those that now cannot
   * start within their allowed wait (their position drained at limit / rtt) are shed at once,
   * newest first, instead of timing out later: a rejection costs the client no waiting.
   */
  private shedOvertaken(priority: number): void {
    if (this.rttMs <= 0) return;
    const perSlotMs = this.rttMs / this.limit.current();
    const now = this.clock.now();
    for (let i = this.sortedLevels.length - 1; i >= 0; i--) {
      const p = this.sortedLevels[i]!;
      if (p <= priority) return;
      const level = this.levels.get(p)!;
      let position = this.waitingUpTo(p);
      for (let j = level.length - 1; j >= 0 && position > 0; j--) {
        const w = level[j]!;
        if (w.done) continue;
        const allowed =
          Math.min(w.req.maxWaitMs, w.req.deadlineAt - w.enqueuedAt) - (now - w.enqueuedAt);
        if (position * perSlotMs <= allowed) break;
        this.drop(w, 'wait_too_long', this.shed(`${this.name} would not start it in time`));
        position--;
      }
    }
  }

  private start(): Permit {
    this.inFlight++;
    this.startedCount++;
    if (this.inFlight > this.peakInFlight) this.peakInFlight = this.inFlight;
    const startedAt = this.clock.now();
    let released = false;
    return {
      release: (outcome) => {
        if (released) return;
        released = true;
        this.inFlight--;
        this.released++;
        if (!outcome.ok) this.failed++;
        const now = this.clock.now();
        const held = now - startedAt;
        const latency = outcome.latency !== false;
        // How long a slot is held, for the queue's wait estimate; a stream holds it throughout.
        const rtt = latency ? (outcome.rttMs ?? held) : held;
        this.rttMs = this.rttMs === 0 ? rtt : this.rttMs + EWMA * (rtt - this.rttMs);
        this.limit.onSample(
          latency ? rtt : undefined,
          this.inFlight + 1,
          outcome.dropped === true,
          now,
          this.queued,
        );
        this.publishLimit();
        this.drain();
      },
    };
  }

  /** Starts waiters while slots are free: most critical first, expired ones dropped unstarted. */
  private drain(): void {
    while (this.queued > 0 && this.inFlight < this.limit.current()) {
      const w = this.dequeue();
      if (w === undefined) return;
      const now = this.clock.now();
      if (now >= w.req.deadlineAt) {
        this.finish(w);
        this.observer.refused(w.req, 'deadline');
        w.reject(deadline(w.req));
        continue;
      }
      this.finish(w);
      this.noteDelay(now - w.enqueuedAt);
      w.resolve(this.start());
    }
  }

  private enqueue(w: Waiter): void {
    let level = this.levels.get(w.req.priority);
    if (level === undefined) {
      level = [];
      this.levels.set(w.req.priority, level);
      this.sortedLevels = [...this.levels.keys()].sort((a, b) => a - b);
    }
    level.push(w);
    this.queued++;
    this.waiting.set(w.req.priority, (this.waiting.get(w.req.priority) ?? 0) + 1);
  }

  private dequeue(): Waiter | undefined {
    for (const p of this.sortedLevels) {
      const level = this.levels.get(p)!;
      while (level.length > 0) {
        const w = level.shift()!;
        if (!w.done) return w;
      }
    }
    return undefined;
  }

  /** Makes room for a request of `priority` by shedding the newest waiter of a lower class. */
  private evictFor(priority: number): boolean {
    for (let i = this.sortedLevels.length - 1; i >= 0; i--) {
      const p = this.sortedLevels[i]!;
      if (p <= priority) return false;
      const level = this.levels.get(p)!;
      for (let j = level.length - 1; j >= 0; j--) {
        const w = level[j]!;
        if (w.done) continue;
        this.drop(
          w,
          'evicted',
          this.shed(`a more critical request took its place at ${this.name}`),
        );
        return true;
      }
    }
    return false;
  }

  private drop(w: Waiter, why: GateRefusal, err: SwitchyardError): void {
    if (w.done) return;
    this.finish(w);
    if (why !== 'deadline' && why !== 'cancelled') this.shedCount++;
    if (why === 'queue_timeout' || why === 'evicted')
      this.noteDelay(this.clock.now() - w.enqueuedAt);
    this.observer.refused(w.req, why);
    w.reject(err);
  }

  private finish(w: Waiter): void {
    w.done = true;
    this.queued--;
    this.waiting.set(w.req.priority, (this.waiting.get(w.req.priority) ?? 1) - 1);
    if (w.timer !== undefined) clearTimeout(w.timer);
    if (w.onAbort !== undefined) w.req.signal.removeEventListener('abort', w.onAbort);
  }

  private waitingUpTo(priority: number): number {
    let n = 0;
    for (const [p, count] of this.waiting) if (p <= priority) n += count;
    return n;
  }

  private noteDelay(ms: number): void {
    this.delaysSeen++;
    this.queueDelayMs += EWMA * (ms - this.queueDelayMs);
  }

  private shed(detail: string): SwitchyardError {
    return syError('SY_ERR_SHED', detail, { retryAfterS: this.retryAfterS });
  }

  private publishLimit(): void {
    const limit = this.limit.current();
    if (limit === this.lastLimit) return;
    this.lastLimit = limit;
    publish(events.concurrencyLimit, {
      gate: this.name,
      limit,
      inFlight: this.inFlight,
      queued: this.queued,
    });
  }
}

function deadline(req: GateRequest): SwitchyardError {
  return syError('SY_ERR_DEADLINE_EXCEEDED', String(Math.round(req.budgetMs)));
}
