import { parseAllDocuments } from 'yaml';
import { configKeyPaths } from '../support/config-keys.js';
import { codeBlocks } from './doc-examples.js';

/** The top-level keys of the config (from the schema): what a documented key path starts with. */
export const CONFIG_ROOTS: readonly string[] = [...configKeyPaths()].filter(
  (p) => !p.includes('.'),
);

/** `a.{b,c}.d` → `a.b.d`, `a.c.d`. */
export function expandBraces(key: string): string[] {
  const m = /\{([^{}]*)\}/.exec(key);
  if (m === null) return [key];
  return m[1]!
    .split(',')
    .flatMap((alt) =>
      expandBraces(key.slice(0, m.index) + alt.trim() + key.slice(m.index + m[0].length)),
    );
}

/**
 * A key as the docs write it, in the schema's form: `<name>` segments become `*`, list marks
 * `[]` go, braces expand. `tenants.<tenant>.keys[].id` → `tenants.*.keys.id`.
 */
export function normalizeKey(key: string): string[] {
  return expandBraces(key).map((k) =>
    k
      .replace(/\[\]/g, '')
      .split('.')
      .map((seg) => (/^<[^>]+>$/.test(seg) ? '*' : seg))
      .join('.'),
  );
}

/** Inline code spans of a Markdown text, outside fenced blocks. */
export function inlineCode(markdown: string): string[] {
  const out: string[] = [];
  let inFence = false;
  for (const line of markdown.split('\n')) {
    if (/^\s{0,3}(```|~~~)/.test(line)) {
      inFence = !inFence;
      continue;
    }
    if (inFence) continue;
    for (const m of line.matchAll(/`([^`]+)`/g)) out.push(m[1]!);
  }
  return out;
}

const ROOTS = new Set<string>(CONFIG_ROOTS);

/**
 * The config keys a doc names in inline code: dotted names under a top-level config key.
 * `features.<name>` without `store` or `definitions` is a journey path, not a key.
 */
export function namedKeys(markdown: string): string[] {
  return (
    inlineCode(markdown)
      .map((c) => c.trim())
      .filter((c) => /^[a-z_]+(\[\])?\.[a-z0-9_.<>{},\[\]-]+$/.test(c))
      .filter((c) => ROOTS.has(c.split(/[.[]/)[0]!))
      .filter((c) => !/^features\.(?!store|definitions)/.test(c))
      // Span names that share a root with the config (docs/observability.md, traces).
      .filter((c) => c !== 'cache.lookup')
  );
}

/** The keys named in the first column of a Markdown table row. */
export function tableKeys(markdown: string): string[] {
  const out: string[] = [];
  for (const line of markdown.split('\n')) {
    const cell = /^\|\s*`([^`]+)`\s*\|/.exec(line);
    if (cell !== null && ROOTS.has(cell[1]!.split(/[.[]/)[0]!)) out.push(cell[1]!);
  }
  return out;
}

/** Whether `path` (schema form, concrete names allowed) is a key or a prefix of one. */
export function knownKey(path: string, paths: ReadonlySet<string>): boolean {
  const want = path.split('.');
  for (const p of paths) {
    const have = p.split('.');
    if (have.length < want.length) continue;
    if (want.every((seg, i) => have[i] === '*' || have[i] === seg || seg === '*')) return true;
  }
  return false;
}

/** Whether the schema takes nothing below `path` (a scalar, a list of scalars, a free-form map). */
function isLeaf(path: string, paths: ReadonlySet<string>): boolean {
  return (
    !knownKey(`${path}.x`, paths) &&
    ![...paths].some((p) => {
      const have = p.split('.');
      const want = path.split('.');
      return (
        have.length > want.length && want.every((seg, i) => have[i] === '*' || have[i] === seg)
      );
    })
  );
}

/** Every key path of the config fragments in a doc's `yaml` blocks that the schema does not take. */
export function unknownYamlKeys(markdown: string, paths: ReadonlySet<string>): string[] {
  const bad: string[] = [];
  for (const b of codeBlocks(markdown)) {
    if (b.lang !== 'yaml' && b.lang !== 'yml') continue;
    for (const doc of parseAllDocuments(b.text)) {
      const value: unknown = doc.toJS();
      if (value === null || typeof value !== 'object' || Array.isArray(value)) continue;
      // Only fragments of a config file: every top-level key is a config section.
      if (!Object.keys(value).every((k) => ROOTS.has(k))) continue;
      const walk = (v: unknown, path: string): void => {
        if (Array.isArray(v)) {
          for (const item of v) walk(item, path);
          return;
        }
        if (v === null || typeof v !== 'object') return;
        for (const [k, child] of Object.entries(v)) {
          const p = path === '' ? k : `${path}.${k}`;
          if (!knownKey(p, paths)) {
            bad.push(`line ${b.line}: ${p}`);
            continue;
          }
          if (!isLeaf(p, paths)) walk(child, p);
        }
      };
      walk(value, '');
    }
  }
  return bad;
}
