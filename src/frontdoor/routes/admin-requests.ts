import { syError } from '../../core/errors.js';
import {
  parseRequestQuery,
  REQUEST_PARAMS,
  RequestQueryError,
  requestDetailJson,
  requestJson,
  type RequestParam,
} from '../../observability/inference-query.js';
import type { RequestContext } from '../context.js';
import { sendJson } from '../respond.js';

function admin(ctx: RequestContext): void {
  if (ctx.principal?.admin !== true)
    throw syError('SY_ERR_ADMIN_REQUIRED', `key ${ctx.principal?.fingerprint ?? 'none'}`);
}

function reader(ctx: RequestContext) {
  const log = ctx.runtime.inferenceLog;
  if (log === undefined) throw syError('SY_ERR_INFERENCE_LOG_OFF', 'no records are kept');
  return log;
}

/**
 * `GET /admin/requests?tenant=&journey=&model=&outcome=&since=&until=&trace_id=&user=&limit=&cursor=`
 * (#15): inference log records, newest first. `since`/`until` are epoch ms or ISO 8601; `limit` is
 * at most 1000; the next page is `cursor=<next_cursor>`. Admin keys only.
 */
export async function listRequests(ctx: RequestContext): Promise<void> {
  admin(ctx);
  const url = ctx.req.url ?? '';
  const search = new URLSearchParams(url.includes('?') ? url.slice(url.indexOf('?') + 1) : '');
  const params: Partial<Record<RequestParam, string>> = {};
  for (const [k, v] of search) {
    if (!(REQUEST_PARAMS as readonly string[]).includes(k))
      throw syError(
        'SY_ERR_INVALID_REQUEST',
        `unknown parameter "${k.slice(0, 64)}"; use ${REQUEST_PARAMS.join(', ')}`,
        { param: k.slice(0, 64) },
      );
    if (params[k as RequestParam] !== undefined)
      throw syError('SY_ERR_INVALID_REQUEST', `"${k}" is given twice`, { param: k });
    params[k as RequestParam] = v;
  }
  let query;
  try {
    query = parseRequestQuery(params);
  } catch (err) {
    if (err instanceof RequestQueryError)
      throw syError('SY_ERR_INVALID_REQUEST', err.message, { param: err.param });
    throw err;
  }
  const page = await reader(ctx).query(query);
  sendJson(ctx, 200, {
    requests: page.records.map(requestJson),
    next_cursor: page.nextCursor ?? null,
  });
}

/** `GET /admin/requests/{id}`: one request record with its model calls. Admin keys only. */
export async function getRequest(ctx: RequestContext): Promise<void> {
  admin(ctx);
  const id = ctx.params['id'] ?? '';
  if (id.length === 0 || id.length > 256)
    throw syError('SY_ERR_INVALID_REQUEST', 'the request id must be 1 to 256 characters', {
      param: 'id',
    });
  const detail = await reader(ctx).get(id);
  if (detail === undefined)
    throw syError('SY_ERR_REQUEST_RECORD_NOT_FOUND', JSON.stringify(id.slice(0, 200)));
  sendJson(ctx, 200, requestDetailJson(detail));
}
