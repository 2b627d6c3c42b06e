import { createHash } from 'node:crypto';
import type {
  BackendRequest,
  BackendResponse,
  CallContext,
  Interceptor,
} from '../../contracts/backend.js';
import type { Clock } from '../../core/clock.js';
import { toSwitchyardError, type ErrorCode } from '../../core/errors.js';

export interface StaleCacheSettings {
  /** Most answers kept (least recently stored go first). */
  readonly entries: number;
  /** Oldest answer served, ms. */
  readonly max_age_ms: number;
}

/** Failures that say the parent cannot answer now: a kept answer is better than none. */
const PARENT_GONE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'SY_ERR_UPSTREAM_UNREACHABLE',
  'SY_ERR_UPSTREAM_TIMEOUT',
  'SY_ERR_ATTEMPT_TIMEOUT',
  'SY_ERR_UPSTREAM_ERROR',
  'SY_ERR_UPSTREAM_BAD_RESPONSE',
  'SY_ERR_CIRCUIT_OPEN',
  'SY_ERR_NO_HEALTHY_BACKEND',
  'SY_ERR_PARENT_SHED',
]);

interface Kept {
  readonly at: number;
  readonly json: BackendResponse['json'];
  readonly raw: Buffer | undefined;
}

/**
 * An edge's stale cache of its parent gateway (#17): every answer of the parent is kept (per
 * tenant, per exact request), and when the parent cannot be reached the last answer to the same
 * request is served, marked degraded (`stale-cache`) in the route. Answers carry no usage: a kept
 * answer costs the tenant nothing. Streams pass through untouched.
 */
export function staleCache(model: string, settings: StaleCacheSettings, clock: Clock): Interceptor {
  const kept = new Map<string, Kept>();
  const keyOf = (request: BackendRequest, ctx: CallContext): string => {
    const h = createHash('sha256');
    h.update(ctx.tenant).update('\0').update(request.op).update('\0');
    if (request.op === 'infer') h.update(request.version ?? '').update('\0');
    return h.update(JSON.stringify(request.body)).digest('base64url');
  };
  return (next) => ({
    async call(request, ctx) {
      const key = keyOf(request, ctx);
      try {
        const res = await next.call(request, ctx);
        kept.delete(key);
        kept.set(key, { at: clock.now(), json: res.json, raw: res.raw });
        if (kept.size > settings.entries) kept.delete(kept.keys().next().value!);
        return res;
      } catch (err) {
        const e = toSwitchyardError(err);
        const hit = PARENT_GONE.has(e.code) ? kept.get(key) : undefined;
        if (hit === undefined || clock.now() - hit.at > settings.max_age_ms || ctx.signal.aborted)
          throw e;
        ctx.attempts.push({
          backend: `${model}:stale`,
          attempt: 1,
          outcome: 'ok',
          ms: 0,
          degraded: 'stale-cache',
        });
        return hit.raw === undefined ? { json: hit.json } : { json: hit.json, raw: hit.raw };
      }
    },
    stream: (request, ctx) => next.stream(request, ctx),
  });
}
