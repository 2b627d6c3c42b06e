import type { Interceptor } from '../../contracts/backend.js';
import { toSwitchyardError } from '../../core/errors.js';
import { onStreamEnd } from './stream-end.js';

/**
 * One span per attempt on a backend (#15), under the model call's span: sits inside retry and
 * fallback (beside `recordAttempts`), so each retry and each fallback step is its own client
 * span, and the HTTP upstream sends this span as the `traceparent` parent. A stream's attempt
 * ends with the stream. Untraced calls (`ctx.span` undefined) pass straight through.
 */
export function traceAttempts(backend: string, upstream: string): Interceptor {
  return (next) => ({
    async call(request, ctx) {
      const parent = ctx.span;
      if (parent === undefined) return next.call(request, ctx);
      const span = parent.child(`attempt ${backend}`, 'client', {
        'switchyard.backend': backend,
        'switchyard.attempt': attemptNumber(backend, ctx.attempts),
        'server.address': upstream,
      });
      try {
        return await next.call(request, { ...ctx, span });
      } catch (err) {
        const e = toSwitchyardError(err);
        span.fail(e.code, e.message);
        throw err;
      } finally {
        span.end();
      }
    },
    async stream(request, ctx) {
      const parent = ctx.span;
      if (parent === undefined) return next.stream(request, ctx);
      const span = parent.child(`attempt ${backend}`, 'client', {
        'switchyard.backend': backend,
        'switchyard.attempt': attemptNumber(backend, ctx.attempts),
        'switchyard.stream': true,
        'server.address': upstream,
      });
      try {
        const stream = await next.stream(request, { ...ctx, span });
        return onStreamEnd(stream, (err) => {
          if (err !== undefined) {
            const e = toSwitchyardError(err);
            span.fail(e.code, e.message);
          }
          span.end();
        });
      } catch (err) {
        const e = toSwitchyardError(err);
        span.fail(e.code, e.message);
        span.end();
        throw err;
      }
    },
  });
}

function attemptNumber(backend: string, attempts: readonly { backend: string }[]): number {
  let n = 1;
  for (const a of attempts) if (a.backend === backend) n++;
  return n;
}
