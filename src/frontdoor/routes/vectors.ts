import { syError, toSwitchyardError } from '../../core/errors.js';
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
import type { VectorRules } from '../../retrieval/vector-rules.js';
import type { RequestContext } from '../context.js';
import { sendJson } from '../respond.js';
import { withDataScope } from '../scope.js';

/**
 * The vector HTTP API (#7). Apps use the collection routes, always for their own tenant; other
 * gateway nodes use the shard routes (`RemoteShard`), with an admin key to act for any tenant.
 * Both obey one set of rules (`VectorRules`, enforced in retrieval/): the policy module admits
 * every record written and guards every read, and the tenant's vector cap holds. Both pass
 * admission (quotas, the mode's shed classes, CPU overload) like a model call (#13).
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

/** The rules of this request's snapshot: its policy module and the tenant vector cap. */
function rulesOf(ctx: RequestContext): VectorRules {
  return {
    policy: ctx.runtime.personalization?.policy,
    maxPerTenant: ctx.runtime.snapshot.config.vectors.max_per_tenant,
  };
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
  const records = body.records.map((r, i) => {
    if (r.meta.tenant !== undefined && r.meta.tenant !== tenant)
      throw syError('SY_ERR_VECTOR_FORBIDDEN', `records[${i}].meta.tenant names another tenant`);
    return toRecord(r, tenant, now);
  });
  await withDataScope(ctx, async (scope) => {
    send(ctx, await host.upsert(collection, records, rulesOf(ctx), scope.signal));
  });
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
  const filter = toFilter(body.filter);
  await withDataScope(ctx, async (scope) => {
    // The retrieval's span (#15): each shard searched is a child; remote shards continue it.
    const span = ctx.span?.child('retrieval', 'internal', {
      'switchyard.collection': collection,
      'switchyard.k': body.k,
    });
    let result;
    try {
      result = await host.search(
        collection,
        {
          vector: body.vector,
          k: body.k,
          tenant,
          ...(filter === undefined ? {} : { filter }),
          ...(route === undefined ? {} : { route }),
          ...(body.ef === undefined ? {} : { ef: body.ef }),
          signal: scope.signal,
          ...(span === undefined ? {} : { span }),
        },
        rulesOf(ctx),
      );
      span?.setAll({
        'switchyard.shards': result.shards.map((s) => s.shard),
        'switchyard.hits': result.hits.length,
        'switchyard.partial': result.partial,
      });
    } catch (err) {
      const e = toSwitchyardError(err);
      span?.fail(e.code, e.message);
      throw err;
    } finally {
      span?.end();
    }
    send(ctx, { hits: result.hits.map(hitJson), shards: result.shards, partial: result.partial });
  });
}

/** `POST /v1/vectors/:collection/delete` `{ ids }`. */
export async function deleteVectors(ctx: RequestContext): Promise<void> {
  const host = hostOf(ctx);
  const body = parseWire(deleteBody, await ctx.readJson());
  const tenant = tenantOf(ctx);
  if (body.tenant !== undefined && body.tenant !== tenant)
    throw syError('SY_ERR_VECTOR_FORBIDDEN', 'tenant names another tenant');
  await withDataScope(ctx, async () => {
    send(ctx, {
      deleted: await host.router.delete(ctx.params['collection'] ?? '', tenant, body.ids),
    });
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

/** `POST /v1/vector-shards/:shard/:op`: the shard API `RemoteShard` calls (admin keys only). */
export async function shardOperation(ctx: RequestContext): Promise<void> {
  const host = hostOf(ctx);
  const body = await ctx.readJson();
  const node = ctx.req.headers[NODE_HEADER];
  const caller = {
    admin: ctx.principal?.admin === true,
    node: typeof node === 'string' && node !== '' ? node : undefined,
  };
  await withDataScope(ctx, async () => {
    const shard = ctx.params['shard'] ?? '';
    send(ctx, await host.api.handle(shard, ctx.params['op'] ?? '', body, caller, rulesOf(ctx)));
  });
}
