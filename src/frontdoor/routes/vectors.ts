import type { PolicyModule } from '../../contracts/policy.js';
import type { VectorFilter, VectorMetadata } from '../../contracts/vector-index.js';
import { syError } from '../../core/errors.js';
import { vectorTag } from '../../privacy/policy-engine.js';
import { intersectFilters } from '../../retrieval/filter.js';
import { NODE_HEADER } from '../../retrieval/remote-shard.js';
import {
  deleteBody,
  hitJson,
  parseWire,
  searchBody,
  toFilter,
  toRecord,
  toRoute,
  upsertBody,
} from '../../retrieval/shard-wire.js';
import { childSizes } from '../../retrieval/shard-totals.js';
import type { VectorHost } from '../../retrieval/vector-host.js';
import type { RequestContext } from '../context.js';
import { sendJson } from '../respond.js';

/**
 * The vector HTTP API (#7). Apps use the collection routes, always for their own tenant; other
 * gateway nodes use the shard routes (`RemoteShard`), with an admin key to act for any tenant.
 * When the policy module is configured, ingestion asks it to admit each record and searches
 * carry its retrieval guard (filter and predicate).
 */

function hostOf(ctx: RequestContext): VectorHost {
  const v = ctx.runtime.vectors;
  if (v === undefined)
    throw syError('SY_ERR_VECTOR_COLLECTION_NOT_FOUND', 'no collections are configured');
  return v;
}

function send(ctx: RequestContext, body: unknown): void {
  sendJson(ctx, 200, Buffer.from(JSON.stringify(body)));
}

function tenantOf(ctx: RequestContext): string {
  return ctx.principal?.tenant ?? '';
}

function policyOf(ctx: RequestContext): PolicyModule | undefined {
  return ctx.runtime.personalization?.policy;
}

/** Adds the policy module's retrieval guard to a search. */
export function guarded(
  policy: PolicyModule | undefined,
  tenant: string,
  filter: VectorFilter | undefined,
): { filter?: VectorFilter; predicate?: (m: VectorMetadata) => boolean } {
  if (policy === undefined) return filter === undefined ? {} : { filter };
  const guard = policy.vectorGuard(tenant);
  const merged = intersectFilters(filter, guard.filter);
  return { ...(merged === undefined ? {} : { filter: merged }), predicate: guard.predicate };
}

/** `GET /v1/vectors`: the collections and their shards (no URLs or keys). */
export function listCollections(ctx: RequestContext): Promise<void> {
  const host = hostOf(ctx);
  send(ctx, {
    object: 'list',
    data: host.router.collections().map((c) => ({
      name: c.name,
      dims: c.dims,
      metric: c.metric,
      shards: c.shards.map((s) => ({
        id: s.id,
        node: s.location.node,
        kind: s.location.kind,
        key: s.key,
      })),
    })),
  });
  return Promise.resolve();
}

/** `POST /v1/vectors/:collection/upsert` `{ records: [{ id, vector, meta }] }`. */
export async function upsertVectors(ctx: RequestContext): Promise<void> {
  const host = hostOf(ctx);
  const collection = ctx.params['collection'] ?? '';
  const body = parseWire(upsertBody, await ctx.readJson());
  const tenant = tenantOf(ctx);
  const now = host.wall();
  const policy = policyOf(ctx);
  const records = body.records.map((r, i) => {
    if (r.meta.tenant !== undefined && r.meta.tenant !== tenant)
      throw syError('SY_ERR_VECTOR_FORBIDDEN', `records[${i}].meta.tenant names another tenant`);
    const rec = toRecord(r, tenant, now);
    // The policy module's own reading of a vector's tag (its purpose rides in `attrs.purpose`).
    policy?.admit(vectorTag(rec.meta));
    return rec;
  });
  const call = ctx.startDeadline();
  send(ctx, await host.router.upsert(collection, records, call.signal));
}

/** `POST /v1/vectors/:collection/search` `{ vector, k, filter?, route? }`. */
export async function searchVectors(ctx: RequestContext): Promise<void> {
  const host = hostOf(ctx);
  const collection = ctx.params['collection'] ?? '';
  const body = parseWire(searchBody, await ctx.readJson());
  const tenant = tenantOf(ctx);
  if (body.tenant !== undefined && body.tenant !== tenant)
    throw syError('SY_ERR_VECTOR_FORBIDDEN', 'tenant names another tenant');
  const route = toRoute(body.route);
  const call = ctx.startDeadline();
  const result = await host.router.search(collection, {
    vector: body.vector,
    k: body.k,
    tenant,
    ...guarded(policyOf(ctx), tenant, toFilter(body.filter)),
    ...(route === undefined ? {} : { route }),
    ...(body.ef === undefined ? {} : { ef: body.ef }),
    signal: call.signal,
  });
  send(ctx, { hits: result.hits.map(hitJson), shards: result.shards, partial: result.partial });
}

/** `POST /v1/vectors/:collection/delete` `{ ids }`. */
export async function deleteVectors(ctx: RequestContext): Promise<void> {
  const host = hostOf(ctx);
  const body = parseWire(deleteBody, await ctx.readJson());
  const tenant = tenantOf(ctx);
  if (body.tenant !== undefined && body.tenant !== tenant)
    throw syError('SY_ERR_VECTOR_FORBIDDEN', 'tenant names another tenant');
  send(ctx, {
    deleted: await host.router.delete(ctx.params['collection'] ?? '', tenant, body.ids),
  });
}

/** `GET /v1/vectors/:collection/stats` (admin keys): size, QPS, p95 and recall per shard. */
export async function vectorStats(ctx: RequestContext): Promise<void> {
  if (ctx.principal?.admin !== true)
    throw syError('SY_ERR_VECTOR_FORBIDDEN', 'stats need an admin key');
  const host = hostOf(ctx);
  send(ctx, { shards: await host.router.stats(ctx.params['collection'] ?? '') });
}

/**
 * `POST /admin/vectors/:collection/shards/:shard/split` (admin keys): rebalances a hot local
 * shard into two, online; queries keep being answered. Answers the children with their sizes.
 */
export async function splitVectorShard(ctx: RequestContext): Promise<void> {
  if (ctx.principal?.admin !== true)
    throw syError('SY_ERR_VECTOR_FORBIDDEN', 'rebalancing needs an admin key');
  const host = hostOf(ctx);
  const collection = ctx.params['collection'] ?? '';
  const shard = ctx.params['shard'] ?? '';
  send(ctx, { split: shard, shards: await childSizes(await host.split(collection, shard)) });
}

/** `POST /v1/vector-shards/:shard/:op`: the shard API `RemoteShard` calls. */
export async function shardOperation(ctx: RequestContext): Promise<void> {
  const host = hostOf(ctx);
  const body = await ctx.readJson();
  const node = ctx.req.headers[NODE_HEADER];
  const result = await host.api.handle(ctx.params['shard'] ?? '', ctx.params['op'] ?? '', body, {
    tenant: tenantOf(ctx),
    admin: ctx.principal?.admin === true,
    node: typeof node === 'string' && node !== '' ? node : undefined,
  });
  send(ctx, result);
}
