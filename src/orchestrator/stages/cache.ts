import { hash } from 'node:crypto';
import { z } from 'zod';
import type { CacheScope } from '../../contracts/cache.js';
import type { JsonObject, JsonValue } from '../../contracts/json.js';
import type { ModelUse, StageContext } from '../../contracts/stage.js';
import { syError } from '../../core/errors.js';
import { asText } from '../paths.js';
import { callModel, defineKind, inSpan, result, traced } from '../stage-kit.js';

const schema = z.strictObject({
  /** `lookup` answers fresh hits; `stale` serves the stale answer a lookup saw (stale-if-error). */
  mode: z.enum(['lookup', 'stale']).default('lookup'),
  /** What identifies the request (a mapping; default: the whole input). */
  key: z.unknown().optional(),
  exact: z.boolean().default(true),
  semantic: z
    .strictObject({
      /** The embedding model (any model serving embeddings). */
      embed: z.string().min(1),
      text: z.string().default('input.text'),
      /** Lowest cosine similarity that counts as the same question. */
      threshold: z.number().min(-1).max(1),
    })
    .optional(),
  ttl_ms: z.number().int().positive().default(300_000),
  /** How long after the TTL an answer may still be served by a `stale` stage. */
  stale_ms: z.number().int().nonnegative().default(0),
  /** Models whose current version is part of the key; default: every model the journey uses. */
  versions_of: z.array(z.string().min(1)).optional(),
});

/**
 * `cache`: exact and semantic response cache. Entries live per tenant in a namespace of the
 * journey and the current versions of its models, so after a new model version neither lookup
 * serves an old version's answer; the exact key is the normalized request. On a miss the stage asks the runner to write the
 * journey's answer back (undegraded answers only).
 */
export const cacheKind = defineKind({
  kind: 'cache',
  schema,
  build(config, b) {
    const key = b.paths.mapping(config.key ?? 'input', `${b.where}.key`);
    if (config.semantic !== undefined)
      b.model(config.semantic.embed, `${b.where}.semantic.embed`, 'embeddings');
    config.versions_of?.forEach((m, i) =>
      b.model(m, `${b.where}.versions_of[${i}]`, ['chat', 'embeddings', 'infer', 'classify']),
    );
    const semText =
      config.semantic === undefined
        ? undefined
        : b.paths.path(config.semantic.text, `${b.where}.semantic.text`);
    const router = b.router;
    // The journey's models are known only once every stage is compiled.
    let versionModels: readonly string[] | undefined = config.versions_of;
    const versioned = (): readonly string[] => (versionModels ??= [...b.journeyModels].sort());

    if (config.mode === 'stale') {
      return {
        id: b.id,
        kind: 'cache',
        run: (_ctx, state) => {
          const stale = state.stale;
          if (stale === undefined)
            return Promise.resolve(
              result.fail(
                syError('SY_ERR_STAGE_FAILED', `${b.id}: no stale answer`),
                'no stale answer to serve',
              ),
            );
          return Promise.resolve(
            result.respond(
              'stale',
              `stale answer, ${Math.round(stale.ageMs / 1000)}s old`,
              stale.value['output'] ?? null,
              {
                decisions: ['stale_served'],
                cacheable: false,
              },
            ),
          );
        },
      };
    }

    return {
      id: b.id,
      kind: 'cache',
      async run(ctx, state) {
        const namespace = `${state.journey}#${versionsTag(versioned(), ctx)}`;
        const scope: CacheScope = { tenant: ctx.tenant, namespace };
        const cache = ctx.services.cache;
        const k = cacheKey(normalize(key(state, ctx) ?? null));
        let stale: { value: JsonObject; ageMs: number } | undefined;
        const wall = ctx.wall();
        if (config.exact) {
          const hit = await inSpan(
            ctx,
            'cache.lookup',
            { 'switchyard.cache.kind': 'exact', 'switchyard.cache.namespace': namespace },
            () => cache.get(scope, k, { allowStale: config.stale_ms > 0 }),
            (h) => ({
              'switchyard.cache.result': h === undefined ? 'miss' : h.stale ? 'stale' : 'hit',
            }),
          );
          if (hit !== undefined && !hit.stale)
            return result.respond(
              'hit',
              `exact hit, ${Math.round((wall - hit.entry.storedAt) / 1000)}s old`,
              hit.entry.value['output'] ?? null,
              {
                decisions: ['cache_hit'],
                cacheable: false,
              },
            );
          if (hit !== undefined)
            stale = { value: hit.entry.value, ageMs: wall - hit.entry.storedAt };
        }
        let vector: Float32Array | undefined;
        const models: ModelUse[] = [];
        let reason = config.exact ? 'exact miss' : '';
        if (config.semantic !== undefined) {
          const built = traced(state, () => asText(semText!(state, ctx)));
          const text = built.value;
          if (text !== undefined) {
            const embed = config.semantic.embed;
            const opts =
              built.inputs.length === 0
                ? {}
                : {
                    inputs: built.inputs,
                    rebuild: (w: ReadonlySet<string>) => built.rebuild(w) ?? '',
                  };
            const r = await callModel(ctx, router, embed, (call) =>
              ctx.services.models.embed(embed, text, call, opts),
            );
            models.push(r.use);
            if (r.ok) {
              vector = r.value.vector;
              const v = vector;
              const near = await inSpan(
                ctx,
                'cache.lookup',
                { 'switchyard.cache.kind': 'semantic', 'switchyard.cache.namespace': namespace },
                () =>
                  cache.nearest(scope, v, {
                    threshold: config.semantic!.threshold,
                    allowStale: config.stale_ms > 0,
                  }),
                (n) => ({
                  'switchyard.cache.result':
                    n.hit === undefined ? 'miss' : n.hit.stale ? 'stale' : 'hit',
                  'switchyard.cache.similarity': n.best,
                }),
              );
              if (near.hit !== undefined && !near.hit.stale)
                return result.respond(
                  'semantic-hit',
                  `similarity ${near.hit.similarity.toFixed(3)} ≥ ${config.semantic.threshold}`,
                  near.hit.entry.value['output'] ?? null,
                  { models, decisions: ['semantic_hit'], cacheable: false },
                );
              if (near.hit !== undefined && stale === undefined)
                stale = { value: near.hit.entry.value, ageMs: wall - near.hit.entry.storedAt };
              reason += `${reason === '' ? '' : ', '}nearest ${near.best === undefined ? 'none' : near.best.toFixed(3)} < ${config.semantic.threshold}`;
            } else
              reason += `${reason === '' ? '' : ', '}embedding failed (${r.use.outcome}): semantic lookup skipped`;
          }
        }
        return result.next('miss', reason, {
          models,
          update: {
            cacheWrite: {
              namespace,
              key: k,
              ttlMs: config.ttl_ms,
              staleMs: config.stale_ms,
              ...(vector === undefined ? {} : { vector }),
            },
            ...(stale === undefined ? {} : { stale }),
          },
        });
      },
    };
  },
});

/** Strings trimmed with whitespace collapsed (NFKC), objects with sorted keys. */
export function normalize(v: JsonValue): JsonValue {
  if (typeof v === 'string') return v.normalize('NFKC').trim().replace(/\s+/g, ' ');
  if (Array.isArray(v)) return v.map(normalize);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, JsonValue> = {};
    for (const k of Object.keys(v).sort()) out[k] = normalize(v[k]!);
    return out;
  }
  return v;
}

/** Digests of version lists seen: versions change rarely, requests ask every time (hot path). */
const TAGS = new Map<string, string>();

/** A short digest of the current versions of `models`. */
function versionsTag(models: readonly string[], ctx: StageContext): string {
  let versions = '';
  for (const m of models) versions += `\u0000${m}@${ctx.services.models.info(m)?.version ?? '?'}`;
  let tag = TAGS.get(versions);
  if (tag === undefined) {
    tag = hash('sha256', versions, 'base64url').slice(0, 12);
    if (TAGS.size >= 1024) TAGS.clear();
    TAGS.set(versions, tag);
  }
  return tag;
}

/** The key of a normalized input: sha256 in one shot (no Hash object per request). */
function cacheKey(value: JsonValue): string {
  return hash('sha256', JSON.stringify(value), 'base64url');
}
