import type { JsonValue } from '../contracts/json.js';
import type { JourneyState, StageContext } from '../contracts/stage.js';
import type { Getter, PathCompiler } from './paths.js';

/**
 * Branch conditions: a small, closed expression language compiled once at config load.
 *
 *   cond    := or
 *   or      := and ("or" and)*
 *   and     := unary ("and" unary)*
 *   unary   := "not" unary | compare
 *   compare := operand (("<" | "<=" | ">" | ">=" | "==" | "!=" | "in") operand)?
 *   operand := number | 'text' | "text" | true | false | null | [operand, ...] | path | "(" cond ")"
 *
 * Paths are those of `paths.ts` (`confidence`, `label`, `budget_ms`, `attr.plan`,
 * `features.user.rides_7d`, `<stage>.<field>`). A missing value compares false (and is falsy).
 */
export interface Condition {
  readonly source: string;
  test(state: JourneyState, ctx: StageContext): boolean;
  /** The values the condition read, for the route's reason: `confidence=0.93 label=refund`. */
  explain(state: JourneyState, ctx: StageContext): string;
}

type Eval = (s: JourneyState, c: StageContext) => JsonValue | undefined;

interface Token {
  readonly t: 'num' | 'str' | 'op' | 'word' | 'punct';
  readonly v: string;
}

const TOKEN =
  /\s*(?:(-?\d+(?:\.\d+)?(?:e-?\d+)?)|'([^']*)'|"([^"]*)"|(<=|>=|==|!=|<|>)|([A-Za-z_][A-Za-z0-9_.[\]-]*)|([()[\],]))/y;

function tokenize(src: string): Token[] | string {
  const out: Token[] = [];
  TOKEN.lastIndex = 0;
  let pos = 0;
  while (pos < src.length) {
    if (/^\s*$/.test(src.slice(pos))) break;
    TOKEN.lastIndex = pos;
    const m = TOKEN.exec(src);
    if (m === null) return `unexpected "${src.slice(pos).trim().slice(0, 20)}"`;
    pos = TOKEN.lastIndex;
    if (m[1] !== undefined) out.push({ t: 'num', v: m[1] });
    else if (m[2] !== undefined) out.push({ t: 'str', v: m[2] });
    else if (m[3] !== undefined) out.push({ t: 'str', v: m[3] });
    else if (m[4] !== undefined) out.push({ t: 'op', v: m[4] });
    else if (m[5] !== undefined) out.push({ t: 'word', v: m[5] });
    else out.push({ t: 'punct', v: m[6]! });
  }
  return out;
}

class ParseError extends Error {}

export function compileCondition(source: string, where: string, paths: PathCompiler): Condition {
  const tokens = tokenize(source);
  const used = new Map<string, Getter>();
  let fn: Eval;
  try {
    if (typeof tokens === 'string') throw new ParseError(tokens);
    let i = 0;
    const peek = (): Token | undefined => tokens[i];
    const take = (): Token => {
      const t = tokens[i++];
      if (t === undefined) throw new ParseError('the condition ends too early');
      return t;
    };
    const isWord = (w: string): boolean => peek()?.t === 'word' && peek()?.v === w;
    const expect = (v: string): void => {
      const t = take();
      if (t.v !== v) throw new ParseError(`expected "${v}", found "${t.v}"`);
    };
    const operand = (): Eval => {
      const t = take();
      if (t.t === 'num') {
        const n = Number(t.v);
        return () => n;
      }
      if (t.t === 'str') return () => t.v;
      if (t.t === 'punct' && t.v === '(') {
        const inner = or();
        expect(')');
        return inner;
      }
      if (t.t === 'punct' && t.v === '[') {
        const items: Eval[] = [];
        if (peek()?.v !== ']') {
          items.push(operand());
          while (peek()?.v === ',') {
            take();
            items.push(operand());
          }
        }
        expect(']');
        return (s, c) => items.map((e) => e(s, c) ?? null);
      }
      if (t.t === 'word') {
        if (t.v === 'true') return () => true;
        if (t.v === 'false') return () => false;
        if (t.v === 'null') return () => null;
        if (['and', 'or', 'not', 'in'].includes(t.v))
          throw new ParseError(`"${t.v}" where a value was expected`);
        const g = paths.path(t.v, where);
        used.set(t.v, g);
        return g;
      }
      throw new ParseError(`unexpected "${t.v}"`);
    };
    const compare = (): Eval => {
      const left = operand();
      const t = peek();
      if (t?.t === 'op' || (t?.t === 'word' && t.v === 'in')) {
        take();
        const right = operand();
        return comparator(t.v, left, right);
      }
      return left;
    };
    const unary = (): Eval => {
      if (isWord('not')) {
        take();
        const inner = unary();
        return (s, c) => !truthy(inner(s, c));
      }
      return compare();
    };
    const and = (): Eval => {
      let left = unary();
      while (isWord('and')) {
        take();
        const l = left;
        const r = unary();
        left = (s, c) => truthy(l(s, c)) && truthy(r(s, c));
      }
      return left;
    };
    const or = (): Eval => {
      let left = and();
      while (isWord('or')) {
        take();
        const l = left;
        const r = and();
        left = (s, c) => truthy(l(s, c)) || truthy(r(s, c));
      }
      return left;
    };
    fn = or();
    if (i < tokens.length) throw new ParseError(`unexpected "${tokens[i]!.v}"`);
  } catch (err) {
    if (!(err instanceof ParseError)) throw err;
    paths.problemAt(where, `cannot parse condition "${source}": ${err.message}`);
    fn = () => false;
  }
  const getters = [...used];
  return {
    source,
    test: (s, c) => truthy(fn(s, c)),
    explain: (s, c) =>
      getters
        .map(([name, g]) => {
          const v = g(s, c);
          return `${name}=${v === undefined ? 'missing' : typeof v === 'number' ? round(v) : JSON.stringify(v)}`;
        })
        .join(' '),
  };
}

function round(n: number): string {
  return String(Math.round(n * 1000) / 1000);
}

function truthy(v: JsonValue | undefined): boolean {
  return v !== undefined && v !== null && v !== false && v !== 0 && v !== '';
}

function comparator(op: string, l: Eval, r: Eval): Eval {
  switch (op) {
    case '==':
      return (s, c) => equal(l(s, c), r(s, c));
    case '!=':
      return (s, c) => {
        const a = l(s, c);
        return a !== undefined && !equal(a, r(s, c));
      };
    case 'in':
      return (s, c) => {
        const a = l(s, c);
        const b = r(s, c);
        if (a === undefined || !Array.isArray(b)) return false;
        return b.some((x) => equal(a, x));
      };
    default: {
      const cmp = ORDER[op]!;
      return (s, c) => {
        const a = l(s, c);
        const b = r(s, c);
        if (typeof a === 'number' && typeof b === 'number') return cmp(a, b);
        if (typeof a === 'string' && typeof b === 'string')
          return cmp(a < b ? -1 : a > b ? 1 : 0, 0);
        return false;
      };
    }
  }
}

const ORDER: Record<string, (a: number, b: number) => boolean> = {
  '<': (a, b) => a < b,
  '<=': (a, b) => a <= b,
  '>': (a, b) => a > b,
  '>=': (a, b) => a >= b,
};

function equal(a: JsonValue | undefined, b: JsonValue | undefined): boolean {
  if (a === undefined || b === undefined) return false;
  if (a === b) return true;
  if (typeof a === 'object' && typeof b === 'object')
    return JSON.stringify(a) === JSON.stringify(b);
  return false;
}
