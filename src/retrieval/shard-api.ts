import type { VectorIndex } from '../contracts/vector-index.js';
import type { Clock } from '../core/clock.js';
import { syError } from '../core/errors.js';
import type { RouterResidency } from './shard-router.js';
import {
  deleteBody,
  deleteWhereBody,
  emptyBody,
  getBody,
  hitJson,
  parseWire,
  searchBody,
  toFilter,
  toRecord,
  upsertBody,
} from './shard-wire.js';

/** Who is calling the shard API: a tenant's key, or a node (admin key) acting for any tenant. */
export interface ShardCaller {
  readonly tenant: string;
  readonly admin: boolean;
  /** The calling gateway node (`x-switchyard-node`), when the caller is a node. */
  readonly node: string | undefined;
}

export const SHARD_OPS = [
  'upsert',
  'search',
  'delete',
  'delete-where',
  'get',
  'stats',
  'persist',
] as const;
export type ShardOp = (typeof SHARD_OPS)[number];

/**
 * The server side of `RemoteShard`: one shard operation on a shard this node holds. Tenancy:
 * non-admin keys act only for their own tenant. Residency: a node asking for hits gets only
 * data its own node may hold, and this node stores only tagged data it may hold.
 */
export class ShardApi {
  constructor(
    private readonly shard: (id: string) => VectorIndex | undefined,
    private readonly clock: Clock,
    private readonly residency: RouterResidency | undefined,
  ) {}

  async handle(shardId: string, op: string, body: unknown, caller: ShardCaller): Promise<unknown> {
    const index = this.shard(shardId);
    if (index === undefined)
      throw syError('SY_ERR_VECTOR_SHARD_NOT_FOUND', JSON.stringify(shardId.slice(0, 128)));
    switch (op as ShardOp) {
      case 'upsert': {
        const b = parseWire(upsertBody, body);
        const now = this.clock.wall();
        const records = b.records.map((r, i) => {
          const tenant = tenantOf(r.meta.tenant, caller, `records[${i}].meta.tenant`);
          const j = r.meta.jurisdiction;
          if (this.residency !== undefined && !this.residency.mayHold(j)) {
            throw syError(
              'SY_ERR_RESIDENCY',
              `records[${i}] is tagged ${j ?? ''}; node ${this.residency.node} may not hold it`,
            );
          }
          return toRecord(r, tenant, now);
        });
        return index.upsert(records);
      }
      case 'search': {
        const b = parseWire(searchBody, body);
        const tenant = tenantOf(b.tenant, caller, 'tenant');
        const filter = toFilter(b.filter);
        const hits = await index.search(Float32Array.from(b.vector), b.k, {
          tenant,
          ...(filter === undefined ? {} : { filter }),
          ...(b.ef === undefined ? {} : { ef: b.ef }),
        });
        const residency = this.residency;
        const node = caller.node;
        const allowed =
          residency === undefined || node === undefined
            ? hits
            : hits.filter((h) => residency.mayHold(h.meta.jurisdiction, node));
        return { hits: allowed.map(hitJson) };
      }
      case 'delete': {
        const b = parseWire(deleteBody, body);
        return { deleted: await index.delete(tenantOf(b.tenant, caller, 'tenant'), b.ids) };
      }
      case 'delete-where': {
        const b = parseWire(deleteWhereBody, body);
        const tenant = tenantOf(b.tenant, caller, 'tenant');
        return { deleted: await index.deleteWhere(tenant, toFilter(b.filter) ?? {}) };
      }
      case 'get': {
        const b = parseWire(getBody, body);
        const r = await index.get(tenantOf(b.tenant, caller, 'tenant'), b.id);
        return {
          record: r === undefined ? null : { id: r.id, vector: Array.from(r.vector), meta: r.meta },
        };
      }
      case 'stats':
        parseWire(emptyBody, body);
        adminOnly(caller, 'stats');
        return index.stats();
      case 'persist':
        parseWire(emptyBody, body);
        adminOnly(caller, 'persist');
        await index.persist();
        return {};
      default:
        throw syError(
          'SY_ERR_ROUTE_NOT_FOUND',
          `vector shard operation ${JSON.stringify(op.slice(0, 32))}`,
        );
    }
  }
}

function tenantOf(named: string | undefined, caller: ShardCaller, param: string): string {
  if (caller.admin) {
    if (named === undefined)
      throw syError('SY_ERR_VECTOR_INVALID', `${param} is required for node calls`);
    return named;
  }
  if (named !== undefined && named !== caller.tenant)
    throw syError('SY_ERR_VECTOR_FORBIDDEN', `${param} names another tenant`);
  return caller.tenant;
}

function adminOnly(caller: ShardCaller, what: string): void {
  if (!caller.admin) throw syError('SY_ERR_VECTOR_FORBIDDEN', `shard ${what} needs an admin key`);
}
