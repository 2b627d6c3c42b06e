import type { JsonObject } from '../../contracts/json.js';
import type { ConsentChange, ConsentPurpose, ConsentRecord } from '../../contracts/policy.js';
import { CONSENT_PURPOSES } from '../../contracts/policy.js';
import { syError } from '../../core/errors.js';
import { isJsonObject } from '../../core/safe-json.js';
import type { RequestContext } from '../context.js';
import { sendJson } from '../respond.js';
import { withDataScope } from '../scope.js';
import { personalizationOf } from './features.js';

/** Consent is per tenant: the caller's key decides the tenant, the path names the user. */

function userOf(ctx: RequestContext): string {
  const user = ctx.params['user'] ?? '';
  if (user.length === 0 || user.length > 256)
    throw syError('SY_ERR_INVALID_REQUEST', 'the user id must be 1 to 256 characters', {
      param: 'user',
    });
  return user;
}

function actorOf(ctx: RequestContext): string {
  return `key:${ctx.principal?.fingerprint ?? 'anonymous'}`;
}

function isPurpose(p: unknown): p is ConsentPurpose {
  return typeof p === 'string' && (CONSENT_PURPOSES as readonly string[]).includes(p);
}

const purposeList = CONSENT_PURPOSES.join(', ');

function recordJson(r: ConsentRecord): JsonObject {
  return {
    user: r.userId,
    purposes: { ...r.purposes },
    updated_at: r.updatedAt,
    version: r.version,
  };
}

function changeJson(c: ConsentChange): JsonObject {
  return {
    ...recordJson(c.record),
    revoked: [...c.revoked],
    granted: [...c.granted],
    purged: { ...c.purged },
    purge_failed: { ...c.failed },
  };
}

/** `GET /v1/consent/{user}` */
export async function getConsent(ctx: RequestContext): Promise<void> {
  const p = personalizationOf(ctx);
  const user = userOf(ctx);
  await withDataScope(ctx, () => {
    sendJson(ctx, 200, recordJson(p.consent.get(ctx.principal?.tenant ?? '', user)));
    return Promise.resolve();
  });
}

/** `PUT /v1/consent/{user}` with `{"purposes": {"location": false, ...}}`; a true→false change purges. */
export async function putConsent(ctx: RequestContext): Promise<void> {
  const p = personalizationOf(ctx);
  const user = userOf(ctx);
  const body = await ctx.readJson();
  const purposes = body['purposes'];
  if (!isJsonObject(purposes) || Object.keys(body).some((k) => k !== 'purposes'))
    throw syError(
      'SY_ERR_INVALID_REQUEST',
      'the body must be {"purposes": {"<purpose>": true|false}}',
      {
        param: 'purposes',
      },
    );
  const update: { -readonly [P in ConsentPurpose]?: boolean } = {};
  for (const [key, value] of Object.entries(purposes)) {
    if (!isPurpose(key))
      throw syError(
        'SY_ERR_INVALID_REQUEST',
        `unknown purpose ${JSON.stringify(key)}; use ${purposeList}`,
        {
          param: `purposes.${key}`,
        },
      );
    if (typeof value !== 'boolean')
      throw syError('SY_ERR_INVALID_REQUEST', `purposes.${key} must be true or false`, {
        param: `purposes.${key}`,
      });
    update[key] = value;
  }
  await withDataScope(ctx, async () => {
    // The book counts the tenant's records and refuses one more past its cap (never a revocation).
    const change = await p.consent.set(ctx.principal?.tenant ?? '', user, update, actorOf(ctx));
    await ctx.runtime.audit?.flush?.(); // on record before it is acknowledged (#14)
    sendJson(ctx, 200, changeJson(change));
  });
}

/** `POST /v1/consent/{user}/revoke` with `{"purposes": [...]}` or `{"purposes": "all"}` (default). */
export async function revokeConsent(ctx: RequestContext): Promise<void> {
  const p = personalizationOf(ctx);
  const user = userOf(ctx);
  const length = ctx.req.headers['content-length'];
  const hasBody =
    (length !== undefined && length !== '0') || ctx.req.headers['transfer-encoding'] !== undefined;
  const body = hasBody ? await ctx.readJson() : {};
  const raw = body['purposes'] ?? 'all';
  let purposes: ConsentPurpose[] | 'all';
  if (raw === 'all') purposes = 'all';
  else if (Array.isArray(raw) && raw.length > 0 && raw.every(isPurpose)) purposes = raw;
  else
    throw syError('SY_ERR_INVALID_REQUEST', `purposes must be "all" or a list of ${purposeList}`, {
      param: 'purposes',
    });
  await withDataScope(ctx, async () => {
    const tenant = ctx.principal?.tenant ?? '';
    const change = await p.consent.revoke(tenant, user, purposes, actorOf(ctx));
    await ctx.runtime.audit?.flush?.(); // on record before it is acknowledged (#14)
    sendJson(ctx, 200, changeJson(change));
  });
}
