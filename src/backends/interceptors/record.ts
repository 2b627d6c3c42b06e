import type { BackendStream, CallContext, Interceptor } from '../../contracts/backend.js';
import type { Clock } from '../../core/clock.js';
import { toSwitchyardError } from '../../core/errors.js';
import { events, publish } from '../../core/events.js';

/**
 * Records every attempt on a backend: it is appended to the call's route and published for
 * metrics. Sits inside retry and fallback, so each retry and each fallback step is one record.
 */
export function recordAttempts(backend: string, clock: Clock): Interceptor {
  const run = async <T>(ctx: CallContext, fn: () => Promise<T>): Promise<T> => {
    const started = clock.now();
    let attempt = 1;
    for (const a of ctx.attempts) if (a.backend === backend) attempt++;
    let outcome = 'ok';
    try {
      return await fn();
    } catch (err) {
      outcome = toSwitchyardError(err).code;
      throw err;
    } finally {
      const ms = clock.now() - started;
      ctx.attempts.push({ backend, attempt, outcome, ms });
      publish(events.upstreamAttempt, { backend, outcome, durationMs: ms, attempt });
    }
  };
  return (next) => ({
    call: (request, ctx) => run(ctx, () => next.call(request, ctx)),
    stream: (request, ctx) => run<BackendStream>(ctx, () => next.stream(request, ctx)),
  });
}
