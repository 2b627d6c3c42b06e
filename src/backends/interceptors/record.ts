import type {
  BackendResponse,
  BackendStream,
  CallContext,
  Interceptor,
} from '../../contracts/backend.js';
import type { Clock } from '../../core/clock.js';
import { toSwitchyardError } from '../../core/errors.js';
import { events, publish } from '../../core/events.js';
import { onStreamEnd } from './stream-end.js';

/**
 * Records every attempt on a backend: it is appended to the call's route and published for
 * metrics. Sits inside retry and fallback, so each retry and each fallback step is one record.
 *
 * A stream's attempt is appended as `ok` once its first event is in hand (the route header goes
 * out with it), and published when the stream ends: a stream that fails after its first event
 * turns its record into the failure's code (#13 finding 4), so the log and the metrics say so.
 * Its duration stays the time to the first event.
 */
export function recordAttempts(backend: string, clock: Clock): Interceptor {
  const numberOf = (ctx: CallContext): number => {
    let attempt = 1;
    for (const a of ctx.attempts) if (a.backend === backend) attempt++;
    return attempt;
  };
  const append = (
    ctx: CallContext,
    attempt: number,
    outcome: string,
    ms: number,
    from?: { readonly route?: string; readonly degraded?: string },
  ): number =>
    ctx.attempts.push({
      backend,
      attempt,
      outcome,
      ms,
      // A parent gateway's route and degradation travel in the record (#17).
      ...(from?.route === undefined ? {} : { remote: from.route }),
      ...(from?.degraded === undefined ? {} : { degraded: from.degraded }),
    }) - 1;
  const announce = (attempt: number, outcome: string, ms: number): void =>
    publish(events.upstreamAttempt, { backend, outcome, durationMs: ms, attempt });
  return (next) => ({
    async call(request, ctx) {
      const started = clock.now();
      const attempt = numberOf(ctx);
      let outcome = 'ok';
      let res: BackendResponse | undefined;
      try {
        res = await next.call(request, ctx);
        return res;
      } catch (err) {
        outcome = toSwitchyardError(err).code;
        throw err;
      } finally {
        const ms = clock.now() - started;
        append(ctx, attempt, outcome, ms, res);
        announce(attempt, outcome, ms);
      }
    },
    async stream(request, ctx) {
      const started = clock.now();
      const attempt = numberOf(ctx);
      let stream: BackendStream;
      try {
        stream = await next.stream(request, ctx);
      } catch (err) {
        const ms = clock.now() - started;
        const outcome = toSwitchyardError(err).code;
        append(ctx, attempt, outcome, ms);
        announce(attempt, outcome, ms);
        throw err;
      }
      const ms = clock.now() - started;
      const index = append(ctx, attempt, 'ok', ms, stream);
      return onStreamEnd(stream, (err) => {
        const outcome = err === undefined ? 'ok' : toSwitchyardError(err).code;
        if (outcome !== 'ok') ctx.attempts[index] = { backend, attempt, outcome, ms };
        announce(attempt, outcome, ms);
      });
    },
  });
}
