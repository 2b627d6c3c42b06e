import type {
  FeatureDefinition,
  FeatureEntry,
  FeatureKey,
  FeatureWrite,
} from '../../contracts/feature-source.js';
import { featureTag } from '../../contracts/feature-source.js';
import type { JsonObject, JsonValue } from '../../contracts/json.js';
import type { DataTag, ModelTarget } from '../../contracts/policy.js';
import { syError } from '../../core/errors.js';
import { events, publish } from '../../core/events.js';
import { isJsonObject } from '../../core/safe-json.js';
import { invalid } from '../../features/feature-catalog.js';
import { tag } from '../../privacy/redaction.js';
import type { RequestContext } from '../context.js';
import { DEGRADED_HEADER, sendJson } from '../respond.js';
import { withDataScope } from '../scope.js';
import type { Personalization } from '../runtime.js';

/** Most values in one push. */
const MAX_WRITES = 1_000;
const MAX_NAMES = 256;
const WRITE_KEYS = new Set(['entity_id', 'feature', 'value', 'user_id', 'jurisdiction', 'version']);

export function personalizationOf(ctx: RequestContext): Personalization {
  const p = ctx.runtime.personalization;
  if (p === undefined) throw syError('SY_ERR_NOT_READY', 'the feature store is not configured');
  return p;
}

/** The shape of the body: `{ "writes": [ { entity_id, feature, value, ... } ] }`. */
function parseWrites(body: JsonObject): FeatureWrite[] {
  const writes = body['writes'];
  if (!Array.isArray(writes) || writes.length === 0)
    throw syError('SY_ERR_FEATURE_INVALID', 'writes must be a non-empty array', {
      param: 'writes',
    });
  if (writes.length > MAX_WRITES)
    throw syError('SY_ERR_FEATURE_INVALID', `at most ${MAX_WRITES} writes per request`, {
      param: 'writes',
    });
  for (const key of Object.keys(body))
    if (key !== 'writes')
      throw syError('SY_ERR_FEATURE_INVALID', `unknown field ${JSON.stringify(key)}`, {
        param: key,
      });
  return writes.map((w: JsonValue, i): FeatureWrite => {
    if (!isJsonObject(w))
      throw syError('SY_ERR_FEATURE_INVALID', `writes[${i}] must be an object`, {
        param: `writes[${i}]`,
      });
    for (const key of Object.keys(w))
      if (!WRITE_KEYS.has(key))
        throw syError(
          'SY_ERR_FEATURE_INVALID',
          `writes[${i}]: unknown field ${JSON.stringify(key)}`,
          {
            param: `writes[${i}].${key}`,
          },
        );
    const text = (key: string): string | undefined => {
      const v = w[key];
      if (v === undefined) return undefined;
      if (typeof v !== 'string')
        throw syError('SY_ERR_FEATURE_INVALID', `writes[${i}].${key} must be a string`, {
          param: `writes[${i}].${key}`,
        });
      return v;
    };
    const version = w['version'];
    if (version !== undefined && typeof version !== 'number')
      throw syError('SY_ERR_FEATURE_INVALID', `writes[${i}].version must be a number`, {
        param: `writes[${i}].version`,
      });
    const userId = text('user_id');
    const jurisdiction = text('jurisdiction');
    return {
      entityId: text('entity_id') ?? '',
      feature: text('feature') ?? '',
      value: w['value'],
      ...(userId === undefined ? {} : { userId }),
      ...(jurisdiction === undefined ? {} : { jurisdiction }),
      ...(version === undefined ? {} : { version }),
    };
  });
}

/** The policy tag a write will carry once stored. */
function writeTag(tenant: string, def: FeatureDefinition, w: FeatureWrite): DataTag {
  const userId = w.userId ?? (def.entity === 'user' ? w.entityId : undefined);
  return {
    tenant,
    label: def.label,
    ...(def.purpose === undefined ? {} : { purpose: def.purpose }),
    ...(userId === undefined ? {} : { userId }),
    ...(w.jurisdiction === undefined ? {} : { jurisdiction: w.jurisdiction }),
  };
}

/**
 * `POST /v1/features`: validates every value against its definition (400 listing every problem),
 * asks the policy module to admit each one (403: consent, label or residency; nothing is stored),
 * then stores the batch.
 */
export async function pushFeatures(ctx: RequestContext): Promise<void> {
  const p = personalizationOf(ctx);
  const tenant = ctx.principal?.tenant ?? '';
  const writes = parseWrites(await ctx.readJson());
  const issues = p.features.validate(writes);
  if (issues.length > 0) throw invalid(issues);
  await withDataScope(ctx, async () => {
    const tags = writes.map((w) => writeTag(tenant, p.features.definition(w.feature)!, w));
    tags.forEach((t, i) => {
      const d = p.policy.decide('ingestion', t);
      if (!d.allow)
        throw syError(d.code, `writes[${i}] (${writes[i]!.feature}): ${d.reason}`, {
          param: `writes[${i}]`,
        });
    });
    // The store counts the tenant's values and refuses a batch past its cap, whole.
    const result = await p.features.write(tenant, writes);
    p.logger.debug(
      {
        req_id: ctx.requestId,
        tenant,
        written: result.written,
        values: writes.map((w, i) => ({ feature: w.feature, value: tag(tags[i]!, w.value) })),
      },
      'features written',
    );
    sendJson(ctx, 200, { written: result.written });
  });
}

function query(ctx: RequestContext): URLSearchParams {
  const url = ctx.req.url ?? '';
  const q = url.indexOf('?');
  return new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
}

function modelTarget(ctx: RequestContext, name: string): ModelTarget {
  const model = ctx.runtime.models.get(name);
  if (model === undefined || !ctx.runtime.keys.mayUse(ctx.principal?.tenant ?? '', name))
    throw syError('SY_ERR_MODEL_NOT_FOUND', JSON.stringify(name.slice(0, 200)), { param: 'model' });
  const d = model.backend.describe();
  return { model: name, tier: d.tier, ...(d.location === undefined ? {} : { node: d.location }) };
}

function entryJson(e: FeatureEntry): JsonObject {
  return {
    value: Array.isArray(e.value) ? [...(e.value as number[])] : (e.value as JsonValue),
    version: e.version,
    label: e.label,
    written_at: e.writtenAt,
    ...(e.expiresAt === undefined ? {} : { expires_at: e.expiresAt }),
  };
}

/**
 * `GET /v1/features/{entity}?names=a,b&model=m`: the entity's live values that the policy module
 * lets a read return (retrieval) and, with `model`, that this model may see (model input).
 * Withheld features are named with the reason, never with their values.
 */
export async function readFeatures(ctx: RequestContext): Promise<void> {
  const p = personalizationOf(ctx);
  const tenant = ctx.principal?.tenant ?? '';
  const entityId = ctx.params['entity'] ?? '';
  const q = query(ctx);
  const namesParam = q.get('names');
  const model = q.get('model');
  const target = model === null ? undefined : modelTarget(ctx, model);
  let keys: FeatureKey[] | undefined;
  if (namesParam !== null) {
    const names = namesParam.split(',').filter((n) => n !== '');
    if (names.length === 0 || names.length > MAX_NAMES)
      throw syError('SY_ERR_INVALID_REQUEST', `names must list 1 to ${MAX_NAMES} features`, {
        param: 'names',
      });
    const unknown = names.find((n) => p.features.definition(n) === undefined);
    if (unknown !== undefined)
      throw syError('SY_ERR_FEATURE_NOT_FOUND', JSON.stringify(unknown.slice(0, 200)), {
        param: 'names',
      });
    keys = names.map((feature) => ({ entityId, feature }));
  }
  await withDataScope(ctx, async () => {
    // A store fronted by a local cache (`features.store.cache`, #17) says when it answered from
    // values past their freshness because it could not read the store: the answer says so too.
    let stale = false;
    let entries;
    if (keys === undefined) entries = await p.features.readEntity(tenant, entityId);
    else if (p.features.readMarked !== undefined) {
      const marked = await p.features.readMarked(tenant, keys);
      stale = marked.stale;
      entries = marked.entries.filter((e) => e !== undefined);
    } else entries = (await p.features.read(tenant, keys)).filter((e) => e !== undefined);
    const withheld: JsonObject[] = [];
    const features: JsonObject = {};
    for (const e of entries) {
      const t = featureTag(tenant, e);
      let d = p.policy.decide('retrieval', t);
      if (d.allow && target !== undefined) d = p.policy.decide('model_input', t, target);
      if (d.allow) features[e.feature] = entryJson(e);
      else withheld.push({ feature: e.feature, code: d.code, reason: d.reason });
    }
    if (stale) publish(events.degradedAnswer, { model: model ?? '', reason: 'stale_features' });
    sendJson(
      ctx,
      200,
      { entity_id: entityId, features, withheld, ...(stale ? { stale: true } : {}) },
      stale ? { [DEGRADED_HEADER]: 'stale_features' } : undefined,
    );
  });
}

/** `GET /v1/feature-definitions`: every definition with its validation, TTL, label and lineage. */
export function listFeatureDefinitions(ctx: RequestContext): Promise<void> {
  const p = personalizationOf(ctx);
  const data = p.features.definitions().map((d): JsonObject => ({
    name: d.name,
    entity: d.entity,
    type: d.type,
    ...(d.min === undefined ? {} : { min: d.min }),
    ...(d.max === undefined ? {} : { max: d.max }),
    ...(d.values === undefined ? {} : { values: [...d.values] }),
    ...(d.maxLength === undefined ? {} : { max_length: d.maxLength }),
    ...(d.dims === undefined ? {} : { dims: d.dims }),
    ...(d.ttlMs === undefined ? {} : { ttl_ms: d.ttlMs }),
    label: d.label,
    ...(d.purpose === undefined ? {} : { purpose: d.purpose }),
    version: d.version,
    lineage: { source: d.lineage.source, transformation: d.lineage.transformation },
    ...(d.description === undefined ? {} : { description: d.description }),
  }));
  sendJson(ctx, 200, { object: 'list', data });
  return Promise.resolve();
}
