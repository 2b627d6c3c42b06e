import type { JsonObject } from '../../contracts/json.js';
import type {
  ExperimentSpec,
  ReleaseStage,
  VersionRecord,
} from '../../contracts/registry-store.js';
import { experimentSchema } from '../../config/schema.js';
import { isSwitchyardError, syError } from '../../core/errors.js';
import { events, publish } from '../../core/events.js';
import type { ReleaseHost } from '../../release/release-host.js';
import type { RequestContext } from '../context.js';
import { sendJson } from '../respond.js';

/**
 * The release admin API (#6): registry (list, sign, promote, retire), experiments (CRUD, status,
 * stats), audit and exposures; and `POST /v1/feedback` for bandit and experiment rewards keyed
 * by inference id. Admin routes need an admin key; every change is audited with the key.
 */

function host(ctx: RequestContext): ReleaseHost {
  const h = ctx.runtime.release;
  if (h === undefined)
    throw syError('SY_ERR_RELEASE_UNAVAILABLE', 'configure `state:` to enable it');
  return h;
}

function admin(ctx: RequestContext): string {
  if (ctx.principal?.admin !== true)
    throw syError('SY_ERR_ADMIN_REQUIRED', `key ${ctx.principal?.fingerprint ?? 'none'}`);
  return `key:${ctx.principal.fingerprint}`;
}

function reasonOf(body: JsonObject): string {
  const r = body['reason'];
  if (typeof r !== 'string' || r.trim() === '' || r.length > 500)
    throw syError('SY_ERR_INVALID_REQUEST', '"reason" must be a string of 1 to 500 characters', {
      param: 'reason',
    });
  return r.trim();
}

const param = (ctx: RequestContext, name: string): string => ctx.params[name] ?? '';

function query(ctx: RequestContext): URLSearchParams {
  const url = ctx.req.url ?? '';
  const q = url.indexOf('?');
  return new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
}

const versionView = (v: VersionRecord): JsonObject => ({
  model: v.model,
  version: v.version,
  stage: v.stage,
  digest: v.digest,
  size_bytes: v.sizeBytes,
  files: [...v.files],
  signed: v.signature !== undefined,
  key_id: v.keyId ?? null,
  created_at: new Date(v.createdAt).toISOString(),
  updated_at: new Date(v.updatedAt).toISOString(),
  retire_at: v.retireAt === undefined ? null : new Date(v.retireAt).toISOString(),
  metadata: { ...v.metadata },
});

const json = (x: unknown): JsonObject => JSON.parse(JSON.stringify(x)) as JsonObject;

/** `GET /admin/models`: every model with its versions and stages. */
export async function listRegistry(ctx: RequestContext): Promise<void> {
  admin(ctx);
  const h = host(ctx);
  const versions = await h.store.listVersions();
  const models = await h.store.listModels();
  sendJson(ctx, 200, {
    models: models.map((m) => ({
      name: m.name,
      description: m.description,
      versions: versions.filter((v) => v.model === m.name).map(versionView),
    })),
  });
}

/** `POST /admin/models/:model/versions/:version/signature` `{key_id, signature, reason}`. */
export async function attachSignature(ctx: RequestContext): Promise<void> {
  const actor = admin(ctx);
  const body = await ctx.readJson();
  const keyId = body['key_id'];
  const sig = body['signature'];
  if (typeof keyId !== 'string' || typeof sig !== 'string' || sig.length > 200)
    throw syError('SY_ERR_INVALID_REQUEST', '"key_id" and base64 "signature" are required');
  const v = await host(ctx).registry.attachSignature(
    param(ctx, 'model'),
    param(ctx, 'version'),
    keyId,
    sig,
    {
      actor,
      reason: reasonOf(body),
    },
  );
  sendJson(ctx, 200, versionView(v));
}

/** `POST /admin/models/:model/versions/:version/promote` `{stage, reason, force?}`. */
export async function promoteVersion(ctx: RequestContext): Promise<void> {
  const actor = admin(ctx);
  const body = await ctx.readJson();
  const stage = body['stage'];
  if (typeof stage !== 'string')
    throw syError('SY_ERR_INVALID_REQUEST', '"stage" is required', { param: 'stage' });
  const v = await host(ctx).registry.promote(
    param(ctx, 'model'),
    param(ctx, 'version'),
    stage as ReleaseStage,
    {
      actor,
      reason: reasonOf(body),
      force: body['force'] === true,
    },
  );
  sendJson(ctx, 200, versionView(v));
}

/** `POST /admin/models/:model/versions/:version/retire` `{reason, at?, force?}`. */
export async function retireVersion(ctx: RequestContext): Promise<void> {
  const actor = admin(ctx);
  const body = await ctx.readJson();
  const at = body['at'];
  let retireAt: number | undefined;
  if (at !== undefined) {
    retireAt = typeof at === 'string' ? Date.parse(at) : Number.NaN;
    if (!Number.isFinite(retireAt))
      throw syError('SY_ERR_INVALID_REQUEST', '"at" must be an ISO 8601 date', { param: 'at' });
  }
  const v = await host(ctx).registry.retire(param(ctx, 'model'), param(ctx, 'version'), {
    actor,
    reason: reasonOf(body),
    force: body['force'] === true,
    ...(retireAt === undefined ? {} : { retireAt }),
  });
  sendJson(ctx, 200, versionView(v));
}

/**
 * `GET /admin/experiments`. Read through the store's change counter first: a change made by
 * another worker process or replica is shown at once, whichever one answers (#17).
 */
export async function listExperiments(ctx: RequestContext): Promise<void> {
  admin(ctx);
  await host(ctx).manager.refresh();
  sendJson(ctx, 200, {
    experiments: json(host(ctx).manager.experiments()),
  });
}

/** `POST /admin/experiments` with an experiment definition (as under `experiments:`) and `reason`. */
export async function createExperiment(ctx: RequestContext): Promise<void> {
  const actor = admin(ctx);
  const body = await ctx.readJson();
  const reason = reasonOf(body);
  const { reason: _r, ...rest } = body;
  void _r;
  const parsed = experimentSchema.safeParse(rest);
  if (!parsed.success)
    throw syError(
      'SY_ERR_REGISTRY_INVALID',
      parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
    );
  const rec = await host(ctx).manager.create(parsed.data as ExperimentSpec, { actor, reason });
  sendJson(ctx, 201, json(rec));
}

/** `GET /admin/experiments/:id` (read through, like the list). */
export async function getExperiment(ctx: RequestContext): Promise<void> {
  admin(ctx);
  await host(ctx).manager.refresh();
  const r = host(ctx).manager.experiment(param(ctx, 'id'));
  if (r === undefined)
    throw syError('SY_ERR_REGISTRY_NOT_FOUND', `experiment ${param(ctx, 'id').slice(0, 64)}`);
  sendJson(ctx, 200, json(r));
}

const STATUSES = ['running', 'paused', 'rolled_back', 'completed'] as const;

/** `POST /admin/experiments/:id/status` `{status, reason}`: pause, resume, roll back, complete. */
export async function setExperimentStatus(ctx: RequestContext): Promise<void> {
  const actor = admin(ctx);
  const body = await ctx.readJson();
  const status = body['status'];
  if (typeof status !== 'string' || !(STATUSES as readonly string[]).includes(status))
    throw syError('SY_ERR_INVALID_REQUEST', `"status" must be one of ${STATUSES.join(', ')}`, {
      param: 'status',
    });
  const r = await host(ctx).manager.setStatus(
    param(ctx, 'id'),
    status as (typeof STATUSES)[number],
    {
      actor,
      reason: reasonOf(body),
    },
  );
  sendJson(ctx, 200, json(r));
}

/** `DELETE /admin/experiments/:id` (audited; the reason is a query parameter). */
export async function deleteExperiment(ctx: RequestContext): Promise<void> {
  const actor = admin(ctx);
  const reason = query(ctx).get('reason') ?? 'deleted via admin API';
  await host(ctx).manager.remove(param(ctx, 'id'), { actor, reason: reason.slice(0, 500) });
  sendJson(ctx, 200, { deleted: param(ctx, 'id') });
}

/** `GET /admin/experiments/:id/stats`: exposures, metrics, CIs, SRM and sequential tests. */
export async function experimentStats(ctx: RequestContext): Promise<void> {
  admin(ctx);
  sendJson(ctx, 200, json(await host(ctx).manager.stats(param(ctx, 'id'))));
}

/** `GET /admin/release/audit?action=&target=&limit=`. */
export async function releaseAudit(ctx: RequestContext): Promise<void> {
  admin(ctx);
  const q = query(ctx);
  const limit = Number(q.get('limit') ?? 100);
  const entries = await host(ctx).store.listAudit({
    ...(q.get('action') === null ? {} : { action: q.get('action')! }),
    ...(q.get('target') === null ? {} : { target: q.get('target')! }),
    limit: Number.isFinite(limit) ? limit : 100,
  });
  sendJson(ctx, 200, { entries: json(entries) });
}

/** `GET /admin/exposures?inference_id=&experiment=`: what served an inference, to replay it. */
export async function listExposures(ctx: RequestContext): Promise<void> {
  admin(ctx);
  const q = query(ctx);
  await host(ctx).manager.flush();
  const rows = await host(ctx).store.listExposures({
    ...(q.get('inference_id') === null ? {} : { inferenceId: q.get('inference_id')! }),
    ...(q.get('experiment') === null ? {} : { experiment: q.get('experiment')! }),
    limit: 100,
  });
  sendJson(ctx, 200, { exposures: json(rows) });
}

/** `POST /v1/feedback` `{inference_id, reward}`: a reward in [0, 1] (or a boolean). */
export async function postFeedback(ctx: RequestContext): Promise<void> {
  const body = await ctx.readJson();
  const id = body['inference_id'];
  let reward = body['reward'];
  if (typeof reward === 'boolean') reward = reward ? 1 : 0;
  if (typeof id !== 'string' || id === '' || id.length > 128)
    throw syError('SY_ERR_INVALID_REQUEST', '"inference_id" is required', {
      param: 'inference_id',
    });
  if (typeof reward !== 'number' || !(reward >= 0 && reward <= 1))
    throw syError('SY_ERR_INVALID_REQUEST', '"reward" must be a number in [0, 1] or a boolean', {
      param: 'reward',
    });
  // The cost ledger joins the outcome to the request's journey, tenant and arm, on any replica
  // and once (#15). Its claim also decides the experiment's reward: credited here, wherever the
  // inference was served, only when the ledger counted this feedback as the first. Without the
  // ledger's answer (no ledger, or it knows no such request), the release manager alone decides,
  // on the replica that served the inference.
  const tenant = ctx.principal?.tenant ?? '';
  // A client that goes away stops the wait for a record not yet written (no answer is owed).
  const gone = new AbortController();
  ctx.onEnd(() => gone.abort());
  const outcomes = ctx.runtime.costs?.outcomes;
  const seen = await outcomes?.peek(tenant, id, gone.signal);
  let recorded = false;
  let r: { experiment: string; variant: string } | undefined;
  if (outcomes === undefined || seen?.key === undefined) {
    if (outcomes !== undefined) publish(events.feedbackOutcome, { result: 'unknown' });
    r = host(ctx).manager.feedback(id, reward, tenant);
  } else {
    // Where the reward goes is found before the ledger counts the feedback: once counted, a
    // retry is a duplicate. A reward owed but not creditable now (its exposure unreadable or not
    // yet written) is a retryable 503 with nothing counted, never a reward lost, until
    // `release.exposure_wait_s` after the request (its exposure is then taken for lost).
    const target = seen.counted
      ? undefined
      : await ctx.runtime.release?.manager.feedbackTarget(
          id,
          tenant,
          seen.key.experiment !== '',
          gone.signal,
          seen.at,
        );
    const ledger = await outcomes.claim(tenant, id, reward, gone.signal, seen);
    publish(events.feedbackOutcome, { result: ledger.result });
    recorded = ledger.result === 'counted';
    try {
      r = host(ctx).manager.claimedFeedback(id, reward, tenant, recorded, target);
    } catch (err) {
      const unknown =
        isSwitchyardError(err) &&
        (err.code === 'SY_ERR_INFERENCE_UNKNOWN' || err.code === 'SY_ERR_RELEASE_UNAVAILABLE');
      if (!recorded || !unknown) throw err;
    }
  }
  sendJson(ctx, 200, {
    accepted: true,
    ...(r === undefined ? {} : { experiment: r.experiment, variant: r.variant }),
    recorded,
  });
}
