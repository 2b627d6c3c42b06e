import type { ModeState } from '../../admission/mode-controller.js';
import type { JsonObject } from '../../contracts/json.js';
import { syError } from '../../core/errors.js';
import type { RequestContext } from '../context.js';
import { sendJson } from '../respond.js';

const MODES = ['normal', 'surge', 'emergency', 'auto'] as const;
type Wanted = (typeof MODES)[number];

function requireAdmin(ctx: RequestContext): void {
  if (ctx.principal?.admin !== true)
    throw syError('SY_ERR_ADMIN_REQUIRED', `key ${ctx.principal?.fingerprint ?? 'none'}`);
}

function controller(ctx: RequestContext) {
  const ac = ctx.runtime.admission;
  if (ac === undefined) throw syError('SY_ERR_NOT_READY', 'admission control is not running');
  return ac;
}

function view(ctx: RequestContext, s: ModeState): JsonObject {
  const ac = controller(ctx);
  const sw = ac.switches();
  return {
    mode: s.mode,
    reason: s.reason,
    detail: s.detail,
    since: new Date(s.since).toISOString(),
    forced: s.forced,
    forced_until: s.forcedUntil === undefined ? null : new Date(s.forcedUntil).toISOString(),
    signals: {
      queue_delay_ms: round(s.signals.queueDelayMs),
      saturation: round(s.signals.saturation),
      error_rate: round(s.signals.errorRate),
    },
    switches: {
      deadline_scale: sw.deadline_scale,
      shed_classes: [...sw.shed_classes],
      shed_boost: sw.shed_boost,
      batch_delay_scale: sw.batch_delay_scale,
      journeys_disabled: [...sw.journeys_disabled],
      model_substitutes: { ...sw.model_substitutes },
      cache_ttl_scale: sw.cache_ttl_scale,
    },
    gates: Object.fromEntries(
      Object.entries(ac.gateStats()).map(([name, g]) => [
        name,
        {
          limit: g.limit,
          in_flight: g.inFlight,
          queued: g.queued,
          queue_delay_ms: round(g.queueDelayMs),
        },
      ]),
    ),
  };
}

const round = (n: number): number => Math.round(n * 1000) / 1000;

/** `GET /admin/mode`: the admission mode, why it is on, its switches and the gates' state. */
export function getMode(ctx: RequestContext): Promise<void> {
  requireAdmin(ctx);
  sendJson(ctx, 200, view(ctx, controller(ctx).modes.current()));
  return Promise.resolve();
}

/**
 * `PUT /admin/mode` `{"mode": "surge", "reason": "...", "ttl_s": 600}`: forces a mode (or
 * `auto` to hand it back to the signals). Needs an admin key; audited with the key's fingerprint.
 */
export async function putMode(ctx: RequestContext): Promise<void> {
  requireAdmin(ctx);
  const body = await ctx.readJson();
  const mode = body['mode'];
  if (typeof mode !== 'string' || !(MODES as readonly string[]).includes(mode))
    throw syError('SY_ERR_INVALID_REQUEST', `"mode" must be one of ${MODES.join(', ')}`, {
      param: 'mode',
    });
  const reason = body['reason'];
  if (typeof reason !== 'string' || reason.trim() === '' || reason.length > 500)
    throw syError('SY_ERR_INVALID_REQUEST', '"reason" must be a string of 1 to 500 characters', {
      param: 'reason',
    });
  const ttl = body['ttl_s'];
  if (
    ttl !== undefined &&
    (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl <= 0 || ttl > 7 * 86_400)
  )
    throw syError(
      'SY_ERR_INVALID_REQUEST',
      '"ttl_s" must be a whole number of seconds (max 7 days)',
      {
        param: 'ttl_s',
      },
    );
  for (const k of Object.keys(body))
    if (!['mode', 'reason', 'ttl_s'].includes(k))
      throw syError('SY_ERR_INVALID_REQUEST', `unknown field "${k.slice(0, 64)}"`, { param: k });
  // In force in every worker process before it is acknowledged (#17).
  const state = await controller(ctx).modes.override(
    mode as Wanted,
    `key:${ctx.principal!.fingerprint}`,
    reason.trim(),
    ttl === undefined ? undefined : ttl * 1000,
  );
  await ctx.runtime.audit?.flush?.(); // on record before it is acknowledged (#14)
  sendJson(ctx, 200, view(ctx, state));
}
