import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The repository root. */
export const ROOT = join(import.meta.dirname, '../..');

/** A file of the repository, by its path from the root. */
export const readDoc = (file: string): string => readFileSync(join(ROOT, file), 'utf8');

/** Every page the docs tests read: README.md, then docs/*.md in name order. */
export const DOC_FILES: readonly string[] = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`),
];
