import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isJsonObject } from '../../core/safe-json.js';
import type { ModelCard } from './model-card.js';

/**
 * A model store is a directory with one subdirectory per version (`<store>/<version>/model.onnx`,
 * optionally `model.json`), as in Triton's model repository. Dropping a new version directory
 * in is how a data scientist ships a version without a restart.
 */
export interface StoredVersion {
  readonly version: string;
  readonly dir: string;
  readonly modelPath: string;
  readonly card: ModelCard | undefined;
  /** Changes when the model file changes (size and mtime). */
  readonly stamp: string;
}

const VERSION = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** Numeric-aware version order: 2 < 10, 1.2 < 1.10. */
export function compareVersions(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

async function readCard(dir: string): Promise<ModelCard | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, 'model.json'), 'utf8');
  } catch {
    return undefined;
  }
  const value: unknown = JSON.parse(text);
  if (!isJsonObject(value) || typeof value['task'] !== 'string')
    throw new Error(`${dir}/model.json: "task" is missing`);
  return value as unknown as ModelCard;
}

/** The versions present in a store, oldest first. A version whose card is broken is reported, not skipped silently. */
export async function scanStore(
  store: string,
): Promise<{ versions: StoredVersion[]; problems: string[]; incomplete: string[] }> {
  const versions: StoredVersion[] = [];
  const problems: string[] = [];
  /** Version directories without a model.onnx yet (still being copied in). */
  const incomplete: string[] = [];
  let entries;
  try {
    entries = await readdir(store, { withFileTypes: true });
  } catch (err) {
    return {
      versions,
      incomplete,
      problems: [
        `cannot read the model store ${store}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`,
      ],
    };
  }
  for (const e of entries) {
    if (!e.isDirectory() || !VERSION.test(e.name)) continue;
    const dir = join(store, e.name);
    const modelPath = join(dir, 'model.onnx');
    let st;
    try {
      st = await stat(modelPath);
    } catch {
      incomplete.push(e.name); // a version directory still being written
      continue;
    }
    try {
      const card = await readCard(dir);
      versions.push({ version: e.name, dir, modelPath, card, stamp: `${st.size}:${st.mtimeMs}` });
    } catch (err) {
      problems.push(`version ${e.name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  versions.sort((a, b) => compareVersions(a.version, b.version));
  return { versions, problems, incomplete };
}

export type VersionPolicy =
  'all' | { readonly latest: number } | { readonly specific: readonly string[] };

/** The versions a policy serves, from the versions present (oldest first). */
export function selectVersions(
  present: readonly StoredVersion[],
  policy: VersionPolicy,
): StoredVersion[] {
  if (policy === 'all') return [...present];
  if ('latest' in policy) return present.slice(Math.max(0, present.length - policy.latest));
  return present.filter((v) => policy.specific.includes(v.version));
}
