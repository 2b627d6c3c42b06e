import type { IncomingHttpHeaders } from 'node:http';
import { fingerprintOfHash, hashesEqual, hashKey, parseKey } from '../core/api-key.js';
import { syError } from '../core/errors.js';
import type { FrozenConfig } from '../config/load.js';
import { ASSERTION_HEADER, verifyAssertion } from '../core/tenant-assertion.js';
import { CLASS_HEADER } from '../admission/classes.js';

export interface Principal {
  readonly tenant: string;
  /** The key's config id, or `anonymous`. */
  readonly keyId: string;
  /** A short non-secret name of the key for logs. */
  readonly fingerprint: string;
  /** May call the admin API. Never true for the anonymous tenant. */
  readonly admin: boolean;
}

interface KeyEntry extends Principal {
  readonly hash: string;
}

interface ModelGrant {
  readonly all: boolean;
  readonly exact: ReadonlySet<string>;
  readonly prefixes: readonly string[];
}

/**
 * Tenants' API keys, held only as HMAC-SHA-256 digests keyed by the server secret. A presented
 * key is checked for shape and checksum first (junk costs no HMAC), then hashed, looked up and
 * compared in constant time.
 */
export class KeyStore {
  private readonly byHash = new Map<string, KeyEntry>();
  /**
   * Keys already verified, by the presented key: an HMAC per request was 2-3% of a proxied
   * request's CPU (bench:overhead profile). Only valid keys enter it, it is bounded, and a
   * reload builds a new store, so a removed key is forgotten with the config that had it.
   */
  private readonly verified = new Map<string, KeyEntry>();
  private readonly grants = new Map<string, ModelGrant>();
  private readonly anonymous: Principal | undefined;

  private readonly maxAssertionTtlMs: number;

  constructor(
    config: FrozenConfig,
    private readonly secret: Buffer | undefined,
    /** Service keys of child gateways (`auth.service_keys`, #17), by id. */
    private readonly serviceKeys: ReadonlyMap<string, Buffer> = new Map(),
    private readonly wall: () => number = Date.now,
  ) {
    this.maxAssertionTtlMs = config.auth.assertion_max_ttl_ms;
    for (const [tenant, t] of Object.entries(config.tenants)) {
      for (const key of t.keys) {
        this.byHash.set(key.hash, {
          tenant,
          keyId: key.id,
          fingerprint: fingerprintOfHash(key.hash),
          admin: key.admin,
          hash: key.hash,
        });
      }
      this.grants.set(tenant, {
        all: t.models.includes('*'),
        exact: new Set(t.models.filter((m) => !m.endsWith('*'))),
        prefixes: t.models.filter((m) => m.endsWith('*')).map((m) => m.slice(0, -1)),
      });
    }
    const anon = config.auth.anonymous_tenant;
    this.anonymous =
      anon === undefined
        ? undefined
        : { tenant: anon, keyId: 'anonymous', fingerprint: 'anonymous', admin: false };
  }

  authenticate(headers: IncomingHttpHeaders): Principal {
    const assertion = headers[ASSERTION_HEADER];
    if (assertion !== undefined) return this.asserted(assertion, headers);
    const key = presentedKey(headers);
    if (key === undefined) {
      if (this.anonymous !== undefined) return this.anonymous;
      throw syError('SY_ERR_AUTH_MISSING');
    }
    const known = this.verified.get(key);
    if (known !== undefined) return known;
    if (parseKey(key) !== 'sk')
      throw syError('SY_ERR_AUTH_INVALID', 'malformed key or bad checksum');
    if (this.secret === undefined) throw syError('SY_ERR_AUTH_INVALID', 'unknown key');
    const hash = hashKey(key, this.secret);
    const entry = this.byHash.get(hash);
    if (entry === undefined || !hashesEqual(entry.hash, hash))
      throw syError('SY_ERR_AUTH_INVALID', 'unknown key');
    if (this.verified.size >= MAX_VERIFIED) this.verified.clear();
    this.verified.set(key, entry);
    return entry;
  }

  /**
   * A child gateway's call (#17): the tenant its signed assertion names, checked against this
   * node's service keys, the request id and class it travels with, and this node's tenants. The
   * tenant's quotas, consent and residency then apply here as to its own keys.
   */
  private asserted(value: string | string[], headers: IncomingHttpHeaders): Principal {
    if (typeof value !== 'string') throw syError('SY_ERR_ASSERTION_INVALID', 'send one assertion');
    if (this.serviceKeys.size === 0)
      throw syError('SY_ERR_ASSERTION_INVALID', 'this node accepts no service keys');
    const requestId = headers['x-request-id'];
    const a = verifyAssertion(value, this.serviceKeys, {
      requestId: typeof requestId === 'string' ? requestId : '',
      now: this.wall(),
      maxTtlMs: this.maxAssertionTtlMs,
    });
    const cls = headers[CLASS_HEADER];
    if (cls !== a.trafficClass)
      throw syError('SY_ERR_ASSERTION_INVALID', 'signed for another traffic class');
    if (!this.grants.has(a.tenant)) throw syError('SY_ERR_ASSERTION_INVALID', 'unknown tenant');
    const id = `service:${a.keyId}`;
    return { tenant: a.tenant, keyId: id, fingerprint: id, admin: false };
  }

  mayUse(tenant: string, model: string): boolean {
    const g = this.grants.get(tenant);
    if (g === undefined) return false;
    if (g.all || g.exact.has(model)) return true;
    return g.prefixes.some((p) => model.startsWith(p));
  }
}

/** Verified keys remembered per config; past this many the memo starts over. */
const MAX_VERIFIED = 4_096;

function presentedKey(headers: IncomingHttpHeaders): string | undefined {
  const auth = headers.authorization;
  if (auth !== undefined) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
    if (m === null) throw syError('SY_ERR_AUTH_INVALID', 'use "Authorization: Bearer <key>"');
    return m[1];
  }
  const alt = headers['x-api-key'];
  return typeof alt === 'string' && alt !== '' ? alt : undefined;
}
