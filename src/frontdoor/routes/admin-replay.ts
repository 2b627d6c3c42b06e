import { RequestAbortController } from '../../core/abort.js';
import { syError } from '../../core/errors.js';
import type { RequestContext } from '../context.js';
import { parseReplayRequest, runReplay } from '../replay-request.js';
import { sendJson } from '../respond.js';

/**
 * `POST /admin/replay` (#15): re-runs logged requests (the filters of `GET /admin/requests`, or
 * `ids`) against a candidate, in shadow: no quota, no budget, no ledger, no cache, no exposure,
 * no log records unless `log: true`. Answers the report as JSON; with `stream: true`, as NDJSON
 * lines `{"progress": {"done", "total"}}` and a last line `{"report": ...}`. Admin keys only.
 */
export async function replayRequests(ctx: RequestContext): Promise<void> {
  if (ctx.principal?.admin !== true)
    throw syError('SY_ERR_ADMIN_REQUIRED', `key ${ctx.principal?.fingerprint ?? 'none'}`);
  const body = await ctx.readJson();
  const runtime = ctx.runtime;
  const parsed = parseReplayRequest(runtime, body);
  const streamed = parsed.stream;
  // A client that leaves stops the replay: nothing keeps running for it.
  const ac = new RequestAbortController();
  ctx.onEnd(() => ac.abort(syError('SY_ERR_CLIENT_CLOSED')));
  // Streamed: the head goes out with the first progress line, so a bad selection (the log is
  // off) is still answered with its status and error body.
  const head = (): void => {
    if (!ctx.res.headersSent)
      ctx.res.writeHead(200, {
        'content-type': 'application/x-ndjson',
        'x-request-id': ctx.requestId,
        'cache-control': 'no-cache',
      });
  };
  const report = await runReplay(runtime, parsed, ac.signal, (done, total) => {
    if (!streamed) return;
    head();
    ctx.res.write(`${JSON.stringify({ progress: { done, total } })}\n`);
  });
  if (report === undefined) return; // the client left
  if (!streamed) {
    sendJson(ctx, 200, report);
    return;
  }
  head();
  ctx.res.end(`${JSON.stringify({ report })}\n`);
}
