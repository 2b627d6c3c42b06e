import type { BackendRequest, CallContext, Interceptor } from '../../contracts/backend.js';
import { consumed } from './fallback.js';
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
  readonly budget_tokens: number;
}

/** Attempt outcomes that drain the budget: the upstream failed, or asked to be left alone. */
const FAILED: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'SY_ERR_UPSTREAM_UNREACHABLE',
  'SY_ERR_UPSTREAM_ERROR',
  'SY_ERR_UPSTREAM_TIMEOUT',
  'SY_ERR_UPSTREAM_BAD_RESPONSE',
  'SY_ERR_UPSTREAM_RATE_LIMITED',
]);

/** Attempt outcomes that say nothing of the upstream: it was not asked, or not given time. */
const UNJUDGED: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'SY_ERR_CIRCUIT_OPEN',
  'SY_ERR_CLIENT_CLOSED',
  'SY_ERR_DEADLINE_EXCEEDED',
  'SY_ERR_ATTEMPT_TIMEOUT',
  'SY_ERR_OPERATION_UNSUPPORTED',
]);

/**
 * The retry budget of one upstream: a token bucket in the manner of gRPC's retry throttling
 * (gRFC A6). It starts full with `budget_tokens`; each attempt the upstream failed takes a token
 * out, each attempt it answered puts `budget_ratio` back, and a retry may start only while more
 * than half the tokens are left. So retries add at most `budget_ratio` attempts per answered
 * request, plus half the bucket once, at any request rate: under an outage nothing is answered
 * and retries stop after a handful of failures. (#13 finding 10: the former floor of retries per
 * second let attempts per request reach 2.12 at 5 requests/s.)
 */
export class RetryBudget {
  private tokens: number;

  constructor(private settings: Pick<RetrySettings, 'budget_ratio' | 'budget_tokens'>) {
    this.tokens = settings.budget_tokens;
  }

  /** New settings from a config reload: the balance is kept, within the new size. */
  configure(settings: Pick<RetrySettings, 'budget_ratio' | 'budget_tokens'>): void {
    this.settings = settings;
    this.tokens = Math.min(this.tokens, settings.budget_tokens);
  }

  /** Notes how an attempt ended: `undefined` when it succeeded, else its error code. */
  record(outcome: ErrorCode | undefined): void {
    if (outcome === undefined || (!FAILED.has(outcome) && !UNJUDGED.has(outcome))) {
      this.tokens = Math.min(this.settings.budget_tokens, this.tokens + this.settings.budget_ratio);
    } else if (FAILED.has(outcome)) {
      this.tokens = Math.max(0, this.tokens - 1);
    }
  }

  /** Whether a retry may start now. */
  allowsRetry(): boolean {
    return this.tokens > this.settings.budget_tokens / 2;
  }

  /** The tokens left (for tests and diagnostics). */
  get balance(): number {
    return this.tokens;
  }
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
  const run = async <T>(
    request: BackendRequest,
    ctx: CallContext,
    attemptFn: () => Promise<T>,
  ): Promise<T> => {
    const settings = getSettings();
    for (let attempt = 1; ; attempt++) {
      let result: T;
      try {
        result = await attemptFn();
      } catch (err) {
        const e = toSwitchyardError(err);
        budget.record(e.code);
        if (!RETRY_SAME.has(e.code) || attempt >= settings.max_attempts || ctx.signal.aborted)
          throw e;
        // An upload already (partly) sent cannot be sent again (#16 part 4).
        if (consumed(request)) throw e;
        // With a fallback after this link, a timed-out upstream is not waited on again: the next
        // model is the better second try (#13: a black hole held requests for two waits).
        if (e.code === 'SY_ERR_UPSTREAM_TIMEOUT' && ctx.firstByteBy !== undefined) throw e;
        const cap = Math.min(settings.max_delay_ms, settings.base_delay_ms * 2 ** (attempt - 1));
        const delay = random() * cap;
        // A link with a fallback after it must be done by its first-byte share (ctx.firstByteBy).
        const until = Math.min(ctx.deadlineAt, ctx.firstByteBy ?? ctx.deadlineAt);
        if (clock.now() + delay >= until) throw refuseRetry(backend, 'no_time', e);
        if (!budget.allowsRetry()) throw refuseRetry(backend, 'budget_exhausted', e);
        publish(events.retry, { backend, decision: 'retried' });
        await sleep(delay, ctx.signal);
        throwIfAborted(ctx.signal);
        continue;
      }
      budget.record(undefined);
      return result;
    }
  };
  return (next) => ({
    call: (request, ctx) => run(request, ctx, () => next.call(request, ctx)),
    stream: (request, ctx) => run(request, ctx, () => next.stream(request, ctx)),
  });
}

/** A retry not made: counted, and a budget refusal tells the client not to retry either. */
export function refuseRetry(
  backend: string,
  decision: 'no_time' | 'budget_exhausted',
  e: SwitchyardError,
): SwitchyardError {
  publish(events.retry, { backend, decision });
  // The budget is spent because the upstream keeps failing: a client retry would only add load.
  if (decision === 'budget_exhausted') e.noClientRetry = true;
  return e;
}
