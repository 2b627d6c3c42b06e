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
import {
  admitVectors,
  guardSearch,
  mayRetrieve,
  type TenantVectorCount,
  type VectorRules,
} from './vector-rules.js';

/** Who is calling the shard API: a gateway node, with an admin key of this node. */
export interface ShardCaller {
  readonly admin: boolean;
  /** The calling gateway node (`x-switchyard-node`). */
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
 * The server side of `RemoteShard`: one shard operation on a shard this node holds, for another
 * gateway node. It acts for any tenant, so it needs an admin key; apps use the collection routes.
 * Every operation obeys the same rules as the collection routes (#13, finding 2): the policy
 * module admits each record written, guards every search and get, and the tenant's vector cap
 * holds. Residency: a node asking for records gets only data its own node may hold, and this
 * node stores only tagged data it may hold.
 */
export class ShardApi {
  constructor(
    private readonly shard: (id: string) => VectorIndex | undefined,
    private readonly clock: Clock,
    private readonly residency: RouterResidency | undefined,
    private readonly count: TenantVectorCount,
  ) {}

  async handle(
    shardId: string,
    op: string,
    body: unknown,
    caller: ShardCaller,
    rules: VectorRules,
  ): Promise<unknown> {
    if (!caller.admin)
      throw syError(
        'SY_ERR_VECTOR_FORBIDDEN',
        'the shard API is for gateway nodes and needs an admin key; apps use /v1/vectors',
      );
    const index = this.shard(shardId);
    if (index === undefined)
      throw syError('SY_ERR_VECTOR_SHARD_NOT_FOUND', JSON.stringify(shardId.slice(0, 128)));
    const { policy } = rules;
    switch (op as ShardOp) {
      case 'upsert': {
        const b = parseWire(upsertBody, body);
        const now = this.clock.wall();
        const records = b.records.map((r, i) => {
          const tenant = named(r.meta.tenant, `records[${i}].meta.tenant`);
          const j = r.meta.jurisdiction;
          if (this.residency !== undefined && !this.residency.mayHold(j)) {
            throw syError(
              'SY_ERR_RESIDENCY',
              `records[${i}] is tagged ${j ?? ''}; node ${this.residency.node} may not hold it`,
            );
          }
          return toRecord(r, tenant, now);
        });
        admitVectors(policy, records);
        // Checked and written in one tick: `upsert` of an in-process shard is synchronous.
        this.count.ensureRoom([[index, records]], rules.maxPerTenant);
        return index.upsert(records);
      }
      case 'search': {
        const b = parseWire(searchBody, body);
        const tenant = named(b.tenant, 'tenant');
        const hits = await index.search(Float32Array.from(b.vector), b.k, {
          tenant,
          ...guardSearch(policy, tenant, toFilter(b.filter)),
          ...(b.ef === undefined ? {} : { ef: b.ef }),
        });
        return {
          hits: hits.filter((h) => this.mayReach(h.meta.jurisdiction, caller)).map(hitJson),
        };
      }
      case 'delete': {
        const b = parseWire(deleteBody, body);
        return { deleted: await index.delete(named(b.tenant, 'tenant'), b.ids) };
      }
      case 'delete-where': {
        const b = parseWire(deleteWhereBody, body);
        return {
          deleted: await index.deleteWhere(named(b.tenant, 'tenant'), toFilter(b.filter) ?? {}),
        };
      }
      case 'get': {
        const b = parseWire(getBody, body);
        const tenant = named(b.tenant, 'tenant');
        const r = await index.get(tenant, b.id);
        const shown =
          r !== undefined &&
          mayRetrieve(policy, tenant, r.meta) &&
          this.mayReach(r.meta.jurisdiction, caller);
        return {
          record: shown ? { id: r.id, vector: Array.from(r.vector), meta: r.meta } : null,
        };
      }
      case 'stats':
        parseWire(emptyBody, body);
        return index.stats();
      case 'persist':
        parseWire(emptyBody, body);
        await index.persist();
        return {};
      default:
        throw syError(
          'SY_ERR_ROUTE_NOT_FOUND',
          `vector shard operation ${JSON.stringify(op.slice(0, 32))}`,
        );
    }
  }

  /** Whether data of this jurisdiction may go to the calling node. */
  private mayReach(jurisdiction: string | undefined, caller: ShardCaller): boolean {
    const residency = this.residency;
    return (
      residency === undefined ||
      caller.node === undefined ||
      residency.mayHold(jurisdiction, caller.node)
    );
  }
}

/** Node calls act for any tenant, so each names the one it acts for. */
function named(tenant: string | undefined, param: string): string {
  if (tenant === undefined)
    throw syError('SY_ERR_VECTOR_INVALID', `${param} is required for node calls`);
  return tenant;
}
