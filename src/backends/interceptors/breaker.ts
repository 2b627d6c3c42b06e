import type { BackendStream, CallContext, Interceptor } from '../../contracts/backend.js';
import type { Clock } from '../../core/clock.js';
import { syError, toSwitchyardError, type ErrorCode } from '../../core/errors.js';
import { events, publish } from '../../core/events.js';
import { onStreamEnd } from './stream-end.js';

export interface BreakerSettings {
  readonly min_calls: number;
  readonly failure_ratio: number;
  readonly consecutive_failures: number;
  readonly window_ms: number;
  readonly cooldown_ms: number;
  readonly half_open_probes: number;
}

export type BreakerState = 'closed' | 'open' | 'half_open';

/** Errors that say the upstream is unhealthy. */
const FAILURES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'SY_ERR_UPSTREAM_UNREACHABLE',
  'SY_ERR_UPSTREAM_ERROR',
  'SY_ERR_UPSTREAM_TIMEOUT',
  'SY_ERR_UPSTREAM_BAD_RESPONSE',
  'SY_ERR_UPSTREAM_STREAM_INTERRUPTED',
]);

/** Outcomes that say nothing about the upstream: the client went away. */
const NEUTRAL: ReadonlySet<ErrorCode> = new Set<ErrorCode>(['SY_ERR_CLIENT_CLOSED']);

/**
 * Calls cut off by the caller's time: its deadline, or the share of it a fallback chain left the
 * call. They count as failures (#13 finding 3: a black-holed upstream must open its breaker)
 * unless the upstream answered some call, this one included, while this one waited: then the
 * cut says more about the caller's budget than about the upstream, and one client sending tiny
 * deadlines cannot open the breaker for everyone.
 */
const CUT_BY_CALLER: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'SY_ERR_DEADLINE_EXCEEDED',
  'SY_ERR_ATTEMPT_TIMEOUT',
]);

const BUCKETS = 10;

/**
 * A circuit breaker for one upstream. Closed, it counts calls and failures in a rolling window
 * and opens on a failure ratio (after `min_calls`) or a run of consecutive failures. Open, it
 * refuses calls for `cooldown_ms`, then goes half-open and lets `half_open_probes` calls through:
 * as many successes close it, one failure opens it again. 4xx answers count as successes (the
 * upstream is alive); calls the client abandoned count as nothing; calls cut off by the caller's
 * time count as failures unless the upstream answered another call meanwhile (CUT_BY_CALLER).
 */
export class CircuitBreaker {
  private current: BreakerState = 'closed';
  private openedAt = 0;
  private consecutive = 0;
  private probesInFlight = 0;
  private probeSuccesses = 0;
  private readonly calls = new Array<number>(BUCKETS).fill(0);
  private readonly failures = new Array<number>(BUCKETS).fill(0);
  private bucketAt = 0;
  private bucketIndex = 0;
  /** When the upstream last answered anything (a success, a 4xx, a stream's first event). */
  private answeredAt = Number.NEGATIVE_INFINITY;

  constructor(
    readonly name: string,
    private settings: BreakerSettings,
    readonly clock: Clock,
  ) {
    this.bucketAt = clock.now();
  }

  get state(): BreakerState {
    if (this.current === 'open' && this.clock.now() - this.openedAt >= this.settings.cooldown_ms) {
      return 'half_open';
    }
    return this.current;
  }

  /** New settings from a config reload; the state is kept. */
  configure(settings: BreakerSettings): void {
    this.settings = settings;
  }

  /** Asks to make a call. Returns false when the call must not go out. */
  tryAcquire(): boolean {
    if (this.current === 'open') {
      if (this.clock.now() - this.openedAt < this.settings.cooldown_ms) return false;
      this.transition('half_open');
    }
    if (this.current === 'half_open') {
      if (this.probesInFlight >= this.settings.half_open_probes) return false;
      this.probesInFlight++;
    }
    return true;
  }

  /** Notes that the upstream answered something (a stream's first event) before the call ends. */
  heard(): void {
    this.answeredAt = this.clock.now();
  }

  /**
   * Reports how an acquired call ended. `startedAt` (Clock.now when it was acquired) tells a
   * call cut off by its caller's time from an upstream that answers nobody.
   */
  settle(err: unknown, startedAt: number = this.clock.now()): void {
    const code = err === undefined ? undefined : toSwitchyardError(err).code;
    let neutral = code !== undefined && NEUTRAL.has(code);
    let failed = code !== undefined && FAILURES.has(code);
    if (code !== undefined && CUT_BY_CALLER.has(code)) {
      failed = this.answeredAt < startedAt;
      neutral = !failed;
    } else if (!failed && !neutral) {
      this.answeredAt = this.clock.now();
    }
    if (this.current === 'half_open') {
      this.probesInFlight = Math.max(0, this.probesInFlight - 1);
      if (neutral) return;
      if (failed) {
        this.open();
      } else if (++this.probeSuccesses >= this.settings.half_open_probes) {
        this.close();
      }
      return;
    }
    if (neutral || this.current !== 'closed') return;
    this.rotate();
    this.calls[this.bucketIndex]!++;
    if (!failed) {
      this.consecutive = 0;
      return;
    }
    this.failures[this.bucketIndex]!++;
    this.consecutive++;
    const calls = sum(this.calls);
    const ratio = sum(this.failures) / calls;
    if (
      this.consecutive >= this.settings.consecutive_failures ||
      (calls >= this.settings.min_calls && ratio >= this.settings.failure_ratio)
    ) {
      this.open();
    }
  }

  private open(): void {
    this.openedAt = this.clock.now();
    this.transition('open');
  }

  private close(): void {
    this.calls.fill(0);
    this.failures.fill(0);
    this.consecutive = 0;
    this.transition('closed');
  }

  private transition(to: BreakerState): void {
    if (to === this.current) return;
    this.current = to;
    this.probesInFlight = 0;
    this.probeSuccesses = 0;
    publish(events.breakerState, { backend: this.name, state: to });
  }

  /** Advances the rolling window, zeroing buckets that have aged out. */
  private rotate(): void {
    const width = this.settings.window_ms / BUCKETS;
    const now = this.clock.now();
    let steps = Math.floor((now - this.bucketAt) / width);
    if (steps <= 0) return;
    this.bucketAt += steps * width;
    steps = Math.min(steps, BUCKETS);
    for (let i = 0; i < steps; i++) {
      this.bucketIndex = (this.bucketIndex + 1) % BUCKETS;
      this.calls[this.bucketIndex] = 0;
      this.failures[this.bucketIndex] = 0;
    }
  }
}

function sum(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}

/**
 * Guards calls with a breaker. A call that cannot start (its caller is gone or out of time) is
 * left to the deadline guard below and never reaches the breaker. A stream counts once it ends:
 * its failure after the first event counts against the upstream too.
 */
export function breakerInterceptor(breaker: CircuitBreaker): Interceptor {
  const refuse = (): Error =>
    syError('SY_ERR_CIRCUIT_OPEN', breaker.name, {
      retryAfterS: 1,
    });
  const cannotStart = (ctx: CallContext): boolean =>
    ctx.signal.aborted || breaker.clock.now() >= ctx.deadlineAt;
  return (next) => ({
    async call(request, ctx) {
      if (cannotStart(ctx)) return next.call(request, ctx);
      if (!breaker.tryAcquire()) throw refuse();
      const startedAt = breaker.clock.now();
      try {
        const result = await next.call(request, ctx);
        breaker.settle(undefined, startedAt);
        return result;
      } catch (err) {
        breaker.settle(err, startedAt);
        throw err;
      }
    },
    async stream(request, ctx) {
      if (cannotStart(ctx)) return next.stream(request, ctx);
      if (!breaker.tryAcquire()) throw refuse();
      const startedAt = breaker.clock.now();
      let stream: BackendStream;
      try {
        stream = await next.stream(request, ctx);
      } catch (err) {
        breaker.settle(err, startedAt);
        throw err;
      }
      breaker.heard();
      return onStreamEnd(stream, (err) => breaker.settle(err, startedAt));
    },
  });
}
