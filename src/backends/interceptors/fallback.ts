import type { BackendCall, BackendRequest, CallContext } from '../../contracts/backend.js';
import type { Clock } from '../../core/clock.js';
import { throwIfAborted } from '../../core/deadline.js';
import { syError, toSwitchyardError, type SwitchyardError } from '../../core/errors.js';
import { events, publish } from '../../core/events.js';
import { extend } from '../../core/objects.js';

export interface ChainLink {
  readonly name: string;
  readonly call: BackendCall;
  /**
   * When another link follows this one, the share of the request's remaining deadline this
   * link may wait for a first byte (an HTTP model's `first_byte_share`); the next link keeps the
   * rest. Unset: the link is not cut for the next one (in-process models have no first byte).
   */
  readonly firstByteShare?: number;
}

/**
 * A parent gateway's verdict on the tenant (#17): served by a fallback instead, the call would
 * escape the tenant's quota. These codes come only from admission, so in a chain only from a parent.
 */
const TENANT_VERDICTS: ReadonlySet<string> = new Set([
  'SY_ERR_RATE_LIMITED',
  'SY_ERR_QUOTA_EXCEEDED',
]);

/**
 * An ordered fallback chain: the first link that answers wins. A link's failure moves on to the
 * next when it is retryable or the upstream refused the gateway (a misconfigured primary should
 * not take the model down); a request the upstream judged invalid, or a caller that is gone or
 * out of time, stops the chain. When every link was refused by an open breaker the answer is
 * SY_ERR_NO_HEALTHY_BACKEND.
 *
 * Every link but the last gets `firstByteBy` = now + its share of the remaining deadline (#13:
 * an upstream that accepts and never answers must leave its fallback time to answer, whatever
 * its own first-byte timeout).
 */
export function fallbackChain(
  model: string,
  links: readonly ChainLink[],
  clock: Clock,
): BackendCall {
  if (links.length === 1) return links[0]!.call;
  const contextFor = (ctx: CallContext, link: ChainLink, last: boolean): CallContext => {
    if (last || link.firstByteShare === undefined) return ctx;
    const now = clock.now();
    const by = now + link.firstByteShare * Math.max(0, ctx.deadlineAt - now);
    return extend(ctx, { firstByteBy: Math.min(by, ctx.firstByteBy ?? by) });
  };
  const run = async <T>(
    request: BackendRequest,
    ctx: CallContext,
    step: (link: ChainLink, ctx: CallContext) => Promise<T>,
  ): Promise<T> => {
    let last: SwitchyardError | undefined;
    let allOpen = true;
    for (let i = 0; i < links.length; i++) {
      const link = links[i]!;
      const next = links[i + 1];
      // Residency (#17): a link the call's data may not reach is skipped, never tried.
      const refused = i === 0 ? undefined : ctx.refuses?.(link.name);
      if (refused !== undefined) {
        last ??= syError('SY_ERR_RESIDENCY', `${link.name}: ${refused}`);
        allOpen = false;
        continue;
      }
      try {
        return await step(link, contextFor(ctx, link, next === undefined));
      } catch (err) {
        last = toSwitchyardError(err);
        if (last.code !== 'SY_ERR_CIRCUIT_OPEN') allOpen = false;
        const movesOn =
          !TENANT_VERDICTS.has(last.code) &&
          (last.retryable || last.code === 'SY_ERR_UPSTREAM_REFUSED');
        // An upload already (partly) sent cannot be sent again (#16 part 4).
        if (!movesOn || next === undefined || consumed(request)) break;
        throwIfAborted(ctx.signal);
        publish(events.fallback, { model, from: link.name, to: next.name, code: last.code });
      }
    }
    if (allOpen)
      throw syError('SY_ERR_NO_HEALTHY_BACKEND', `${model}: every upstream's breaker is open`, {
        retryAfterS: 1,
      });
    throw last!;
  };
  return {
    call: (request, ctx) => run(request, ctx, (link, c) => link.call.call(request, c)),
    stream: (request, ctx) => run(request, ctx, (link, c) => link.call.stream(request, c)),
  };
}

/** A request whose one-shot body (a streamed upload) already went, in part, to an upstream. */
export function consumed(request: BackendRequest): boolean {
  return request.op === 'transcriptions' && request.upload.sent;
}
