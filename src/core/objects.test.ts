import { describe, expect, it } from 'vitest';
import { extend } from './objects.js';

describe('extend', () => {
  it('makes what an object spread makes: own keys in order, extra keys over base keys', () => {
    const base = { a: 1, b: 'two', c: undefined };
    const extra = { b: 'over', d: [4] };
    const got = extend(base, extra);
    expect(got).toStrictEqual({ ...base, ...extra });
    expect(Object.keys(got)).toEqual(['a', 'b', 'c', 'd']);
    expect(got.b).toBe('over');
  });

  it('copies, leaving both arguments as they were', () => {
    const base = { a: 1 };
    const extra = { b: 2 };
    const got = extend(base, extra);
    expect(got).not.toBe(base);
    expect(base).toStrictEqual({ a: 1 });
    expect(extra).toStrictEqual({ b: 2 });
  });

  it('copies own enumerable properties only, as a spread does', () => {
    const proto = { inherited: true };
    const base = Object.create(proto, {
      own: { value: 1, enumerable: true },
      hidden: { value: 2, enumerable: false },
    }) as { own: number };
    const got = extend(base, { x: 3 });
    expect(got).toStrictEqual({ ...base, x: 3 });
    expect('inherited' in got).toBe(false);
    expect('hidden' in got).toBe(false);
  });

  it('keeps an own __proto__ key as data, as a spread does, and the prototype untouched', () => {
    const base = JSON.parse('{"a":1,"__proto__":{"polluted":true}}') as Record<string, unknown>;
    const got = extend(base, { b: 2 });
    expect(Object.getPrototypeOf(got)).toBe(Object.prototype);
    expect((got as { polluted?: boolean }).polluted).toBeUndefined();
    expect(Object.hasOwn(got, '__proto__')).toBe(true);
    expect(got).toStrictEqual({ ...base, b: 2 });
    const viaExtra = extend({ a: 1 }, base);
    expect(Object.getPrototypeOf(viaExtra)).toBe(Object.prototype);
    expect(Object.hasOwn(viaExtra, '__proto__')).toBe(true);
  });
});
