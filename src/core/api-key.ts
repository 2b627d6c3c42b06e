import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { crc32 } from 'node:zlib';

/**
 * API keys look like `sy_sk_<32 base62 chars><6 base62 checksum>`. The typed prefix says what the
 * key is for (`sk`: a tenant's service key, `ak`: an admin key) and lets secret scanners find
 * leaked keys; the CRC-32 checksum rejects typos and junk before any lookup. Only
 * HMAC-SHA-256(server secret, key) is ever stored.
 */
export type KeyType = 'sk' | 'ak';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const BODY_LEN = 32;
const CHECK_LEN = 6;
const KEY_SHAPE = /^sy_(sk|ak)_([0-9A-Za-z]{38})$/;
export const HASH_PREFIX = 'hmac-sha256:';

function base62(n: number, width: number): string {
  let out = '';
  let v = n;
  for (let i = 0; i < width; i++) {
    out = ALPHABET[v % 62]! + out;
    v = Math.floor(v / 62);
  }
  return out;
}

function checksum(prefixAndBody: string): string {
  return base62(crc32(prefixAndBody), CHECK_LEN);
}

export function generateKey(type: KeyType): string {
  const bytes = randomBytes(BODY_LEN);
  let body = '';
  // 256 % 62 leaves a small bias; reject bytes >= 248 (4 * 62) to keep every char uniform.
  for (let i = 0; body.length < BODY_LEN; i++) {
    const b = i < bytes.length ? bytes[i]! : randomBytes(1)[0]!;
    if (b < 248) body += ALPHABET[b % 62];
  }
  const head = `sy_${type}_${body}`;
  return head + checksum(head);
}

/** The key's type when its shape and checksum are right, else undefined. Does no lookup. */
export function parseKey(key: string): KeyType | undefined {
  const m = KEY_SHAPE.exec(key);
  if (m === null) return undefined;
  const all = m[2]!;
  const head = `sy_${m[1]}_${all.slice(0, BODY_LEN)}`;
  return checksum(head) === all.slice(BODY_LEN) ? (m[1] as KeyType) : undefined;
}

export function hashKey(key: string, secret: Buffer | string): string {
  return HASH_PREFIX + createHmac('sha256', secret).update(key).digest('hex');
}

/** A short, non-secret name for a key in logs: the start of its HMAC. */
export function fingerprintOfHash(hash: string): string {
  return 'fp:' + hash.slice(HASH_PREFIX.length, HASH_PREFIX.length + 12);
}

export function hashesEqual(a: string, b: string): boolean {
  const ba = Buffer.from(a);
  const bb = Buffer.from(b);
  return ba.length === bb.length && timingSafeEqual(ba, bb);
}
