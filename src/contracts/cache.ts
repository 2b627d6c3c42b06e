/**
 * The response cache of journeys (issue #4): an exact cache keyed by tenant, namespace (the
 * journey) and a normalized request key, and a semantic cache that finds the nearest stored
 * request by embedding similarity. Entries have a TTL and an optional stale window: a stale
 * entry is never served as a hit, but may be served when the fresh path failed
 * (stale-if-error, RFC 5861 §4).
 *
 * Isolation is part of the contract: a tenant never sees, overwrites or is matched against
 * another tenant's entries, whatever the key. Implementations: in process (`state/cache-memory`),
 * Redis later; both must pass the same suite.
 */
import type { JsonObject } from './json.js';

/** Where an entry lives: one tenant's entries of one journey (or other namespace). */
export interface CacheScope {
  readonly tenant: string;
  readonly namespace: string;
}

export interface CacheEntry {
  readonly value: JsonObject;
  /** Wall-clock epoch ms of the write. */
  readonly storedAt: number;
  /** After this the entry is stale (served only with `allowStale`). */
  readonly expiresAt: number;
  /** After this the entry is gone. */
  readonly staleUntil: number;
}

export interface CacheLookup {
  readonly entry: CacheEntry;
  /** True when the entry is past its TTL but within its stale window. */
  readonly stale: boolean;
}

export interface SemanticHit extends CacheLookup {
  readonly key: string;
  /** Cosine similarity of the query and the stored vector, in [-1, 1]. */
  readonly similarity: number;
}

export interface SemanticResult {
  /** The nearest entry at or above the threshold, if any. */
  readonly hit: SemanticHit | undefined;
  /** Best similarity seen (also when below the threshold); undefined when the scope is empty. */
  readonly best: number | undefined;
}

export interface CacheWrite {
  readonly ttlMs: number;
  /** How long after the TTL the entry may still be served as a stale fallback (0: never). */
  readonly staleMs: number;
  /** The request's embedding: makes the entry findable by `nearest`. */
  readonly vector?: Float32Array | readonly number[];
}

export interface LookupOptions {
  /** Return entries past their TTL (within the stale window), flagged `stale`. */
  readonly allowStale?: boolean;
}

export interface SemanticOptions extends LookupOptions {
  /** Lowest cosine similarity that counts as a hit. */
  readonly threshold: number;
}

export interface Cache {
  get(scope: CacheScope, key: string, options?: LookupOptions): Promise<CacheLookup | undefined>;
  set(scope: CacheScope, key: string, value: JsonObject, write: CacheWrite): Promise<void>;
  /** The most similar entry of the scope that was stored with a vector. */
  nearest(
    scope: CacheScope,
    vector: Float32Array | readonly number[],
    options: SemanticOptions,
  ): Promise<SemanticResult>;
  delete(scope: CacheScope, key: string): Promise<boolean>;
  /** Drops every entry of a tenant (all namespaces); returns how many. */
  clearTenant(tenant: string): Promise<number>;
  close(): Promise<void>;
}
