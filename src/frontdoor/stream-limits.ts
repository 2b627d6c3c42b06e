import type { StreamLimits } from '../contracts/backend.js';
import { STREAM_IDLE_HEADER, STREAM_MAX_HEADER } from '../backends/http/http-upstream.js';
import { syError } from '../core/errors.js';
import type { RequestContext } from './context.js';

/**
 * The bounds of a stream the client asked for (#16): its idle timeout between events and its
 * maximum duration, from `x-switchyard-stream-idle-ms` / `x-switchyard-stream-max-ms` or the
 * config's defaults, clamped to the config's caps (as `x-switchyard-timeout-ms` is clamped).
 * A malformed header is the client's error (400), found before any model is called.
 */
export function streamLimits(ctx: RequestContext): StreamLimits {
  const c = ctx.runtime.snapshot.config.server.stream;
  return {
    idleMs: header(ctx, STREAM_IDLE_HEADER, c.idle_timeout_ms, c.idle_timeout_cap_ms),
    maxMs: header(ctx, STREAM_MAX_HEADER, c.duration_ms, c.duration_cap_ms),
  };
}

function header(ctx: RequestContext, name: string, fallback: number, cap: number): number {
  const v = ctx.req.headers[name];
  if (v === undefined) return fallback;
  if (typeof v !== 'string' || !/^[1-9]\d{0,9}$/.test(v))
    throw syError('SY_ERR_INVALID_REQUEST', `${name} must be a positive whole number of ms`, {
      param: name,
    });
  return Math.min(cap, Number(v));
}

/**
 * Once the first event is in hand, the request's deadline stops being the unary one: it moves
 * to the stream's maximum duration (from the request's start), where it ends the stream with
 * SY_ERR_STREAM_MAX_DURATION. A client that leaves still aborts it at once.
 */
export function extendForStream(ctx: RequestContext, limits: StreamLimits): void {
  ctx.deadline?.extendTo(ctx.startedAt + limits.maxMs, () =>
    syError('SY_ERR_STREAM_MAX_DURATION', String(limits.maxMs)),
  );
}
