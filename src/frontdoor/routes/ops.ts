import { syError } from '../../core/errors.js';
import type { RequestContext } from '../context.js';
import { sendJson } from '../respond.js';
import type { GatewayState } from '../runtime.js';

/** Liveness, readiness and metrics: never authenticated, never shed. */

export function live(ctx: RequestContext): Promise<void> {
  sendJson(ctx, 200, ctx.errorStyle === 'kserve' ? { live: true } : { status: 'ok' });
  return Promise.resolve();
}

export function readiness(state: GatewayState) {
  return (ctx: RequestContext): Promise<void> => {
    const ready = state.ready();
    if (ctx.errorStyle === 'kserve') {
      sendJson(ctx, ready ? 200 : 503, { ready });
      return Promise.resolve();
    }
    if (!ready) throw syError('SY_ERR_NOT_READY', 'starting or draining');
    const sync = state.configSync?.();
    const worker = state.worker?.();
    sendJson(ctx, 200, {
      status: 'ready',
      config: ctx.runtime.snapshot.digest,
      ...(worker === undefined ? {} : { worker }),
      // Which config the group wants, and whether this replica serves it (#17).
      ...(sync === undefined ? {} : { config_sync: sync }),
    });
    return Promise.resolve();
  };
}

export function metrics(
  render: () => Promise<string>,
  contentType: string,
  openMetrics?: OpenMetricsRender,
) {
  return async (ctx: RequestContext): Promise<void> => {
    // A scraper that accepts OpenMetrics gets it, with exemplars, while tracing is on (#15).
    const om =
      openMetrics !== undefined &&
      (ctx.req.headers.accept ?? '').includes('application/openmetrics-text')
        ? await openMetrics.render()
        : undefined;
    const text = Buffer.from(om ?? (await render()));
    if (ctx.res.headersSent) return;
    ctx.res.writeHead(200, {
      'content-type': om === undefined ? contentType : openMetrics!.contentType,
      'content-length': text.length,
    });
    ctx.res.end(text);
  };
}

/** OpenMetrics text, or undefined when it is not served now (exemplars off). */
export interface OpenMetricsRender {
  render(): Promise<string | undefined>;
  readonly contentType: string;
}
