import type { JsonObject, JsonValue } from '../contracts/json.js';
import type { JourneyState, StageContext } from '../contracts/stage.js';

/** Reads one value of the journey state; undefined when the path leads nowhere. */
export type Getter = (state: JourneyState, ctx: StageContext) => JsonValue | undefined;

/** Names a path may start with besides a stage id. */
export const PATH_ROOTS = [
  'input',
  'attr',
  'features',
  'last',
  'confidence',
  'label',
  'budget_ms',
  'tenant',
  'journey',
] as const;

const SEGMENT = /^[A-Za-z0-9_-]+$/;

/** Validates paths against the journey's stage ids and reports problems with their config path. */
export class PathCompiler {
  constructor(
    private readonly stageIds: ReadonlySet<string>,
    readonly problemAt: (where: string, message: string) => void,
  ) {}

  /** `input.text`, `intent.label`, `attr.user`, `features.user.rides_7d`, `items[0].id`, ... */
  path(expr: string, where: string): Getter {
    const segments = splitPath(expr);
    if (segments === undefined) {
      this.problemAt(where, `"${expr}" is not a path (use names joined by "." and [n] indexes)`);
      return () => undefined;
    }
    const [root, ...rest] = segments;
    const tail = (value: JsonValue | undefined): JsonValue | undefined => walk(value, rest);
    switch (root) {
      case 'input':
        return (s) => tail(s.input);
      case 'attr':
        return (s) => tail(s.attributes);
      case 'features': {
        // Feature names contain dots (`user.rides_7d`): try the longest name first.
        const joined = rest.join('.');
        if (rest.length === 0) return (s) => visibleFeatures(s);
        return (s) => {
          if (Object.hasOwn(s.features, joined))
            return withheld(s, `features.${joined}`) ? undefined : s.features[joined];
          const first = rest[0];
          if (typeof first === 'string' && withheld(s, `features.${first}`)) return undefined;
          return walk(s.features, rest);
        };
      }
      case 'last':
        return (s) =>
          s.lastSource === undefined ? tail(s.last) : tail(output(s, s.lastSource, s.last));
      case 'confidence':
        return (s) => s.confidence;
      case 'label':
        return (s) => s.label;
      case 'budget_ms':
        return (_s, ctx) => ctx.remainingMs();
      case 'tenant':
        return (_s, ctx) => ctx.tenant;
      case 'journey':
        return (s) => s.journey;
      default:
        if (root === undefined || typeof root === 'number' || !this.stageIds.has(root)) {
          this.problemAt(
            where,
            `"${expr}" starts with "${String(root)}", which is neither a stage id nor one of ${PATH_ROOTS.join(', ')}`,
          );
          return () => undefined;
        }
        return (s) => tail(output(s, `stage:${root}`, s.outputs.get(root)));
    }
  }

  /**
   * A declarative mapping: a string is a path; `{ const: v }` a literal; `{ template: "..{path}.." }`
   * a string with paths interpolated; other objects and arrays map each member; numbers,
   * booleans and null are literals.
   */
  mapping(spec: unknown, where: string): Getter {
    if (typeof spec === 'string') return this.path(spec, where);
    if (spec === null || typeof spec === 'number' || typeof spec === 'boolean') {
      const v = spec;
      return () => v;
    }
    if (Array.isArray(spec)) {
      const parts = spec.map((x, i) => this.mapping(x, `${where}[${i}]`));
      return (s, c) => parts.map((g) => g(s, c) ?? null);
    }
    if (typeof spec === 'object') {
      const obj = spec as Record<string, unknown>;
      const keys = Object.keys(obj);
      if (keys.length === 1 && keys[0] === 'const') {
        const v = obj['const'] as JsonValue;
        return () => v;
      }
      if (keys.length === 1 && keys[0] === 'template') return this.template(obj['template'], where);
      const parts = keys.map((k) => [k, this.mapping(obj[k], `${where}.${k}`)] as const);
      return (s, c) => {
        const out: JsonObject = {};
        for (const [k, g] of parts) {
          const v = g(s, c);
          if (v !== undefined) out[k] = v;
        }
        return out;
      };
    }
    this.problemAt(
      where,
      'must be a path, a literal, { const }, { template } or an object of those',
    );
    return () => undefined;
  }

  private template(text: unknown, where: string): Getter {
    if (typeof text !== 'string') {
      this.problemAt(`${where}.template`, 'must be a string');
      return () => undefined;
    }
    const parts: (string | Getter)[] = [];
    const re = /\{([^{}]+)\}/g;
    let last = 0;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      parts.push(text.slice(last, m.index));
      parts.push(this.path(m[1]!.trim(), `${where}.template`));
      last = m.index + m[0].length;
    }
    parts.push(text.slice(last));
    return (s, c) => {
      let out = '';
      for (const p of parts) {
        if (typeof p === 'string') out += p;
        else {
          const v = p(s, c);
          out += v === undefined || v === null ? '' : typeof v === 'string' ? v : JSON.stringify(v);
        }
      }
      return out;
    };
  }
}

/**
 * Notes that a path read `source` (while a stage traces what its request is built from) and
 * says whether that source is withheld from the request being built (it then reads as absent).
 */
function withheld(s: JourneyState, source: string): boolean {
  s.reads?.add(source);
  return s.withheld?.has(source) === true;
}

/**
 * A stage's output as a request being built may see it: absent when the output itself is
 * withheld; built again without the withheld data when it was derived from some (a transform
 * that templated a feature); as stored otherwise.
 */
function output(
  s: JourneyState,
  source: string,
  value: JsonValue | undefined,
): JsonValue | undefined {
  if (withheld(s, source)) return undefined;
  const w = s.withheld;
  if (w === undefined || w.size === 0) return value;
  const d = s.derived.get(source);
  if (d !== undefined && d.roots.some((r) => w.has(r.source))) return d.recompute(w);
  return value;
}

/** The whole `features` map, without the withheld ones. */
function visibleFeatures(s: JourneyState): JsonObject {
  const out: JsonObject = {};
  for (const [name, v] of Object.entries(s.features))
    if (!withheld(s, `features.${name}`)) out[name] = v;
  return out;
}

/** `a.b[2].c` → ['a', 'b', 2, 'c']; undefined when malformed. */
export function splitPath(expr: string): (string | number)[] | undefined {
  if (expr === '') return undefined;
  const out: (string | number)[] = [];
  for (const dotted of expr.split('.')) {
    const m = /^([^[\]]*)((?:\[\d+\])*)$/.exec(dotted);
    if (m === null) return undefined;
    const name = m[1]!;
    if (name !== '') {
      if (!SEGMENT.test(name)) return undefined;
      out.push(name);
    } else if (m[2] === '') return undefined;
    for (const idx of m[2]!.matchAll(/\[(\d+)\]/g)) out.push(Number(idx[1]));
  }
  return typeof out[0] === 'string' ? out : undefined;
}

function walk(
  value: JsonValue | undefined,
  rest: readonly (string | number)[],
): JsonValue | undefined {
  let v = value;
  for (const seg of rest) {
    if (v === undefined || v === null || typeof v !== 'object') return undefined;
    if (typeof seg === 'number') {
      if (!Array.isArray(v)) return undefined;
      v = v[seg];
    } else {
      if (Array.isArray(v) || !Object.hasOwn(v, seg)) return undefined;
      v = v[seg];
    }
  }
  return v;
}

/** Text of a value for models and cache keys: strings as they are, the rest as JSON. */
export function asText(value: JsonValue | undefined): string | undefined {
  if (value === undefined || value === null) return undefined;
  return typeof value === 'string' ? value : JSON.stringify(value);
}
