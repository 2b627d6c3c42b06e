import * as crypto from 'node:crypto';
import type * as NodeCrypto from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  fingerprintOfHash,
  generateKey,
  HASH_PREFIX,
  hashesEqual,
  hashKey,
  parseKey,
  type KeyType,
} from './api-key.js';

// Spy on the comparison so the tests can see the constant-time path is the one taken.
vi.mock('node:crypto', async (importOriginal) => {
  const real = await importOriginal<typeof NodeCrypto>();
  return { ...real, timingSafeEqual: vi.fn(real.timingSafeEqual) };
});

const SEED = 20_261_123;
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const keyType = fc.constantFrom<KeyType>('sk', 'ak');

describe('API keys', () => {
  afterEach(() => vi.mocked(crypto.timingSafeEqual).mockClear());

  it('parses every key it creates back to its type', () => {
    fc.assert(
      fc.property(keyType, (type) => {
        const key = generateKey(type);
        expect(key).toMatch(new RegExp(`^sy_${type}_[0-9A-Za-z]{38}$`));
        expect(parseKey(key)).toBe(type);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it('rejects a key with any single character changed, checksum included', () => {
    fc.assert(
      fc.property(keyType, fc.nat(), fc.nat(), (type, at, by) => {
        const key = generateKey(type);
        const i = at % key.length;
        // Any other character: another base62 symbol, or a symbol outside the alphabet.
        const pool = `${ALPHABET}_-+/= .`.replace(key[i]!, '');
        const mutated = key.slice(0, i) + pool[by % pool.length]! + key.slice(i + 1);
        expect(parseKey(mutated)).toBeUndefined();
      }),
      { seed: SEED, numRuns: 3_000 },
    );
  });

  it('rejects keys with a character dropped, added or two swapped', () => {
    fc.assert(
      fc.property(keyType, fc.nat(), fc.constantFrom('drop', 'add', 'swap'), (type, at, how) => {
        const key = generateKey(type);
        const i = at % (key.length - 1);
        const mutated =
          how === 'drop'
            ? key.slice(0, i) + key.slice(i + 1)
            : how === 'add'
              ? key.slice(0, i) + 'x' + key.slice(i)
              : key.slice(0, i) + key[i + 1]! + key[i]! + key.slice(i + 2);
        fc.pre(mutated !== key);
        expect(parseKey(mutated)).toBeUndefined();
      }),
      { seed: SEED, numRuns: 1_000 },
    );
  });

  it('never throws on arbitrary input, and accepts nothing that is not a key', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 80 }), (text) => {
        expect(parseKey(text)).toBeUndefined();
      }),
      { seed: SEED, numRuns: 2_000 },
    );
  });

  it('stores keys as HMAC-SHA-256 under the server secret, and fingerprints without the key', () => {
    const key = generateKey('sk');
    const hash = hashKey(key, 'secret-a');
    expect(hash).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
    expect(hash.startsWith(HASH_PREFIX)).toBe(true);
    expect(hash).toBe(hashKey(key, Buffer.from('secret-a')));
    expect(hash).not.toBe(hashKey(key, 'secret-b'));
    expect(hash).not.toContain(key);
    const fp = fingerprintOfHash(hash);
    expect(fp).toMatch(/^fp:[0-9a-f]{12}$/);
    expect(key).not.toContain(fp.slice(3));
  });

  it('compares hashes in constant time whenever the lengths match', () => {
    const spy = vi.mocked(crypto.timingSafeEqual);
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 64 }), fc.nat(), (a, at) => {
        const i = at % a.length;
        const b = a.slice(0, i) + (a[i] === 'x' ? 'y' : 'x') + a.slice(i + 1);
        spy.mockClear();
        expect(hashesEqual(a, a)).toBe(true);
        expect(hashesEqual(a, b)).toBe(Buffer.from(a).equals(Buffer.from(b)));
        // Both answers came from timingSafeEqual, never from a short-circuiting ===.
        expect(spy).toHaveBeenCalledTimes(Buffer.byteLength(a) === Buffer.byteLength(b) ? 2 : 1);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it('answers false without throwing when the lengths differ', () => {
    const h = hashKey(generateKey('sk'), 's');
    expect(hashesEqual(h, h.slice(1))).toBe(false);
    expect(hashesEqual('', h)).toBe(false);
  });
});
