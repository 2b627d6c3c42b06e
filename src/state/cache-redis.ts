import type { Redis } from 'ioredis';
import type {
  Cache,
  CacheEntry,
  CacheLookup,
  CacheScope,
  CacheWrite,
  LookupOptions,
  SemanticOptions,
  SemanticResult,
} from '../contracts/cache.js';
import type { JsonObject } from '../contracts/json.js';
import type { Clock } from '../core/clock.js';
import { events, publish } from '../core/events.js';
import { isJsonObject, parseJson } from '../core/safe-json.js';

export interface RedisCacheOptions {
  /** A request-path client (`openRedis`: no offline queue, no retries, a short command timeout). */
  readonly redis: Redis;
  /** Key prefix of every entry (replicas that share one see each other's answers). */
  readonly prefix: string;
  readonly clock: Clock;
  /** Most vectors kept per scope for semantic lookup; further entries are exact-only. */
  readonly maxVectorsPerScope?: number;
  /** Told about every Redis failure the cache swallowed (a miss instead of an error). */
  readonly onError?: (op: 'get' | 'set' | 'nearest', err: unknown) => void;
}

interface Stored {
  readonly value: JsonObject;
  readonly storedAt: number;
  readonly expiresAt: number;
  readonly staleUntil: number;
}

/**
 * The response cache shared by replicas (#17 item 4), in Redis. Every key holds the tenant
 * (`<prefix>e:<tenant>:<namespace>:<key>`, each part URI-encoded so no part can forge another's
 * separator), so isolation is structural as in `MemoryCache`. Freshness is judged on the
 * injected clock like the memory cache; Redis' own expiry (TTL plus stale window) only frees
 * the memory. Vectors of a scope live in one hash, scanned exactly as the memory cache does.
 *
 * Fails open: a Redis outage (refused, timed out, frozen) makes lookups misses and writes
 * no-ops, never a request error. Deleting entries is control-plane work and fails loudly.
 */
export class RedisCache implements Cache {
  private readonly redis: Redis;
  private readonly p: string;
  private readonly clock: Clock;
  private readonly maxVectors: number;

  constructor(private readonly o: RedisCacheOptions) {
    this.redis = o.redis;
    this.p = o.prefix;
    this.clock = o.clock;
    this.maxVectors = o.maxVectorsPerScope ?? 10_000;
  }

  private entryKey(s: CacheScope, key: string): string {
    return `${this.p}e:${enc(s.tenant)}:${enc(s.namespace)}:${enc(key)}`;
  }

  private vectorKey(s: CacheScope): string {
    return `${this.p}v:${enc(s.tenant)}:${enc(s.namespace)}`;
  }

  private failed(op: 'get' | 'set' | 'nearest', err: unknown): void {
    publish(events.cacheStoreError, { op });
    this.o.onError?.(op, err);
  }

  async get(
    scope: CacheScope,
    key: string,
    options: LookupOptions = {},
  ): Promise<CacheLookup | undefined> {
    let raw: string | null;
    try {
      raw = await this.redis.get(this.entryKey(scope, key));
    } catch (err) {
      this.failed('get', err);
      return undefined;
    }
    const s = raw === null ? undefined : decode(raw);
    if (s === undefined) return undefined;
    return live(s, this.clock.wall(), options.allowStale === true);
  }

  async set(scope: CacheScope, key: string, value: JsonObject, write: CacheWrite): Promise<void> {
    const now = this.clock.wall();
    const stored: Stored = {
      value,
      storedAt: now,
      expiresAt: now + write.ttlMs,
      staleUntil: now + write.ttlMs + write.staleMs,
    };
    const px = Math.max(1, write.ttlMs + write.staleMs);
    try {
      const tx = this.redis
        .multi()
        .set(this.entryKey(scope, key), JSON.stringify(stored), 'PX', px);
      if (write.vector !== undefined) {
        const vk = this.vectorKey(scope);
        if ((await this.redis.hlen(vk)) < this.maxVectors) {
          tx.hset(vk, key, Buffer.from(unit(write.vector).buffer).toString('base64'));
          // The hash lives as long as its longest-lived entry.
          tx.pexpire(vk, px, 'NX').pexpire(vk, px, 'GT');
        }
      }
      await tx.exec();
    } catch (err) {
      this.failed('set', err);
    }
  }

  async nearest(
    scope: CacheScope,
    vector: Float32Array | readonly number[],
    options: SemanticOptions,
  ): Promise<SemanticResult> {
    try {
      const vk = this.vectorKey(scope);
      const all = await this.redis.hgetall(vk);
      const keys = Object.keys(all);
      if (keys.length === 0) return { hit: undefined, best: undefined };
      const raws = await this.redis.mget(keys.map((k) => this.entryKey(scope, k)));
      const q = unit(vector);
      const now = this.clock.wall();
      let best: { key: string; dot: number; lookup: CacheLookup } | undefined;
      const gone: string[] = [];
      keys.forEach((k, i) => {
        const raw = raws[i];
        const s = raw === null || raw === undefined ? undefined : decode(raw);
        if (s === undefined) return void gone.push(k);
        const v = fromBase64(all[k]!);
        if (v.length !== q.length) return;
        const lookup = live(s, now, options.allowStale === true);
        if (lookup === undefined) return;
        let dot = 0;
        for (let j = 0; j < q.length; j++) dot += q[j]! * v[j]!;
        if (best === undefined || dot > best.dot) best = { key: k, dot, lookup };
      });
      // Vectors whose entries expired: dropped behind the lookup, never awaited.
      if (gone.length > 0) this.redis.hdel(vk, ...gone).catch(() => undefined);
      if (best === undefined) return { hit: undefined, best: undefined };
      const b: { key: string; dot: number; lookup: CacheLookup } = best;
      if (b.dot < options.threshold) return { hit: undefined, best: b.dot };
      return { hit: { key: b.key, ...b.lookup, similarity: b.dot }, best: b.dot };
    } catch (err) {
      this.failed('nearest', err);
      return { hit: undefined, best: undefined };
    }
  }

  async delete(scope: CacheScope, key: string): Promise<boolean> {
    const [[, n]] = (await this.redis
      .multi()
      .del(this.entryKey(scope, key))
      .hdel(this.vectorKey(scope), key)
      .exec()) as [[unknown, number], [unknown, number]];
    return n > 0;
  }

  async clearTenant(tenant: string): Promise<number> {
    const t = enc(tenant);
    const entries = await this.scanDelete(`${glob(this.p)}e:${t}:*`);
    await this.scanDelete(`${glob(this.p)}v:${t}:*`);
    return entries;
  }

  private async scanDelete(match: string): Promise<number> {
    let cursor = '0';
    let n = 0;
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', match, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) n += await this.redis.del(...keys);
    } while (cursor !== '0');
    return n;
  }

  async close(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/** URI-encoded, and `*` too: a part never holds `:` or a glob character. */
const enc = (s: string): string => encodeURIComponent(s).replace(/\*/g, '%2A');

/** The prefix as a SCAN pattern (it is the operator's, so its glob characters are escaped). */
const glob = (s: string): string => s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);

function live(s: Stored, now: number, allowStale: boolean): CacheLookup | undefined {
  if (now >= s.staleUntil) return undefined;
  const stale = now >= s.expiresAt;
  if (stale && !allowStale) return undefined;
  const entry: CacheEntry = {
    value: s.value,
    storedAt: s.storedAt,
    expiresAt: s.expiresAt,
    staleUntil: s.staleUntil,
  };
  return { entry, stale };
}

/** An entry another replica (or version) wrote: anything unreadable is a miss. */
function decode(raw: string): Stored | undefined {
  try {
    const o = parseJson(raw);
    if (!isJsonObject(o) || !isJsonObject(o['value'])) return undefined;
    const { storedAt, expiresAt, staleUntil } = o;
    if (typeof storedAt !== 'number' || typeof expiresAt !== 'number') return undefined;
    if (typeof staleUntil !== 'number') return undefined;
    return { value: o['value'], storedAt, expiresAt, staleUntil };
  } catch {
    return undefined;
  }
}

function fromBase64(s: string): Float32Array {
  const b = Buffer.from(s, 'base64');
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

function unit(v: Float32Array | readonly number[]): Float32Array {
  const out = Float32Array.from(v);
  let n = 0;
  for (let i = 0; i < out.length; i++) n += out[i]! * out[i]!;
  if (n > 0) {
    const inv = 1 / Math.sqrt(n);
    for (let i = 0; i < out.length; i++) out[i] = out[i]! * inv;
  }
  return out;
}
