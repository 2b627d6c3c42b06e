import { createHmac, timingSafeEqual } from 'node:crypto';
import { syError } from './errors.js';

/** The header a child gateway sends its signed tenant assertion in (#17). */
export const ASSERTION_HEADER = 'x-switchyard-assertion';

/** What a child gateway asserts about the request it forwards. */
export interface TenantAssertion {
  /** The service key that signed it (`auth.service_keys[].id` on the parent). */
  readonly keyId: string;
  readonly tenant: string;
  readonly trafficClass: string;
  readonly requestId: string;
  /** Wall-clock epoch ms after which the assertion is void. */
  readonly expiresAt: number;
}

const VERSION = 'v1';

function mac(secret: Buffer | string, payload: string): Buffer {
  return createHmac('sha256', secret).update(`${VERSION}.${payload}`).digest();
}

/**
 * `v1.<base64url payload>.<base64url HMAC-SHA-256>`: the payload is the JSON of the key id,
 * tenant, class, request id and expiry; the MAC covers the version and the payload, so none of
 * them can be changed or moved to another request without the service key.
 */
export function signAssertion(a: TenantAssertion, secret: Buffer | string): string {
  const payload = Buffer.from(
    JSON.stringify({ k: a.keyId, t: a.tenant, c: a.trafficClass, r: a.requestId, e: a.expiresAt }),
  ).toString('base64url');
  return `${VERSION}.${payload}.${mac(secret, payload).toString('base64url')}`;
}

export interface VerifyExpect {
  /** The request id the assertion must name (the request's `x-request-id`). */
  readonly requestId: string;
  /** Wall-clock epoch ms now. */
  readonly now: number;
  /** Longest lifetime accepted (an assertion expiring later than now + this is refused). */
  readonly maxTtlMs: number;
}

/**
 * Checks an assertion's shape, its MAC with the named service key (constant-time), its expiry
 * and that it names this request. Throws SY_ERR_ASSERTION_INVALID with the reason.
 */
export function verifyAssertion(
  value: string,
  keys: ReadonlyMap<string, Buffer>,
  expect: VerifyExpect,
): TenantAssertion {
  const bad = (why: string): never => {
    throw syError('SY_ERR_ASSERTION_INVALID', why);
  };
  const parts = value.split('.');
  if (parts.length !== 3 || parts[0] !== VERSION) return bad('malformed');
  const payload = parts[1]!;
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return bad('malformed payload');
  }
  const c = claims as Record<string, unknown>;
  if (
    typeof claims !== 'object' ||
    claims === null ||
    typeof c['k'] !== 'string' ||
    typeof c['t'] !== 'string' ||
    typeof c['c'] !== 'string' ||
    typeof c['r'] !== 'string' ||
    typeof c['e'] !== 'number' ||
    !Number.isFinite(c['e'])
  )
    return bad('malformed payload');
  const secret = keys.get(c['k']);
  if (secret === undefined) return bad('unknown service key');
  // Compared as text, not decoded: base64 decoding forgives spare bits and stray characters, so
  // another spelling of the same MAC must not pass either.
  const given = Buffer.from(parts[2]!);
  const want = Buffer.from(mac(secret, payload).toString('base64url'));
  if (given.length !== want.length || !timingSafeEqual(given, want)) return bad('bad signature');
  const expiresAt = c['e'];
  if (expiresAt <= expect.now) return bad('expired');
  if (expiresAt > expect.now + expect.maxTtlMs) return bad('lives too long');
  if (c['r'] !== expect.requestId) return bad('signed for another request');
  return {
    keyId: c['k'],
    tenant: c['t'],
    trafficClass: c['c'],
    requestId: c['r'],
    expiresAt,
  };
}
