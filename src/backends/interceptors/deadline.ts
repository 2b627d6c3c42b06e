import type { Interceptor } from '../../contracts/backend.js';
import type { Clock } from '../../core/clock.js';
import { throwIfAborted } from '../../core/deadline.js';
import { syError } from '../../core/errors.js';

/**
 * The last check before a backend is called: no attempt starts once the caller's signal has
 * fired or its deadline has passed, whatever the backend does with the signal afterwards.
 */
export function deadlineGuard(clock: Clock): Interceptor {
  const check = (signal: AbortSignal, deadlineAt: number): void => {
    throwIfAborted(signal);
    if (clock.now() >= deadlineAt) throw syError('SY_ERR_DEADLINE_EXCEEDED', '0');
  };
  return (next) => ({
    call(request, ctx) {
      check(ctx.signal, ctx.deadlineAt);
      return next.call(request, ctx);
    },
    stream(request, ctx) {
      check(ctx.signal, ctx.deadlineAt);
      return next.stream(request, ctx);
    },
  });
}
