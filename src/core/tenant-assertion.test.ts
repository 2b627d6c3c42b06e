import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { signAssertion, verifyAssertion, type TenantAssertion } from './tenant-assertion.js';
import { SwitchyardError } from './errors.js';

const SEED = 20_261_206;
const KEY = Buffer.from('a-service-key-for-property-tests');
const KEYS = new Map([['edges', KEY]]);
const NOW = 1_800_000_000_000;
const name = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/);
const assertion = fc.record({
  keyId: fc.constant('edges'),
  tenant: name,
  trafficClass: name,
  requestId: name,
  expiresAt: fc.integer({ min: NOW + 1, max: NOW + 60_000 }),
});
const expect_ = (a: TenantAssertion) => ({ requestId: a.requestId, now: NOW, maxTtlMs: 60_000 });

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof SwitchyardError ? err.code : 'not a SwitchyardError';
  }
}

describe('tenant assertions (#17)', () => {
  it('verifies every assertion it signs, claims intact', () => {
    fc.assert(
      fc.property(assertion, (a) => {
        expect(verifyAssertion(signAssertion(a, KEY), KEYS, expect_(a))).toEqual(a);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it('refuses an assertion with any single character changed', () => {
    fc.assert(
      fc.property(assertion, fc.nat(), fc.integer({ min: 1, max: 60 }), (a, at, shift) => {
        const s = signAssertion(a, KEY);
        const i = at % s.length;
        const c = String.fromCharCode(((s.charCodeAt(i) - 32 + shift) % 95) + 32);
        fc.pre(c !== s[i]);
        const forged = s.slice(0, i) + c + s.slice(i + 1);
        expect(codeOf(() => verifyAssertion(forged, KEYS, expect_(a)))).toBe(
          'SY_ERR_ASSERTION_INVALID',
        );
      }),
      { seed: SEED, numRuns: 2_000 },
    );
  });

  it('refuses an expired one, one signed for another request, and one living too long', () => {
    const a: TenantAssertion = {
      keyId: 'edges',
      tenant: 'acme',
      trafficClass: 'interactive',
      requestId: 'r1',
      expiresAt: NOW + 1_000,
    };
    const s = signAssertion(a, KEY);
    expect(codeOf(() => verifyAssertion(s, KEYS, { ...expect_(a), now: NOW + 1_000 }))).toBe(
      'SY_ERR_ASSERTION_INVALID',
    );
    expect(codeOf(() => verifyAssertion(s, KEYS, { ...expect_(a), requestId: 'r2' }))).toBe(
      'SY_ERR_ASSERTION_INVALID',
    );
    expect(codeOf(() => verifyAssertion(s, KEYS, { ...expect_(a), maxTtlMs: 999 }))).toBe(
      'SY_ERR_ASSERTION_INVALID',
    );
    expect(
      codeOf(() => verifyAssertion(s, new Map([['edges', Buffer.from('other')]]), expect_(a))),
    ).toBe('SY_ERR_ASSERTION_INVALID');
    expect(codeOf(() => verifyAssertion(s, KEYS, expect_(a)))).toBeUndefined();
  });
});
