import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DOC_FILES, readDoc, ROOT } from './doc-files.js';

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/`/g, '')
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');
}

function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  let inFence = false;
  for (const line of markdown.split('\n')) {
    if (/^\s{0,3}(```|~~~)/.test(line)) inFence = !inFence;
    const h = inFence ? null : /^#{1,6}\s+(.*)$/.exec(line);
    if (h !== null) out.add(slug(h[1]!));
  }
  return out;
}

describe('links in the README, docs/ and bench/README.md', () => {
  it('point to files that exist, and to headings those files have', () => {
    const bad: string[] = [];
    for (const file of [...DOC_FILES, 'bench/README.md']) {
      const text = readDoc(file).replace(/```[\s\S]*?```/g, '');
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue; // http:, https:, mailto:
        const [path, anchor] = target.split('#') as [string, string | undefined];
        const abs = path === '' ? join(ROOT, file) : join(ROOT, dirname(file), path);
        if (!existsSync(abs)) {
          bad.push(`${file}: ${target} (no ${relative(ROOT, abs)})`);
          continue;
        }
        if (
          anchor !== undefined &&
          abs.endsWith('.md') &&
          !anchors(readFileSync(abs, 'utf8')).has(anchor)
        )
          bad.push(`${file}: ${target} (no such heading)`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('make anchors as GitHub does', () => {
    expect(slug('Classes, admission and modes')).toBe('classes-admission-and-modes');
    expect(slug('The `index` commands')).toBe('the-index-commands');
  });
});
