import type { Redis } from 'ioredis';
import { openRedis, redisReady } from '../state/redis.js';
import type {
  FeatureDefinition,
  FeatureEntry,
  FeatureIssue,
  FeatureKey,
  FeatureSource,
  FeatureWrite,
  FeatureWriteResult,
} from '../contracts/feature-source.js';
import type { Logger } from '../contracts/logger.js';
import type { ConsentPurpose } from '../contracts/policy.js';
import type { Clock } from '../core/clock.js';
import { isSwitchyardError, syError } from '../core/errors.js';
import { ensureRoom } from '../core/tenant-storage.js';
import { FeatureCatalog } from './feature-catalog.js';
import { featureOp, featureWriteFailed } from './feature-events.js';
import { DROP_LUA, PURGE_LUA, STORED_LUA, WRITE_LUA } from './redis-feature-scripts.js';

export interface RedisFeatureStoreOptions {
  readonly url: string;
  /** Prefix of every key (separate per deployment, or per test run). */
  readonly prefix: string;
  readonly definitions: readonly FeatureDefinition[];
  readonly clock: Clock;
  /** A command slower than this is an outage (TOOLCHAIN.md: the ioredis trap). */
  readonly commandTimeoutMs: number;
  readonly logger?: Logger;
  /** Most values one tenant may hold (`features.max_values_per_tenant`); absent: no cap. */
  readonly maxValuesPerTenant?: number;
}

interface StoreCommands {
  syFeatureWrite(...keysAndArgs: string[]): Promise<[number, number, number]>;
  syFeatureStored(...keysAndArgs: string[]): Promise<number>;
  syFeatureDrop(...keysAndArgs: string[]): Promise<number>;
  syFeaturePurge(...keysAndArgs: string[]): Promise<number>;
}

/**
 * The scaled online feature store: one Redis hash per entity (`<prefix>e:<tenant>:<entity>`,
 * field = feature, value = the JSON entry) and a set per user naming the entities holding the
 * user's values (`<prefix>u:<tenant>:<user>`), which makes a consent purge one atomic script.
 * Writes, purges and lazy drops are scripts too, keeping each tenant's count of values exact
 * (`redis-feature-scripts.ts`): a batch past the tenant's cap is refused whole.
 * TTLs are checked against the injected clock on read (Redis 7.0 has no per-field expiry);
 * expired fields are deleted lazily. ioredis never queues or retries: a slow or absent Redis is
 * `SY_ERR_FEATURE_STORE_UNAVAILABLE` at once.
 */
export class RedisFeatureStore implements FeatureSource {
  private catalog: FeatureCatalog;
  private readonly redis: Redis & StoreCommands;
  private maxValues: number | undefined;
  private readonly prefix: string;
  private readonly clock: Clock;
  private readonly logger: Logger | undefined;

  constructor(options: RedisFeatureStoreOptions) {
    this.catalog = new FeatureCatalog(options.definitions);
    this.prefix = options.prefix;
    this.clock = options.clock;
    this.logger = options.logger;
    this.maxValues = options.maxValuesPerTenant;
    const redis = openRedis({
      url: options.url,
      commandTimeoutMs: options.commandTimeoutMs,
      name: 'feature store',
      logger: options.logger,
    });
    redis.defineCommand('syFeatureWrite', { numberOfKeys: 3, lua: WRITE_LUA });
    redis.defineCommand('syFeatureStored', { numberOfKeys: 3, lua: STORED_LUA });
    redis.defineCommand('syFeatureDrop', { numberOfKeys: 3, lua: DROP_LUA });
    redis.defineCommand('syFeaturePurge', { numberOfKeys: 4, lua: PURGE_LUA });
    this.redis = redis as Redis & StoreCommands;
  }

  /** Resolves true once connected, false after `timeoutMs`. */
  ready(timeoutMs: number): Promise<boolean> {
    return redisReady(this.redis, timeoutMs);
  }

  setDefinitions(definitions: readonly FeatureDefinition[]): void {
    this.catalog = new FeatureCatalog(definitions);
  }

  /** A new cap (config reload); values held are kept, only new ones are refused. */
  setMaxValuesPerTenant(max: number | undefined): void {
    this.maxValues = max;
  }

  stored(tenant: string): Promise<number> {
    return this.run('read', () =>
      this.redis.syFeatureStored(...this.countKeys(tenant), tenant, String(this.clock.wall())),
    );
  }

  async storedByTenant(): Promise<ReadonlyMap<string, number>> {
    const all = await this.run('read', () => this.redis.hgetall(`${this.prefix}n`));
    return new Map(Object.entries(all).map(([tenant, n]) => [tenant, Number(n)]));
  }

  definitions(): readonly FeatureDefinition[] {
    return this.catalog.list();
  }

  definition(name: string): FeatureDefinition | undefined {
    return this.catalog.get(name);
  }

  validate(writes: readonly FeatureWrite[]): FeatureIssue[] {
    return this.catalog.validate(writes);
  }

  async write(tenant: string, writes: readonly FeatureWrite[]): Promise<FeatureWriteResult> {
    try {
      const result = await this.writeChecked(tenant, writes);
      featureOp('write', 'ok', result.written);
      return result;
    } catch (err) {
      featureWriteFailed(err, writes.length);
      throw err;
    }
  }

  private async writeChecked(
    tenant: string,
    writes: readonly FeatureWrite[],
  ): Promise<FeatureWriteResult> {
    const now = this.clock.wall();
    const entries = this.catalog.entries(writes, now);
    // One group per hash, one field per feature (the last write of a batch wins).
    const byEntity = new Map<string, Map<string, FeatureEntry>>();
    for (const e of entries) {
      let fields = byEntity.get(e.entityId);
      if (fields === undefined)
        byEntity.set(e.entityId, (fields = new Map<string, FeatureEntry>()));
      fields.set(e.feature, e);
    }
    const args: string[] = [
      tenant,
      String(this.maxValues ?? -1),
      String(now),
      String(byEntity.size),
    ];
    for (const [entityId, fields] of byEntity) {
      // Redis 7.0 has no per-field expiry: a hash whose features all expire (session memory)
      // expires as a whole after the longest TTL of its entity type; any other hash never does.
      const first = fields.values().next().value!;
      const ttl = this.catalog.entityTtl(this.catalog.get(first.feature)!.entity);
      args.push(
        this.entityKey(tenant, entityId),
        ttl === undefined ? '' : String(ttl),
        entityId,
        String(fields.size),
      );
      for (const e of fields.values())
        args.push(
          e.feature,
          JSON.stringify(e),
          e.userId === undefined ? '' : this.userKey(tenant, e.userId),
        );
    }
    const [stored, held, adding] = await this.run('write', () =>
      this.redis.syFeatureWrite(...this.countKeys(tenant), ...args),
    );
    if (stored !== 1) ensureRoom('feature_values', tenant, held, adding, this.maxValues);
    return { written: entries.length };
  }

  async read(tenant: string, keys: readonly FeatureKey[]): Promise<(FeatureEntry | undefined)[]> {
    if (keys.length === 0) return [];
    // One HMGET per entity, pipelined.
    const groups = new Map<string, number[]>();
    keys.forEach((k, i) => {
      const g = groups.get(k.entityId);
      if (g === undefined) groups.set(k.entityId, [i]);
      else g.push(i);
    });
    const pipe = this.redis.pipeline();
    for (const [entityId, idx] of groups)
      pipe.hmget(this.entityKey(tenant, entityId), ...idx.map((i) => keys[i]!.feature));
    const replies = await this.run('read', () => pipe.exec());
    const out = new Array<FeatureEntry | undefined>(keys.length);
    const now = this.clock.wall();
    let g = 0;
    for (const [entityId, idx] of groups) {
      const [err, values] = replies?.[g++] ?? [new Error('no reply'), null];
      if (err !== null) throw unavailable('read', err);
      const list = values as (string | null)[];
      const expired: string[] = [];
      idx.forEach((i, j) => {
        const raw = list[j];
        const e = raw === null || raw === undefined ? undefined : parseEntry(raw);
        if (e?.expiresAt !== undefined && e.expiresAt <= now) {
          expired.push(e.feature);
          out[i] = undefined;
        } else out[i] = e;
      });
      if (expired.length > 0) this.dropLazily(tenant, entityId, expired);
    }
    const hits = out.reduce((n, e) => (e === undefined ? n : n + 1), 0);
    featureOp('read', 'hit', hits);
    featureOp('read', 'miss', keys.length - hits);
    return out;
  }

  async readEntity(tenant: string, entityId: string): Promise<FeatureEntry[]> {
    const all = await this.run('read', () => this.redis.hgetall(this.entityKey(tenant, entityId)));
    const now = this.clock.wall();
    const out: FeatureEntry[] = [];
    const expired: string[] = [];
    for (const raw of Object.values(all)) {
      const e = parseEntry(raw);
      if (e === undefined) continue;
      if (e.expiresAt !== undefined && e.expiresAt <= now) expired.push(e.feature);
      else out.push(e);
    }
    if (expired.length > 0) this.dropLazily(tenant, entityId, expired);
    return out;
  }

  async purgeUser(
    tenant: string,
    userId: string,
    purposes?: readonly ConsentPurpose[],
  ): Promise<number> {
    return this.run('purge', () =>
      this.redis.syFeaturePurge(
        ...this.countKeys(tenant),
        this.userKey(tenant, userId),
        tenant,
        `${this.prefix}e:${tenant}:`,
        userId,
        ...(purposes ?? []),
      ),
    );
  }

  /** Writes are acknowledged by Redis before `write` resolves: nothing is pending. */
  flush(): Promise<void> {
    return Promise.resolve();
  }

  async close(): Promise<void> {
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }

  private entityKey(tenant: string, entityId: string): string {
    return `${this.prefix}e:${tenant}:${entityId}`;
  }

  private userKey(tenant: string, userId: string): string {
    return `${this.prefix}u:${tenant}:${userId}`;
  }

  /** The tenant's count, the expiries and the field counts of its expiring hashes. */
  private countKeys(tenant: string): [string, string, string] {
    return [`${this.prefix}n`, `${this.prefix}x:${tenant}`, `${this.prefix}l:${tenant}`];
  }

  private dropLazily(tenant: string, entityId: string, fields: readonly string[]): void {
    this.redis
      .syFeatureDrop(...this.countKeys(tenant), tenant, this.entityKey(tenant, entityId), ...fields)
      .catch(() => undefined);
  }

  private async run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (isSwitchyardError(err)) throw err;
      throw unavailable(what, err);
    }
  }
}

function unavailable(what: string, err: unknown): Error {
  const message = err instanceof Error ? err.message : String(err);
  return syError('SY_ERR_FEATURE_STORE_UNAVAILABLE', `${what}: ${message.slice(0, 200)}`, {
    cause: err,
  });
}

function parseEntry(raw: string): FeatureEntry | undefined {
  try {
    return JSON.parse(raw) as FeatureEntry;
  } catch {
    return undefined;
  }
}
