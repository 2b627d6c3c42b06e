import type { CallContext, Interceptor } from '../../contracts/backend.js';
import type { Clock } from '../../core/clock.js';
import { sleep, throwIfAborted } from '../../core/deadline.js';
import { toSwitchyardError, type ErrorCode, type SwitchyardError } from '../../core/errors.js';
import { events, publish } from '../../core/events.js';
import type { Random } from '../../core/random.js';

export interface RetrySettings {
  readonly max_attempts: number;
  readonly base_delay_ms: number;
  readonly max_delay_ms: number;
  readonly budget_ratio: number;
  readonly budget_min_per_s: number;
  readonly budget_window_s: number;
}

/**
 * Finagle-style retry budget: over a sliding window, retries may not exceed
 * `budget_min_per_s * window + budget_ratio * requests`. Under a broad outage the extra load
 * retries add is bounded by the ratio (10% by default), never a multiple of the traffic.
 */
export class RetryBudget {
  private readonly requests: number[];
  private readonly retries: number[];
  private second: number;

  constructor(
    private settings: RetrySettings,
    private readonly clock: Clock,
  ) {
    this.requests = new Array<number>(settings.budget_window_s).fill(0);
    this.retries = new Array<number>(settings.budget_window_s).fill(0);
    this.second = Math.floor(clock.now() / 1000);
  }

  configure(settings: RetrySettings): void {
    if (settings.budget_window_s !== this.settings.budget_window_s) {
      this.requests.length = settings.budget_window_s;
      this.retries.length = settings.budget_window_s;
      this.requests.fill(0);
      this.retries.fill(0);
    }
    this.settings = settings;
  }

  /** Counts one original request. */
  deposit(): void {
    this.requests[this.slot()]!++;
  }

  /** Takes one retry from the budget if there is one left. */
  tryWithdraw(): boolean {
    const slot = this.slot();
    const window = this.settings.budget_window_s;
    const allowed =
      this.settings.budget_min_per_s * window + this.settings.budget_ratio * total(this.requests);
    if (total(this.retries) + 1 > allowed) return false;
    this.retries[slot]!++;
    return true;
  }

  private slot(): number {
    const now = Math.floor(this.clock.now() / 1000);
    const n = this.requests.length;
    const gap = Math.min(now - this.second, n);
    for (let i = 1; i <= gap; i++) {
      const s = (this.second + i) % n;
      this.requests[s] = 0;
      this.retries[s] = 0;
    }
    if (gap > 0) this.second = now;
    return now % n;
  }
}

function total(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}

/** Failures worth another try on the same upstream. 429 and an open breaker go to fallback. */
const RETRY_SAME: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'SY_ERR_UPSTREAM_UNREACHABLE',
  'SY_ERR_UPSTREAM_ERROR',
  'SY_ERR_UPSTREAM_TIMEOUT',
  'SY_ERR_UPSTREAM_BAD_RESPONSE',
]);

/**
 * Retries one backend on retryable failures, with full-jitter exponential backoff, within the
 * retry budget and the caller's deadline. The only retry layer: fallback moves to the next
 * backend instead. A stream is retried only before its first byte (BackendStream resolves after
 * the first event, so a failure after that never reaches here).
 */
export function retryInterceptor(
  backend: string,
  getSettings: () => RetrySettings,
  budget: RetryBudget,
  clock: Clock,
  random: Random,
): Interceptor {
  const run = async <T>(ctx: CallContext, attemptFn: () => Promise<T>): Promise<T> => {
    const settings = getSettings();
    budget.deposit();
    for (let attempt = 1; ; attempt++) {
      try {
        return await attemptFn();
      } catch (err) {
        const e = toSwitchyardError(err);
        if (!RETRY_SAME.has(e.code) || attempt >= settings.max_attempts || ctx.signal.aborted)
          throw e;
        const cap = Math.min(settings.max_delay_ms, settings.base_delay_ms * 2 ** (attempt - 1));
        const delay = random() * cap;
        if (clock.now() + delay >= ctx.deadlineAt) throw refused(backend, 'no_time', e);
        if (!budget.tryWithdraw()) throw refused(backend, 'budget_exhausted', e);
        publish(events.retry, { backend, decision: 'retried' });
        await sleep(delay, ctx.signal);
        throwIfAborted(ctx.signal);
      }
    }
  };
  return (next) => ({
    call: (request, ctx) => run(ctx, () => next.call(request, ctx)),
    stream: (request, ctx) => run(ctx, () => next.stream(request, ctx)),
  });
}

function refused(
  backend: string,
  decision: 'no_time' | 'budget_exhausted',
  e: SwitchyardError,
): SwitchyardError {
  publish(events.retry, { backend, decision });
  return e;
}
