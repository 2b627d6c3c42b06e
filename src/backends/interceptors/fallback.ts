import type { BackendCall, CallContext } from '../../contracts/backend.js';
import { throwIfAborted } from '../../core/deadline.js';
import { syError, toSwitchyardError, type SwitchyardError } from '../../core/errors.js';
import { events, publish } from '../../core/events.js';

export interface ChainLink {
  readonly name: string;
  readonly call: BackendCall;
}

/**
 * An ordered fallback chain: the first link that answers wins. A link's failure moves on to the
 * next when it is retryable or the upstream refused the gateway (a misconfigured primary should
 * not take the model down); a request the upstream judged invalid, or a caller that is gone or
 * out of time, stops the chain. When every link was refused by an open breaker the answer is
 * SY_ERR_NO_HEALTHY_BACKEND.
 */
export function fallbackChain(model: string, links: readonly ChainLink[]): BackendCall {
  if (links.length === 1) return links[0]!.call;
  const run = async <T>(ctx: CallContext, step: (link: ChainLink) => Promise<T>): Promise<T> => {
    let last: SwitchyardError | undefined;
    let allOpen = true;
    for (let i = 0; i < links.length; i++) {
      const link = links[i]!;
      try {
        return await step(link);
      } catch (err) {
        last = toSwitchyardError(err);
        if (last.code !== 'SY_ERR_CIRCUIT_OPEN') allOpen = false;
        const movesOn = last.retryable || last.code === 'SY_ERR_UPSTREAM_REFUSED';
        const next = links[i + 1];
        if (!movesOn || next === undefined) break;
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
    call: (request, ctx) => run(ctx, (link) => link.call.call(request, ctx)),
    stream: (request, ctx) => run(ctx, (link) => link.call.stream(request, ctx)),
  };
}
