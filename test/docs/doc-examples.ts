/**
 * The documented examples of README.md and docs/*.md, as the docs-examples test runs them.
 * The format (docs/README.md describes it for writers):
 *
 * - An example is a fenced `sh` block (one shell command, usually curl, possibly piped to jq)
 *   followed directly (only blank lines between) by a fenced `json`, `text` or `http` block:
 *   what the command prints.
 * - An `sh` block of only `export NAME=value` lines sets variables for the examples after it.
 * - `…` stands for what changes between runs (ids, timestamps, latencies): in a `json` block a
 *   string holding `…` matches any value whose text fits the pattern (`"…"` alone: any value),
 *   a `"…": "…"` member allows other members, and a last `"…"` item allows more items; in
 *   `text` lines, `http` status and header lines, `…` matches any characters, and a line of
 *   only `…` any number of lines.
 * - An `http` block is what `curl -si` prints: the status line, the headers that matter (others
 *   are allowed), a blank line and the body (compared as JSON when it is JSON).
 */

export const WILDCARD = '…';

export interface CodeBlock {
  readonly lang: string;
  readonly text: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  /** True when only blank lines separate this block from the previous one. */
  readonly adjacent: boolean;
}

/** Every fenced code block of a Markdown text, in order. */
export function codeBlocks(markdown: string): CodeBlock[] {
  const lines = markdown.split('\n');
  const out: CodeBlock[] = [];
  let onlyBlank = false;
  for (let i = 0; i < lines.length; i++) {
    const open = /^( {0,3})(`{3,}|~{3,})\s*([^\s`]*)/.exec(lines[i]!);
    if (open === null) {
      if (lines[i]!.trim() !== '') onlyBlank = false;
      continue;
    }
    const indent = open[1]!.length;
    const fence = open[2]!;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const l = lines[j]!;
      const t = l.trim();
      if (t.startsWith(fence) && t.replaceAll(fence[0]!, '') === '') break;
      body.push(l.slice(Math.min(indent, l.length - l.trimStart().length)));
    }
    out.push({
      lang: open[3]!.toLowerCase(),
      text: body.join('\n'),
      line: i + 1,
      adjacent: onlyBlank,
    });
    i = j;
    onlyBlank = true;
  }
  return out;
}

export type OutputKind = 'json' | 'text' | 'http';

export type DocStep =
  | { readonly kind: 'env'; readonly line: number; readonly vars: Readonly<Record<string, string>> }
  | {
      readonly kind: 'example';
      readonly line: number;
      readonly command: string;
      readonly output: OutputKind;
      readonly expected: string;
    };

export interface DocExamples {
  readonly steps: readonly DocStep[];
  /** `sh` blocks that call the example gateway but show no output to check. */
  readonly unchecked: readonly { readonly line: number; readonly command: string }[];
}

const EXPORT = /^export ([A-Z_][A-Z0-9_]*)=(\S+)(\s+#.*)?$/;
const OUTPUT_KINDS: readonly string[] = ['json', 'text', 'http'];
/** Where the docs say the gateway is: `npm start`'s address. */
const DOC_GATEWAY = /\b(https?:\/\/)?(?:127\.0\.0\.1|localhost):8080\b/g;

/** The steps of one Markdown file: variables to set and examples to run, in order. */
export function docExamples(markdown: string): DocExamples {
  const blocks = codeBlocks(markdown);
  const steps: DocStep[] = [];
  const unchecked: { line: number; command: string }[] = [];
  blocks.forEach((b, i) => {
    if (b.lang !== 'sh') return;
    const lines = b.text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    if (lines.length > 0 && lines.every((l) => EXPORT.test(l))) {
      const vars: Record<string, string> = {};
      for (const l of lines) {
        const m = EXPORT.exec(l)!;
        vars[m[1]!] = m[2]!.replace(/^'(.*)'$/, '$1');
      }
      steps.push({ kind: 'env', line: b.line, vars });
      return;
    }
    const next = blocks[i + 1];
    if (next !== undefined && next.adjacent && OUTPUT_KINDS.includes(next.lang)) {
      steps.push({
        kind: 'example',
        line: b.line,
        command: b.text,
        output: next.lang as OutputKind,
        expected: next.text,
      });
      return;
    }
    if (/\bcurl\b/.test(b.text) && new RegExp(DOC_GATEWAY.source).test(b.text))
      unchecked.push({ line: b.line, command: b.text });
  });
  return { steps, unchecked };
}

/** The command with `npm start`'s address replaced by `base` (`http://127.0.0.1:<port>`). */
export function pointAt(command: string, base: string): string {
  const host = base.replace(/^https?:\/\//, '');
  return command.replace(DOC_GATEWAY, (_m, scheme: string | undefined) =>
    scheme === undefined ? host : base,
  );
}

// ---- matching ----

function globRegExp(pattern: string): RegExp {
  const parts = pattern.split(WILDCARD).map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
  return new RegExp(`^${parts.join('[\\s\\S]*')}$`);
}

/** A line or value against a pattern where `…` matches any characters. */
export function globMatch(pattern: string, text: string): boolean {
  return pattern.includes(WILDCARD) ? globRegExp(pattern).test(text) : pattern === text;
}

const show = (v: unknown): string => {
  const s = JSON.stringify(v);
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
};

/** Compares JSON values under the placeholder rules; returns the differences found. */
export function matchJson(expected: unknown, actual: unknown, at = '$'): string[] {
  if (typeof expected === 'string' && expected.includes(WILDCARD)) {
    if (expected === WILDCARD) return actual === undefined ? [`${at}: missing`] : [];
    const text = typeof actual === 'string' ? actual : JSON.stringify(actual);
    return text !== undefined && globMatch(expected, text)
      ? []
      : [`${at}: expected ${show(expected)}, got ${show(actual)}`];
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual)) return [`${at}: expected an array, got ${show(actual)}`];
    const open = expected.length > 0 && expected[expected.length - 1] === WILDCARD;
    const items = open ? expected.slice(0, -1) : expected;
    if (open ? actual.length < items.length : actual.length !== items.length)
      return [
        `${at}: expected ${open ? 'at least ' : ''}${items.length} items, got ${actual.length}`,
      ];
    return items.flatMap((e, i) => matchJson(e, actual[i], `${at}[${i}]`));
  }
  if (expected !== null && typeof expected === 'object') {
    if (actual === null || typeof actual !== 'object' || Array.isArray(actual))
      return [`${at}: expected an object, got ${show(actual)}`];
    const e = expected as Record<string, unknown>;
    const a = actual as Record<string, unknown>;
    const open = e[WILDCARD] === WILDCARD;
    const problems: string[] = [];
    for (const k of Object.keys(e)) {
      if (k === WILDCARD && open) continue;
      if (!Object.hasOwn(a, k)) problems.push(`${at}.${k}: missing`);
      else problems.push(...matchJson(e[k], a[k], `${at}.${k}`));
    }
    if (!open)
      for (const k of Object.keys(a))
        if (!Object.hasOwn(e, k))
          problems.push(`${at}.${k}: not shown in the docs (${show(a[k])})`);
    return problems;
  }
  return Object.is(expected, actual)
    ? []
    : [`${at}: expected ${show(expected)}, got ${show(actual)}`];
}

/** Splits a text holding several JSON values (jq's output, or one after another) into values. */
export function parseJsonStream(text: string): unknown[] {
  const out: unknown[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    while (i < n && /\s/.test(text[i]!)) i++;
    if (i >= n) break;
    const start = i;
    const c = text[i]!;
    if (c === '{' || c === '[') {
      let depth = 0;
      let inString = false;
      for (; i < n; i++) {
        const ch = text[i]!;
        if (inString) {
          if (ch === '\\') i++;
          else if (ch === '"') inString = false;
        } else if (ch === '"') inString = true;
        else if (ch === '{' || ch === '[') depth++;
        else if (ch === '}' || ch === ']') {
          depth--;
          if (depth === 0) {
            i++;
            break;
          }
        }
      }
    } else if (c === '"') {
      for (i++; i < n && text[i] !== '"'; i++) if (text[i] === '\\') i++;
      i++;
    } else while (i < n && !/\s/.test(text[i]!)) i++;
    out.push(JSON.parse(text.slice(start, i)));
  }
  return out;
}

/** Text compared line by line: `…` in a line matches any characters; a `…` line, any lines. */
export function matchText(expected: string, actual: string): string[] {
  const want = trimLines(expected);
  const got = trimLines(actual);
  const memo = new Map<string, boolean>();
  const fits = (w: number, g: number): boolean => {
    const key = `${w}:${g}`;
    const hit = memo.get(key);
    if (hit !== undefined) return hit;
    let ok: boolean;
    if (w === want.length) ok = g === got.length;
    else if (want[w] === WILDCARD) ok = fits(w + 1, g) || (g < got.length && fits(w, g + 1));
    else ok = g < got.length && globMatch(want[w]!, got[g]!) && fits(w + 1, g + 1);
    memo.set(key, ok);
    return ok;
  };
  if (fits(0, 0)) return [];
  return [`expected:\n${want.join('\n')}\ngot:\n${got.join('\n')}`];
}

function trimLines(text: string): string[] {
  const lines = text
    .replace(/\r\n/g, '\n')
    .split('\n')
    .map((l) => l.trimEnd());
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  while (lines.length > 0 && lines[0] === '') lines.shift();
  return lines;
}

/** A body: as JSON values when the docs show JSON (always, for a `json` block), else as text. */
function matchBody(expected: string, actual: string, json: boolean): string[] {
  let want: unknown[] | undefined;
  try {
    want = parseJsonStream(expected);
  } catch (err) {
    if (json) return [`the docs' json block is not JSON: ${String(err)}`];
    want = undefined;
  }
  if (want === undefined || want.length === 0) return matchText(expected, actual);
  let got: unknown[];
  try {
    got = parseJsonStream(actual);
  } catch {
    return [`expected JSON, got:\n${actual}`];
  }
  if (got.length !== want.length)
    return [`expected ${want.length} JSON value(s), got ${got.length}:\n${actual}`];
  return want.flatMap((w, i) => matchJson(w, got[i], want.length === 1 ? '$' : `$${i}`));
}

/** What `curl -si` printed against an `http` block: status, the shown headers, the body. */
export function matchHttp(expected: string, actual: string): string[] {
  const split = (text: string): { head: string[]; body: string } => {
    const t = text.replace(/\r\n/g, '\n').replace(/^\n+/, '');
    const cut = t.indexOf('\n\n');
    const head = (cut < 0 ? t : t.slice(0, cut)).split('\n');
    return { head, body: cut < 0 ? '' : t.slice(cut + 2) };
  };
  const want = split(expected);
  const got = split(actual);
  const problems: string[] = [];
  const [status, ...headers] = want.head;
  if (!globMatch(status!.trim(), (got.head[0] ?? '').trim()))
    problems.push(`status: expected ${status}, got ${got.head[0]}`);
  const have = new Map<string, string[]>();
  for (const h of got.head.slice(1)) {
    const c = h.indexOf(':');
    const name = h.slice(0, c).trim().toLowerCase();
    have.set(name, [...(have.get(name) ?? []), h.slice(c + 1).trim()]);
  }
  for (const h of headers) {
    const c = h.indexOf(':');
    const name = h.slice(0, c).trim().toLowerCase();
    const value = h.slice(c + 1).trim();
    const values = have.get(name);
    if (values === undefined) problems.push(`header ${name}: missing`);
    else if (!values.some((v) => globMatch(value, v)))
      problems.push(`header ${name}: expected ${value}, got ${values.join(', ')}`);
  }
  problems.push(...matchBody(want.body, got.body, false));
  return problems;
}

/** A command's output against the block the docs show after it. */
export function matchOutput(kind: OutputKind, expected: string, actual: string): string[] {
  if (kind === 'http') return matchHttp(expected, actual);
  if (kind === 'text') return matchText(expected, actual);
  return matchBody(expected, actual, true);
}
