import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SwitchyardError } from './errors.js';
import { MAX_JSON_DEPTH, parseJson, parseJsonObject } from './safe-json.js';

const SEED = 20_261_123;
const RUNS = { seed: SEED, numRuns: 2_000 } as const;

/** The code parseJson threw, or 'ok'; anything that is not a SwitchyardError fails the test. */
function outcome(text: string): string {
  try {
    parseJson(text);
    return 'ok';
  } catch (err) {
    expect(err).toBeInstanceOf(SwitchyardError);
    return (err as SwitchyardError).code;
  }
}

/** JSON values without the keys the parser refuses (those are tested on their own). */
const plainJson = fc.jsonValue({ maxDepth: 6 }).filter((v) => {
  const text = JSON.stringify(v);
  return !text.includes('"__proto__"') && !text.includes('"constructor"');
});

/** Inserts `inner` as a value somewhere inside `outer`, at a depth chosen by the path. */
function embed(outer: unknown, inner: string, path: readonly number[]): string {
  if (path.length === 0) return inner;
  const [head, ...rest] = path;
  if (Array.isArray(outer) && outer.length > 0) {
    const i = head! % outer.length;
    const parts = outer.map((x) => JSON.stringify(x));
    parts[i] = embed(outer[i], inner, rest);
    return `[${parts.join(',')}]`;
  }
  if (outer !== null && typeof outer === 'object') {
    const entries = Object.entries(outer);
    if (entries.length > 0) {
      const i = head! % entries.length;
      const parts = entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
      const [key, value] = entries[i] as [string, unknown];
      parts[i] = `${JSON.stringify(key)}:${embed(value, inner, rest)}`;
      return `{${parts.join(',')}}`;
    }
  }
  return `[${JSON.stringify(outer)},${inner}]`;
}

/** A key spelled with random `\uXXXX` escapes, as an attacker would to dodge a naive scan. */
const escapedKey = (key: string): fc.Arbitrary<string> =>
  fc
    .array(fc.boolean(), { minLength: key.length, maxLength: key.length })
    .map((escape) =>
      [...key]
        .map((ch, i) =>
          escape[i] === true ? `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}` : ch,
        )
        .join(''),
    );

describe('safe JSON parsing of untrusted text', () => {
  it('never throws anything but SY_ERR_INVALID_JSON, whatever the text', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (text) => {
        expect(['ok', 'SY_ERR_INVALID_JSON']).toContain(outcome(text));
      }),
      RUNS,
    );
  });

  it('never throws anything but SY_ERR_INVALID_JSON for mangled JSON', () => {
    const mangled = fc
      .tuple(plainJson, fc.nat(), fc.nat(), fc.string({ unit: 'binary', maxLength: 8 }))
      .map(([v, a, b, junk]) => {
        const text = JSON.stringify(v);
        const i = a % (text.length + 1);
        const j = i + (b % (text.length - i + 1));
        return text.slice(0, i) + junk + text.slice(j);
      });
    fc.assert(
      fc.property(mangled, (text) => {
        expect(['ok', 'SY_ERR_INVALID_JSON']).toContain(outcome(text));
      }),
      RUNS,
    );
  });

  it('returns exactly what JSON.parse does for ordinary JSON', () => {
    fc.assert(
      fc.property(plainJson, (v) => {
        const text = JSON.stringify(v);
        expect(parseJson(text)).toEqual(JSON.parse(text));
      }),
      RUNS,
    );
  });

  it('does not count brackets, quotes or backslashes inside strings as nesting', () => {
    const tricky = fc.string({
      unit: fc.constantFrom('[', '{', '"', '\\', ']', 'a'),
      minLength: MAX_JSON_DEPTH,
      maxLength: 4 * MAX_JSON_DEPTH,
    });
    fc.assert(
      fc.property(fc.array(tricky, { minLength: 1, maxLength: 4 }), (strings) => {
        const text = JSON.stringify({ k: strings, [strings[0]!]: [strings] });
        expect(parseJson(text)).toEqual(JSON.parse(text));
      }),
      RUNS,
    );
  });

  it('refuses a number that overflows to Infinity anywhere in the document', () => {
    const huge = fc.oneof(
      fc.constantFrom('1e999', '-1e400', '2E+308', '123.5e1000'),
      fc.nat({ max: 50 }).map((n) => '9'.repeat(309 + n)),
      // A long mantissa with a short exponent (#13): 1e300 × 1e10 overflows too.
      fc.integer({ min: 1, max: 99 }).map((e) => `1${'0'.repeat(310 - e)}e${e}`),
      fc.integer({ min: 1, max: 99 }).map((e) => `-1${'0'.repeat(310 - e)}.5E+${e}`),
    );
    fc.assert(
      fc.property(plainJson, huge, fc.array(fc.nat(), { maxLength: 6 }), (v, n, path) => {
        const text = embed(v, n, path);
        expect(outcome(text)).toBe('SY_ERR_INVALID_JSON');
      }),
      RUNS,
    );
  });

  it('accepts overflow-looking text inside strings and large finite numbers', () => {
    expect(parseJson('{"a":"1e999","b":1e308,"c":-1.7976931348623157e308}')).toEqual({
      a: '1e999',
      b: 1e308,
      c: -1.7976931348623157e308,
    });
  });

  it('refuses __proto__ and constructor.prototype keys at any depth, however escaped', () => {
    const attack = fc.oneof(
      escapedKey('__proto__').map((k) => `{"${k}":{"polluted":true}}`),
      fc
        .tuple(escapedKey('constructor'), escapedKey('prototype'))
        .map(([c, p]) => `{"${c}":{"${p}":{"polluted":true}}}`),
    );
    fc.assert(
      fc.property(plainJson, attack, fc.array(fc.nat(), { maxLength: 6 }), (v, a, path) => {
        expect(outcome(embed(v, a, path))).toBe('SY_ERR_INVALID_JSON');
        expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
      }),
      RUNS,
    );
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  it('refuses nesting past the depth limit instead of overflowing the stack later', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: MAX_JSON_DEPTH + 1, max: 200_000 }),
        fc.constantFrom('1', '1e999', '{"__proto__":1}', '"x"'),
        fc.boolean(),
        (depth, leaf, objects) => {
          const open = objects ? '{"a":' : '[';
          const close = objects ? '}' : ']';
          const text = open.repeat(depth) + leaf + close.repeat(depth);
          expect(outcome(text)).toBe('SY_ERR_INVALID_JSON');
        },
      ),
      { seed: SEED, numRuns: 50 },
    );
    // Arrays and objects in turn: neither kind alone is past the limit, together they are.
    const half = MAX_JSON_DEPTH / 2 + 1;
    expect(outcome('[{"a":'.repeat(half) + '1' + '}]'.repeat(half))).toBe('SY_ERR_INVALID_JSON');
    const atLimit = '['.repeat(MAX_JSON_DEPTH) + '"]]]{{{"' + ']'.repeat(MAX_JSON_DEPTH);
    expect(() => parseJson(atLimit)).not.toThrow();
  });

  it('requires an object for request bodies', () => {
    for (const text of ['[]', '1', '"s"', 'null', 'true']) {
      expect(() => parseJsonObject(text)).toThrow(/must be a JSON object/);
    }
    expect(parseJsonObject('{"model":"m"}')).toEqual({ model: 'm' });
  });
});
