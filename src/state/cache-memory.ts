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

interface Stored {
  readonly entry: CacheEntry;
  /** Unit-length copy of the request's embedding, when it had one. */
  readonly vector: Float32Array | undefined;
}

export interface MemoryCacheOptions {
  readonly clock: Clock;
  /** Most entries per scope (tenant × namespace); the least recently used go first. */
  readonly maxEntriesPerScope?: number;
}

/**
 * The embedded response cache: one LRU map per (tenant, namespace), so isolation is structural
 * (a lookup only ever touches its own tenant's map). Semantic lookup is an exact cosine scan of
 * the scope's vectors: scopes are bounded, and a few thousand 64-d vectors scan in well under a
 * millisecond, with no recall loss.
 */
export class MemoryCache implements Cache {
  private readonly scopes = new Map<string, Map<string, Stored>>();
  private readonly clock: Clock;
  private readonly max: number;

  constructor(options: MemoryCacheOptions) {
    this.clock = options.clock;
    this.max = options.maxEntriesPerScope ?? 10_000;
  }

  private scope(scope: CacheScope, create: boolean): Map<string, Stored> | undefined {
    // NUL cannot appear in a tenant name, so two scopes never share a map key.
    const k = `${scope.tenant}\u0000${scope.namespace}`;
    let m = this.scopes.get(k);
    if (m === undefined && create) {
      m = new Map();
      this.scopes.set(k, m);
    }
    return m;
  }

  private live(
    map: Map<string, Stored>,
    key: string,
    s: Stored,
    now: number,
    allowStale: boolean,
  ): CacheLookup | undefined {
    if (now >= s.entry.staleUntil) {
      map.delete(key);
      return undefined;
    }
    const stale = now >= s.entry.expiresAt;
    if (stale && !allowStale) return undefined;
    return { entry: s.entry, stale };
  }

  get(
    scope: CacheScope,
    key: string,
    options: LookupOptions = {},
  ): Promise<CacheLookup | undefined> {
    const map = this.scope(scope, false);
    const s = map?.get(key);
    if (map === undefined || s === undefined) return Promise.resolve(undefined);
    const hit = this.live(map, key, s, this.clock.wall(), options.allowStale === true);
    if (hit !== undefined) {
      // Most recently used last.
      map.delete(key);
      map.set(key, s);
    }
    return Promise.resolve(hit);
  }

  set(scope: CacheScope, key: string, value: JsonObject, write: CacheWrite): Promise<void> {
    const map = this.scope(scope, true)!;
    const now = this.clock.wall();
    const entry: CacheEntry = {
      value,
      storedAt: now,
      expiresAt: now + write.ttlMs,
      staleUntil: now + write.ttlMs + write.staleMs,
    };
    map.delete(key);
    map.set(key, { entry, vector: write.vector === undefined ? undefined : unit(write.vector) });
    if (map.size > this.max) {
      // Evict a tenth at once, through one iterator: V8 leaves deleted slots at the front of a
      // Map until it rehashes, so evicting one entry per insert would rescan them every time.
      const it = map.keys();
      for (let drop = map.size - Math.floor(this.max * 0.9); drop > 0; drop--)
        map.delete(it.next().value!);
    }
    return Promise.resolve();
  }

  nearest(
    scope: CacheScope,
    vector: Float32Array | readonly number[],
    options: SemanticOptions,
  ): Promise<SemanticResult> {
    const map = this.scope(scope, false);
    if (map === undefined) return Promise.resolve({ hit: undefined, best: undefined });
    const q = unit(vector);
    const now = this.clock.wall();
    let best: number | undefined;
    let bestKey: string | undefined;
    let bestStored: Stored | undefined;
    for (const [key, s] of map) {
      if (s.vector === undefined || s.vector.length !== q.length) continue;
      if (now >= s.entry.staleUntil) continue;
      if (now >= s.entry.expiresAt && options.allowStale !== true) continue;
      let dot = 0;
      for (let i = 0; i < q.length; i++) dot += q[i]! * s.vector[i]!;
      if (best === undefined || dot > best) {
        best = dot;
        bestKey = key;
        bestStored = s;
      }
    }
    if (best === undefined || best < options.threshold || bestStored === undefined)
      return Promise.resolve({ hit: undefined, best });
    return Promise.resolve({
      hit: {
        key: bestKey!,
        entry: bestStored.entry,
        stale: now >= bestStored.entry.expiresAt,
        similarity: best,
      },
      best,
    });
  }

  delete(scope: CacheScope, key: string): Promise<boolean> {
    return Promise.resolve(this.scope(scope, false)?.delete(key) ?? false);
  }

  clearTenant(tenant: string): Promise<number> {
    let n = 0;
    for (const [k, m] of this.scopes) {
      if (k.startsWith(`${tenant}\u0000`)) {
        n += m.size;
        this.scopes.delete(k);
      }
    }
    return Promise.resolve(n);
  }

  close(): Promise<void> {
    this.scopes.clear();
    return Promise.resolve();
  }
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
