import type { Clock } from './clock.js';
import { syError, SwitchyardError, toSwitchyardError } from './errors.js';
import { RequestAbortController } from './abort.js';

/**
 * A request's time budget as an AbortSignal. The signal aborts with a SwitchyardError reason:
 * `SY_ERR_DEADLINE_EXCEEDED` when the budget runs out, or whatever `abort()` was given (for
 * example `SY_ERR_CLIENT_CLOSED` when the client goes away). Everything downstream takes the
 * signal; nothing keeps running after it fires.
 */
export class Deadline {
  readonly signal: AbortSignal;
  /** Monotonic ms (Clock.now) at which the budget runs out. */
  at: number;
  readonly budgetMs: number;
  private readonly controller = new RequestAbortController();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    budgetMs: number,
    private readonly clock: Clock,
  ) {
    this.budgetMs = budgetMs;
    this.at = clock.now() + budgetMs;
    this.signal = this.controller.signal;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.abort(syError('SY_ERR_DEADLINE_EXCEEDED', String(Math.round(budgetMs))));
    }, budgetMs);
    this.timer.unref();
  }

  /** Milliseconds left, never negative. */
  remaining(): number {
    return Math.max(0, this.at - this.clock.now());
  }

  abort(reason: SwitchyardError): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
    this.dispose();
  }

  /**
   * Moves the end to `at` (monotonic ms), where it aborts with `reason()`. A stream whose first
   * event went out is bounded by its own maximum duration, no longer by the unary deadline
   * (#16). Does nothing once the signal fired.
   */
  extendTo(at: number, reason: () => SwitchyardError): void {
    if (this.controller.signal.aborted) return;
    this.dispose();
    this.at = at;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.abort(reason());
      },
      Math.max(1, at - this.clock.now()),
    );
    this.timer.unref();
  }

  /** Stops the timer once the request is answered. */
  dispose(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }
}

/** The SwitchyardError an aborted signal carries (deadline, client gone, or anything else). */
export function abortReason(signal: AbortSignal): SwitchyardError {
  const reason: unknown = signal.reason;
  if (reason instanceof SwitchyardError) return reason;
  return reason === undefined ? syError('SY_ERR_CLIENT_CLOSED') : toSwitchyardError(reason);
}

export function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw abortReason(signal);
}

/** Resolves after `ms`, or rejects with the abort reason as soon as the signal fires. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(abortReason(signal));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortReason(signal));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
