import { syError } from '../../core/errors.js';
import {
  AUDIT_PARAMS,
  AuditQueryError,
  auditEntryJson,
  nextAuditCursor,
  parseAuditQuery,
  type AuditParam,
} from '../../observability/audit-query.js';
import type { RequestContext } from '../context.js';
import { sendJson } from '../respond.js';

/**
 * `GET /admin/audit?action=&actor=&target=&since=&until=&limit=&cursor=` (#14): the durable audit
 * trail of admin changes, newest first. `action` is a prefix; `since`/`until` are epoch ms or ISO
 * 8601; the next page is `cursor=<next_cursor>`. Admin keys only.
 */
export async function listAudit(ctx: RequestContext): Promise<void> {
  if (ctx.principal?.admin !== true)
    throw syError('SY_ERR_ADMIN_REQUIRED', `key ${ctx.principal?.fingerprint ?? 'none'}`);
  const url = ctx.req.url ?? '';
  const search = new URLSearchParams(url.includes('?') ? url.slice(url.indexOf('?') + 1) : '');
  const params: Partial<Record<AuditParam, string>> = {};
  for (const [k, v] of search) {
    if (!(AUDIT_PARAMS as readonly string[]).includes(k))
      throw syError(
        'SY_ERR_INVALID_REQUEST',
        `unknown parameter "${k.slice(0, 64)}"; use ${AUDIT_PARAMS.join(', ')}`,
        { param: k.slice(0, 64) },
      );
    if (params[k as AuditParam] !== undefined)
      throw syError('SY_ERR_INVALID_REQUEST', `"${k}" is given twice`, { param: k });
    params[k as AuditParam] = v;
  }
  let query;
  try {
    query = parseAuditQuery(params);
  } catch (err) {
    if (err instanceof AuditQueryError)
      throw syError('SY_ERR_INVALID_REQUEST', err.message, { param: err.param });
    throw err;
  }
  const audit = ctx.runtime.audit;
  if (audit === undefined) throw syError('SY_ERR_NOT_READY', 'the audit trail is not open');
  const entries = await audit.list(query);
  sendJson(ctx, 200, {
    entries: entries.map(auditEntryJson),
    next_cursor: nextAuditCursor(entries, query.limit),
  });
}
