import { z } from 'zod';
import type { JsonObject } from '../../contracts/json.js';
import { syError } from '../../core/errors.js';
import { asText } from '../paths.js';
import { callModel, defineKind, inSpan, result, traced } from '../stage-kit.js';
import { vectorTag } from '../../contracts/vector-index.js';

/**
 * `retrieve`: embeds a text and searches a vector collection for the tenant's k nearest items,
 * with the policy module's filter and consent predicate applied on every shard.
 */
export const retrieveKind = defineKind({
  kind: 'retrieve',
  schema: z.strictObject({
    collection: z.string().min(1),
    embed: z.string().min(1),
    text: z.string().default('input.text'),
    k: z.number().int().min(1).max(1000).default(5),
    /**
     * The geo to route by (a path such as `attr.geo`, or `{ const: eu }`): only shards whose key
     * admits it are searched, so an edge answers from its region's local shard without asking the
     * others (#17). Absent, or missing in the request: every shard the tenant may match.
     */
    geo: z.union([z.string().min(1), z.strictObject({ const: z.string().min(1) })]).optional(),
  }),
  build(config, b) {
    b.needs('retriever', b.where);
    b.collection(config.collection, `${b.where}.collection`);
    b.model(config.embed, `${b.where}.embed`, 'embeddings');
    const text = b.paths.path(config.text, `${b.where}.text`);
    const geo =
      config.geo === undefined ? undefined : b.paths.mapping(config.geo, `${b.where}.geo`);
    const router = b.router;
    return {
      id: b.id,
      kind: 'retrieve',
      async run(ctx, state) {
        const built = traced(state, () => asText(text(state, ctx)));
        const query = built.value;
        if (query === undefined)
          return result.fail(
            syError('SY_ERR_INVALID_REQUEST', `${config.text} is missing`, { param: config.text }),
            `no text at ${config.text}`,
          );
        const opts =
          built.inputs.length === 0
            ? {}
            : {
                inputs: built.inputs,
                rebuild: (w: ReadonlySet<string>) => built.rebuild(w) ?? '',
              };
        const e = await callModel(ctx, router, config.embed, (call) =>
          ctx.services.models.embed(config.embed, query, call, opts),
        );
        if (!e.ok)
          return result.fail(e.error, `embedding failed (${e.use.outcome})`, { models: [e.use] });
        const guard = ctx.services.policy?.vectorGuard(ctx.tenant);
        const region = geo === undefined ? undefined : asText(geo(state, ctx));
        const found = await inSpan(
          ctx,
          'retrieval',
          { 'switchyard.collection': config.collection, 'switchyard.k': config.k },
          (span) =>
            ctx.services.retriever!.search(config.collection, {
              tenant: ctx.tenant,
              vector: e.value.vector,
              k: config.k,
              signal: ctx.signal,
              ...(guard === undefined ? {} : { filter: guard.filter, predicate: guard.predicate }),
              ...(region === undefined ? {} : { route: { geo: region } }),
              ...(span === undefined ? {} : { span }),
            }),
          (r) => ({
            'switchyard.shards': r.shards.map((s) => s.shard),
            'switchyard.shards.failed': r.shards
              .filter((s) => s.outcome !== 'ok')
              .map((s) => s.shard),
            'switchyard.hits': r.hits.length,
            'switchyard.partial': r.partial,
          }),
        );
        ctx.noteRead?.({
          shards: found.shards.map((s) => ({
            collection: config.collection,
            shard: s.shard,
            node: s.node,
            hits: s.hits,
            outcome: s.outcome,
          })),
        });
        const hits: JsonObject[] = found.hits.map((h) => ({
          id: h.id,
          distance: h.distance,
          ...(h.meta.attrs === undefined ? {} : { attrs: { ...h.meta.attrs } }),
        }));
        return result.next(
          found.partial ? 'partial' : 'ok',
          `${hits.length} hits from ${found.shards.length} shard(s)${found.partial ? ', partial' : ''}`,
          {
            output: { hits, partial: found.partial },
            models: [e.use],
            // The hits are personal data of their own: what may reach a model is decided per call.
            update: { taint: found.hits.map((h) => vectorTag(h.meta)) },
          },
        );
      },
    };
  },
});
