import { describe, expect, it } from 'vitest';
import { generateKey, hashKey } from '../core/api-key.js';
import { parseConfig } from '../config/load.js';
import { KeyStore } from './auth.js';

const SECRET = 's'.repeat(64);
process.env['SY_TEST_AUTH_SECRET'] = SECRET;

function storeWith(keys: readonly { id: string; key: string }[]): KeyStore {
  const yaml = [
    'auth: { secret: { env: SY_TEST_AUTH_SECRET } }',
    'tenants:',
    '  acme:',
    `    keys: [${keys.map((k) => `{ id: ${k.id}, hash: "${hashKey(k.key, SECRET)}" }`).join(', ')}]`,
    "    models: ['*']",
  ].join('\n');
  const snap = parseConfig(yaml, 'test.yaml', '/tmp');
  return new KeyStore(snap.config, Buffer.from(SECRET));
}

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

describe('KeyStore', () => {
  it('answers a known key the same way every time, from the memo after the first', () => {
    const key = generateKey('sk');
    const store = storeWith([{ id: 'k1', key }]);
    const first = store.authenticate(bearer(key));
    expect(first).toMatchObject({ tenant: 'acme', keyId: 'k1' });
    expect(store.authenticate(bearer(key))).toBe(first);
  });

  it('never lets an unknown key in, before or after a known one was remembered', () => {
    const key = generateKey('sk');
    const other = generateKey('sk');
    const store = storeWith([{ id: 'k1', key }]);
    expect(() => store.authenticate(bearer(other))).toThrow(/unknown key/);
    store.authenticate(bearer(key));
    expect(() => store.authenticate(bearer(other))).toThrow(/unknown key/);
    expect(() => store.authenticate(bearer(`${key}x`))).toThrow(/malformed key|unknown key/);
  });

  it('forgets a key with the config that had it: a store for a new config refuses it', () => {
    const key = generateKey('sk');
    const kept = generateKey('sk');
    storeWith([{ id: 'k1', key }]).authenticate(bearer(key));
    const reloaded = storeWith([{ id: 'k2', key: kept }]);
    expect(() => reloaded.authenticate(bearer(key))).toThrow(/unknown key/);
    expect(reloaded.authenticate(bearer(kept)).keyId).toBe('k2');
  });
});
