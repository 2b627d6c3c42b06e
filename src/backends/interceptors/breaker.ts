import type { BackendStream, Interceptor } from '../../contracts/backend.js';
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

/** Outcomes that say nothing about the upstream: the caller gave up. */
const NEUTRAL: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'SY_ERR_CLIENT_CLOSED',
  'SY_ERR_DEADLINE_EXCEEDED',
]);

const BUCKETS = 10;

/**
 * A circuit breaker for one upstream. Closed, it counts calls and failures in a rolling window
 * and opens on a failure ratio (after `min_calls`) or a run of consecutive failures. Open, it
 * refuses calls for `cooldown_ms`, then goes half-open and lets `half_open_probes` calls through:
 * as many successes close it, one failure opens it again. 4xx answers count as successes (the
 * upstream is alive); calls the client abandoned count as nothing.
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

  constructor(
    readonly name: string,
    private settings: BreakerSettings,
    private readonly clock: Clock,
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

  /** Reports how an acquired call ended. */
  settle(err: unknown): void {
    const code = err === undefined ? undefined : toSwitchyardError(err).code;
    const neutral = code !== undefined && NEUTRAL.has(code);
    const failed = code !== undefined && FAILURES.has(code);
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
 * Guards calls with a breaker. A stream counts once it ends: its failure after the first event
 * counts against the upstream too, and a stream cancelled unread still settles (a half-open
 * probe must not hold its slot forever).
 */
export function breakerInterceptor(breaker: CircuitBreaker): Interceptor {
  const refuse = (): Error =>
    syError('SY_ERR_CIRCUIT_OPEN', breaker.name, {
      retryAfterS: 1,
    });
  return (next) => ({
    async call(request, ctx) {
      if (!breaker.tryAcquire()) throw refuse();
      try {
        const result = await next.call(request, ctx);
        breaker.settle(undefined);
        return result;
      } catch (err) {
        breaker.settle(err);
        throw err;
      }
    },
    async stream(request, ctx) {
      if (!breaker.tryAcquire()) throw refuse();
      let stream: BackendStream;
      try {
        stream = await next.stream(request, ctx);
      } catch (err) {
        breaker.settle(err);
        throw err;
      }
      return onStreamEnd(stream, (err) => breaker.settle(err));
    },
  });
}
