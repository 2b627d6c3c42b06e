import { Pool, request } from '../core/undici.js';
import type {
  SearchOptions,
  UpsertResult,
  VectorFilter,
  VectorHit,
  VectorIndex,
  VectorMetric,
  VectorRecord,
  VectorShardStats,
} from '../contracts/vector-index.js';
import type { TraceSpan } from '../contracts/trace.js';
import { throwIfAborted } from '../core/deadline.js';
import { ERROR_REGISTRY, syError, type ErrorCode } from '../core/errors.js';
import { parseJson } from '../core/safe-json.js';
import { MAX_K } from './local-index.js';
import { toVector } from './vector-math.js';

export interface RemoteShardOptions {
  readonly id: string;
  readonly dims: number;
  readonly metric: VectorMetric;
  /** The gateway that holds the shard, such as `http://10.0.0.7:8080`. */
  readonly url: string;
  /** A key of that gateway; an admin key lets this node act for every tenant. */
  readonly apiKey?: string;
  /** This node's id, sent as `x-switchyard-node` so the shard applies residency to its answers. */
  readonly node: string;
  readonly timeoutMs?: number;
  readonly connections?: number;
}

export const NODE_HEADER = 'x-switchyard-node';

/**
 * A shard on another gateway node, reached over HTTP (undici Pool, `/v1/vector-shards/...`).
 * Filters travel with the request and are enforced there; an in-process predicate cannot, so
 * the client over-fetches (4×k) and applies it to what comes back.
 */
export class RemoteShard implements VectorIndex {
  readonly id: string;
  readonly dims: number;
  readonly metric: VectorMetric;
  private readonly pool: Pool;
  private readonly base: string;

  constructor(private readonly options: RemoteShardOptions) {
    this.id = options.id;
    this.dims = options.dims;
    this.metric = options.metric;
    const url = new URL(options.url);
    this.base = url.pathname.replace(/\/$/, '');
    this.pool = new Pool(url.origin, {
      connections: options.connections ?? 16,
      keepAliveTimeout: 30_000,
    });
  }

  async upsert(records: readonly VectorRecord[], signal?: AbortSignal): Promise<UpsertResult> {
    const wire = records.map((r, i) => ({
      id: r.id,
      vector: Array.from(toVector(r.vector, this.dims, `records[${i}].vector`)),
      meta: r.meta,
    }));
    return (await this.call('upsert', { records: wire }, signal)) as UpsertResult;
  }

  async delete(tenant: string, ids: readonly string[]): Promise<number> {
    if (ids.length === 0) return 0;
    return ((await this.call('delete', { tenant, ids })) as { deleted: number }).deleted;
  }

  async deleteWhere(tenant: string, filter: VectorFilter): Promise<number> {
    return ((await this.call('delete-where', { tenant, filter })) as { deleted: number }).deleted;
  }

  purgeUser(tenant: string, userId: string): Promise<number> {
    return this.deleteWhere(tenant, { userIds: [userId] });
  }

  async search(query: Float32Array, k: number, options: SearchOptions): Promise<VectorHit[]> {
    if (!Number.isInteger(k) || k < 1 || k > MAX_K)
      throw syError('SY_ERR_VECTOR_INVALID', `k must be a whole number from 1 to ${MAX_K}`);
    const q = toVector(query, this.dims, 'query');
    const predicate = options.predicate;
    const fetch = predicate === undefined ? k : Math.min(MAX_K, Math.max(4 * k, k + 20));
    const body = {
      vector: Array.from(q),
      k: fetch,
      tenant: options.tenant,
      ...(options.filter === undefined ? {} : { filter: options.filter }),
      ...(options.ef === undefined ? {} : { ef: options.ef }),
    };
    const { hits } = (await this.call('search', body, options.signal, options.span)) as {
      hits: VectorHit[];
    };
    // Defence in depth: the tenant is checked again on this side of the wire.
    const mine = hits.filter((h) => h.meta.tenant === options.tenant);
    return (predicate === undefined ? mine : mine.filter((h) => predicate(h.meta))).slice(0, k);
  }

  async get(tenant: string, id: string): Promise<VectorRecord | undefined> {
    const { record } = (await this.call('get', { tenant, id })) as {
      record: { id: string; vector: number[]; meta: VectorRecord['meta'] } | null;
    };
    return record === null ? undefined : { ...record, vector: Float32Array.from(record.vector) };
  }

  async size(): Promise<number> {
    return (await this.stats()).size;
  }

  async stats(): Promise<VectorShardStats> {
    return (await this.call('stats', {})) as VectorShardStats;
  }

  async persist(): Promise<void> {
    await this.call('persist', {});
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  private async call(
    op: string,
    body: unknown,
    signal?: AbortSignal,
    span?: TraceSpan,
  ): Promise<unknown> {
    if (signal !== undefined) throwIfAborted(signal);
    const timeout = this.options.timeoutMs ?? 5_000;
    let status: number;
    let text: string;
    try {
      const res = await request(this.pool, {
        path: `${this.base}/v1/vector-shards/${encodeURIComponent(this.id)}/${op}`,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          [NODE_HEADER]: this.options.node,
          ...(this.options.apiKey === undefined
            ? {}
            : { authorization: `Bearer ${this.options.apiKey}` }),
          // W3C trace context (#15): the shard's node continues the trace under this search.
          ...span?.headers(),
        },
        body: JSON.stringify(body),
        headersTimeout: timeout,
        bodyTimeout: timeout,
        ...(signal === undefined ? {} : { signal }),
      });
      status = res.statusCode;
      text = await res.body.text();
    } catch (err) {
      if (signal?.aborted === true) throwIfAborted(signal);
      throw syError(
        'SY_ERR_VECTOR_SHARD_UNAVAILABLE',
        `${this.id} at ${this.options.url}: ${describe(err)}`,
        {
          cause: err,
        },
      );
    }
    let json: unknown;
    try {
      json = parseJson(text);
    } catch {
      throw syError('SY_ERR_VECTOR_SHARD_UNAVAILABLE', `${this.id}: answer ${status} is not JSON`);
    }
    if (status >= 200 && status < 300) return json;
    throw remoteError(this.id, status, json);
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) return (err as NodeJS.ErrnoException).code ?? err.message;
  return 'request failed';
}

/** The remote's own error code, when it is one of ours and means the same here; else unavailable. */
function remoteError(id: string, status: number, json: unknown): Error {
  const e = (json as { error?: { code?: unknown; message?: unknown } }).error;
  const code = typeof e?.code === 'string' ? e.code : undefined;
  const message = typeof e?.message === 'string' ? e.message : `status ${status}`;
  if (
    code !== undefined &&
    code in ERROR_REGISTRY &&
    status < 500 &&
    code !== 'SY_ERR_AUTH_INVALID' &&
    code !== 'SY_ERR_AUTH_MISSING'
  ) {
    const err = syError(code as ErrorCode, '');
    err.message = message;
    return err;
  }
  return syError('SY_ERR_VECTOR_SHARD_UNAVAILABLE', `${id}: ${code ?? ''} ${message}`.trim());
}
