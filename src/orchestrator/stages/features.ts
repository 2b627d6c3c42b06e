import { z } from 'zod';
import type { JsonValue } from '../../contracts/json.js';
import type { DataTag } from '../../contracts/policy.js';
import { featureTag, type FeatureEntry } from '../../contracts/feature-source.js';
import { syError } from '../../core/errors.js';
import { asText } from '../paths.js';
import { defineKind, inSpan, result } from '../stage-kit.js';

/**
 * `features`: reads online features of one entity (the user, an item) from the feature store.
 * What the policy module does not allow to be retrieved is dropped (never an error); missing
 * features are null unless `required`, which fails the stage. Values become `features.<name>`.
 */
export const featuresKind = defineKind({
  kind: 'features',
  schema: z.strictObject({
    /** The entity id (a path), such as `attr.user` or `input.item_id`. */
    id: z.string().min(1),
    names: z.array(z.string().min(1)).min(1),
    required: z.boolean().default(false),
  }),
  build(config, b) {
    b.needs('features', b.where);
    const id = b.paths.path(config.id, `${b.where}.id`);
    return {
      id: b.id,
      kind: 'features',
      async run(ctx, state) {
        const store = ctx.services.features!;
        const entityId = asText(id(state, ctx));
        if (entityId === undefined)
          return result.fail(
            syError('SY_ERR_INVALID_REQUEST', `${config.id} is missing`, { param: config.id }),
            `no entity id at ${config.id}`,
          );
        const keys = config.names.map((feature) => ({ entityId, feature }));
        const { entries, stale } = await inSpan(
          ctx,
          'features.read',
          { 'switchyard.features': config.names },
          async () =>
            store.readMarked === undefined
              ? { entries: await store.read(ctx.tenant, keys), stale: false }
              : store.readMarked(ctx.tenant, keys),
          (read) => ({
            'switchyard.features.found': read.entries.filter((e) => e !== undefined).length,
            'switchyard.features.stale': read.stale,
          }),
        );
        const present = entries.filter((e): e is FeatureEntry => e !== undefined);
        const policy = ctx.services.policy;
        const allowed = new Set(
          policy === undefined
            ? present
            : policy.filterRetrieved(present, (e) => featureTag(ctx.tenant, e)),
        );
        const values: Record<string, JsonValue> = {};
        const featureTags: Record<string, DataTag> = {};
        let found = 0;
        for (const name of config.names) {
          const e = present.find((x) => x.feature === name);
          if (e !== undefined && allowed.has(e)) {
            values[name] = (
              Array.isArray(e.value) ? [...(e.value as number[])] : e.value
            ) as JsonValue;
            featureTags[name] = featureTag(ctx.tenant, e);
            found++;
          } else values[name] = null;
        }
        // The record keeps what was read: name, entity and version always; the value only where
        // the label allows logging it (consent included), like any other logged datum.
        ctx.noteRead?.({
          features: present.map((e) => {
            const tag = featureTag(ctx.tenant, e);
            const loggable =
              allowed.has(e) && policy !== undefined && policy.decide('logging', tag).allow;
            return {
              name: e.feature,
              entity: e.entityId,
              version: e.version,
              label: e.label,
              ...(loggable ? { value: values[e.feature] ?? null } : {}),
            };
          }),
        });
        const withheld = present.length - allowed.size;
        const reason = `${found}/${config.names.length} features${withheld > 0 ? `, ${withheld} withheld by policy` : ''}${stale ? ', stale from the local cache (feature store unavailable)' : ''}`;
        if (config.required && found < config.names.length)
          return result.fail(
            syError('SY_ERR_STAGE_FAILED', `${b.id}: required features missing`),
            reason,
          );
        // Values served stale (#17) degrade the answer: marked in the route, never cached.
        const code = stale ? 'stale' : found === config.names.length ? 'ok' : 'partial';
        return result.next(code, reason, {
          output: values,
          // The model-input rule of each later model call reads these tags (#14).
          update: { features: values, featureTags, taint: Object.values(featureTags) },
          ...(stale ? { decisions: ['stale_features' as const] } : {}),
        });
      },
    };
  },
});
