import { loopLag } from '../core/loop-lag.js';
import type { ConcurrencySpec } from './settings.js';

/** An adaptive concurrency limit: fed one sample per finished request, it says how many may run. */
export interface ConcurrencyLimit {
  current(): number;
  /**
   * `rttMs` of a finished request (undefined: no latency signal, a stream); `inFlight` when it
   * finished, and `queued` (requests waiting for a slot); `dropped` for timeouts and overload
   * errors.
   */
  onSample(
    rttMs: number | undefined,
    inFlight: number,
    dropped: boolean,
    now: number,
    queued?: number,
  ): void;
}

const log10 = (n: number): number => Math.max(1, Math.log10(n));
const MIN_WINDOW_SAMPLES = 5;

/**
 * TCP Vegas applied to request concurrency (after Netflix's concurrency-limits `VegasLimit`).
 * The queue an upstream builds is estimated as `limit × (1 − rttNoLoad / rtt)`; the limit grows
 * while that queue is short and shrinks when it is long, so the upstream always has a little
 * work waiting and no more. `rttNoLoad` is the smallest latency seen; every `probe_interval_ms`
 * the limit is halved for a moment so the upstream drains and the no-load latency is measured
 * again (otherwise a persistent queue would pass for the no-load latency, and the limit creep up:
 * the drift Gradient2's long-window average suffers from).
 */
export class VegasLimit implements ConcurrencyLimit {
  private limit: number;
  private rttNoLoad = Infinity;
  private nextProbe: number;
  private probing = false;
  /** Samples since the last update: one update per window (about one no-load RTT), */
  private windowStart = -1;
  /** The window's smallest round trip. */
  private windowRtt = Infinity;
  /** Samples in the window with a latency, and all of them. */
  private windowTimed = 0;
  private windowCount = 0;
  private windowInFlight = 0;
  private windowQueued = 0;
  private windowDropped = false;

  /**
   * `selfBusy` says the gateway's own loop is saturated: then a long round trip is the gateway's
   * queueing, and the limit holds instead of backing off (drops still back it off). Without
   * this, a CPU-bound gateway blamed its upstream and pinned the limit far below what the
   * upstream takes: 40% of the throughput with admission off (bench:overhead, issue #14).
   */
  constructor(
    private readonly spec: ConcurrencySpec,
    now: number,
    private readonly selfBusy: () => boolean = () => false,
  ) {
    this.limit = spec.initial_limit;
    // The first probe comes early: a limit that starts above the upstream's capacity never
    // sees the no-load latency until it drains once.
    this.nextProbe = now + Math.min(1_000, spec.probe_interval_ms);
  }

  current(): number {
    return Math.max(this.spec.min_limit, Math.floor(this.limit));
  }

  /**
   * Samples are pooled into windows of at least one no-load RTT (and 5 samples), and the limit
   * moves once per window (Netflix's WindowedLimit): a change shows in the RTTs only one RTT
   * later, so updating on every sample would overshoot. The window's round trip is its smallest
   * one, as Linux's TCP Vegas takes the minimum RTT of the last round: a queue at the upstream
   * delays every call of the window, while the gateway's own loop, busy but not saturated,
   * delays some answers and not others (see `upstreamMs`).
   */
  onSample(
    rttMs: number | undefined,
    inFlight: number,
    dropped: boolean,
    now: number,
    queued = 0,
  ): void {
    if (this.windowStart < 0) this.windowStart = now;
    if (rttMs !== undefined) {
      if (rttMs < this.windowRtt) this.windowRtt = rttMs;
      this.windowTimed++;
    }
    this.windowCount++;
    this.windowInFlight = Math.max(this.windowInFlight, inFlight);
    this.windowQueued = Math.max(this.windowQueued, queued);
    this.windowDropped ||= dropped;
    const span = Number.isFinite(this.rttNoLoad) ? this.rttNoLoad : 0;
    if (this.windowCount < MIN_WINDOW_SAMPLES || now - this.windowStart < span) return;
    const rtt = this.windowTimed === 0 ? undefined : this.windowRtt;
    const peak = this.windowInFlight;
    const waiting = this.windowQueued;
    const drop = this.windowDropped;
    this.windowStart = now;
    this.windowRtt = Infinity;
    this.windowTimed = 0;
    this.windowCount = 0;
    this.windowInFlight = 0;
    this.windowQueued = 0;
    this.windowDropped = false;
    this.update(rtt, peak, drop, now, waiting);
  }

  private update(
    rttMs: number | undefined,
    inFlight: number,
    dropped: boolean,
    now: number,
    queued: number,
  ): void {
    const rtt = Math.max(rttMs ?? 0, 0.01);
    // No probe while the gateway's own loop is saturated (it would not see the no-load latency),
    // nor from streams alone (they carry no latency to measure it with).
    if (rttMs !== undefined && now >= this.nextProbe && !this.probing && !this.selfBusy()) {
      // Drain the upstream for a moment and measure its no-load latency again.
      this.probing = true;
      this.rttNoLoad = Infinity;
      this.limit = Math.max(this.spec.min_limit, this.limit / 2);
      this.nextProbe = now + this.spec.probe_interval_ms;
      return;
    }
    if (rttMs !== undefined && rtt < this.rttNoLoad) this.rttNoLoad = rtt;
    if (this.probing && inFlight <= this.current()) this.probing = false;
    const limit = this.limit;
    let next: number;
    if (dropped) next = limit - log10(limit);
    else {
      if (inFlight * 2 < limit) return; // app-limited: the samples say nothing about the upstream
      if (rttMs === undefined || this.selfBusy()) {
        // The gateway's own loop is the bottleneck, so the latency is mostly its own queueing and
        // says nothing about the upstream (or, from streams, there is no latency at all): follow
        // demand instead (grow while every slot is taken, by half the queue or as fast as Vegas
        // grows on a short queue, whichever is more: at log10 per window the limit took 10 s to
        // reach 200 connections from 20, their requests queued meanwhile), and let drops
        // (timeouts, upstream 429/503) back it off.
        if (inFlight < this.current()) return;
        next = limit + Math.max(6 * log10(limit), queued / 2);
        next = Math.min(this.spec.max_limit, next);
        this.limit = limit * (1 - this.spec.smoothing) + next * this.spec.smoothing;
        return;
      }
      const queue = Math.ceil(limit * (1 - this.rttNoLoad / rtt));
      const alpha = 3 * log10(limit);
      const beta = 6 * log10(limit);
      if (queue <= log10(limit)) next = limit + beta;
      else if (queue < alpha) next = limit + log10(limit);
      else if (queue > beta) next = limit - log10(limit);
      else return;
    }
    next = Math.min(this.spec.max_limit, Math.max(this.spec.min_limit, next));
    this.limit = limit * (1 - this.spec.smoothing) + next * this.spec.smoothing;
  }
}

/** A limit that never moves (`algorithm: fixed`). */
export class FixedLimit implements ConcurrencyLimit {
  constructor(private readonly limit: number) {}
  current(): number {
    return this.limit;
  }
  onSample(): void {}
}

export function createLimit(spec: ConcurrencySpec, now: number): ConcurrencyLimit {
  return spec.algorithm === 'fixed'
    ? new FixedLimit(spec.initial_limit)
    : new VegasLimit(spec, now, () => loopLag.busy());
}
