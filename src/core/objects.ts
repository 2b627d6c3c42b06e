/**
 * A copy of `base` with the own properties of `extra` set over it: what `{ ...base, ...extra }`
 * makes, for the request path.
 *
 * On Node 20 (V8 11.3), an object literal that spreads an object and then defines a key that
 * object lacks (`{ ...req, ticket }`, `{ ...headers, ...(x ? { a } : {}) }`) takes V8's slow
 * path for each such key: ~1 µs per key, where this copy costs ~0.1 µs in all (`npm run
 * bench:object-spread`; `src/core/objects.test.ts` checks it makes what the spread makes). The
 * change took a journey through the model-call pipeline from 34 to 17 µs (bench:journeys). A
 * literal that only overrides keys the spread object has (`{ ...body, model }` with `body.model`
 * set) is fast, and so is a literal whose spread comes after its own keys.
 */
export function extend<A extends object, B extends object>(base: A, extra: B): Extended<A, B> {
  // Object.assign sets keys, so an own `__proto__` key (JSON.parse makes them) would set the
  // copy's prototype; the literal defines it as data, as a spread must.
  if (Object.hasOwn(base, '__proto__') || Object.hasOwn(extra, '__proto__'))
    return { ...base, ...extra } as unknown as Extended<A, B>;
  return Object.assign({}, base, extra) as unknown as Extended<A, B>;
}

/** `{ ...A, ...B }` as a type, member by member when `A` is a union. */
export type Extended<A, B> = A extends unknown ? Omit<A, keyof B> & B : never;
