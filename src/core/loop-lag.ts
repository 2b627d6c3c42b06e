import { performance, type EventLoopUtilization } from 'node:perf_hooks';

/**
 * Loop utilisation from which the gateway, not the upstream, is taken to set the latency: from
 * here an answer waits for the loop about as long as the loop's work per turn, comparable to the
 * queue the concurrency limit looks for. At 0.85 a gateway 70% busy in front of a 20 ms upstream
 * still read its own waiting as the upstream's queue (bench:overhead case e).
 */
export const BUSY_UTILIZATION = 0.6;

/** Ticks without a `wake()` after which the probe sleeps until the next one. */
const IDLE_TICKS = 10;

/**
 * Event-loop lag from timer drift: one unref'd timer every `everyMs`. It says how late the loop
 * runs now (`lagMs`, fast attack and slow decay, so one long stall counts at once and recovery
 * takes a few ticks), how late it has run for a while (`sustainedMs`, CPU overload rather than
 * one GC pause), and how much time it has lost since start (`totalMs`). A callback that sees an
 * answer runs about `lagMs` after the answer arrived, so `rtt - lagMs` is what the other side
 * took (concurrency limits learn the upstream, not the gateway's CPU; see issue #14).
 *
 * The timer runs only while there is work: each admitted call says so with `wake()`, and after
 * `IDLE_TICKS` ticks without one the probe sleeps (lag 0, utilisation 0) until the next. An idle
 * gateway then does not wake its core 100 times a second: on a shared VM each wake of a sleeping
 * core costs ~0.3 ms of CPU, and the cold caches after it slow the next request's start
 * (bench:stream).
 */
export class LoopLag {
  private smoothed = 0;
  private total = 0;
  /** Event-loop utilisation (busy share of wall time), smoothed over the last few ticks. */
  private utilization = 0;
  private lastElu: EventLoopUtilization | undefined;
  /** The last few ticks' drifts (a ring), for lateness that lasts rather than one spike. */
  private readonly recent = new Float64Array(8);
  private next = 0;
  private last = performance.now();
  private timer: NodeJS.Timeout | undefined;
  private users = 0;
  /** A call was admitted since the last tick. */
  private woken = false;
  private idleTicks = 0;

  constructor(private readonly everyMs = 10) {}

  /** Starts sampling (reference-counted); returns the matching stop. */
  acquire(): () => void {
    this.users++;
    this.start();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (--this.users === 0) this.sleep();
    };
  }

  /** Work arrived (an admitted call): sampling resumes if it slept. Cheap; call it per call. */
  wake(): void {
    this.woken = true;
    if (this.timer === undefined && this.users > 0) this.start();
  }

  /** The timer is running (the probe is held and had work within the last few ticks). */
  sampling(): boolean {
    return this.timer !== undefined;
  }

  private start(): void {
    if (this.timer !== undefined) return;
    this.last = performance.now();
    this.lastElu = performance.eventLoopUtilization();
    this.idleTicks = 0;
    this.timer = setInterval(() => this.tick(), this.everyMs);
    this.timer.unref();
  }

  private sleep(): void {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
    this.smoothed = 0;
    this.utilization = 0;
    this.recent.fill(0);
  }

  /** Typical lateness of the loop now, ms. */
  lagMs(): number {
    return this.smoothed;
  }

  /**
   * Lateness that lasts: the smallest drift of the last 8 ticks. One GC pause or one slow
   * callback does not raise it; a loop that is late tick after tick (CPU overload) does.
   */
  sustainedMs(): number {
    if (this.timer === undefined) return 0;
    let min = Infinity;
    for (const d of this.recent) if (d < min) min = d;
    return min;
  }

  /**
   * The gateway's own CPU is the bottleneck: the loop was busy at least `BUSY_UTILIZATION` of
   * the recent ticks' wall time. Latency measured then is mostly the gateway's own queueing (an
   * answer waits for the loop before any callback sees it), so it says little about the other
   * side: the concurrency limits do not back off on it (issue #14).
   */
  busy(): boolean {
    return this.timer !== undefined && this.utilization >= BUSY_UTILIZATION;
  }

  /** Smoothed event-loop utilisation, 0..1 (0 while not sampling). */
  utilizationNow(): number {
    return this.utilization;
  }

  /** Time the loop has lost since sampling began, ms, including the tick in progress. */
  totalMs(): number {
    if (this.timer === undefined) return this.total;
    const pending = performance.now() - this.last - this.everyMs;
    return this.total + (pending > 0 ? pending : 0);
  }

  private tick(): void {
    const now = performance.now();
    const drift = Math.max(0, now - this.last - this.everyMs);
    this.total += drift;
    this.recent[this.next] = drift;
    this.next = (this.next + 1) % this.recent.length;
    this.smoothed = drift > this.smoothed ? drift : this.smoothed * 0.7 + drift * 0.3;
    this.last = now;
    const elu = performance.eventLoopUtilization();
    if (this.lastElu !== undefined) {
      const u = performance.eventLoopUtilization(elu, this.lastElu).utilization;
      this.utilization = this.utilization * 0.7 + u * 0.3;
    }
    this.lastElu = elu;
    if (this.woken) {
      this.woken = false;
      this.idleTicks = 0;
    } else if (++this.idleTicks >= IDLE_TICKS && drift < this.everyMs) this.sleep();
  }
}

/** The process's one probe: everything that asks about the loop shares its timer. */
export const loopLag = new LoopLag();
