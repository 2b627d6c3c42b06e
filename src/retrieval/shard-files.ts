import { mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { VectorMetadata, VectorMetric } from '../contracts/vector-index.js';
import { syError } from '../core/errors.js';

const FORMAT = 1;

/** What a shard writes beside its ANN file: metadata per slot, and the raw vectors. */
export interface ShardHeader {
  readonly format: number;
  readonly id: string;
  readonly dims: number;
  readonly metric: VectorMetric;
  /** Rows in `vectors.f32` (the slab's high-water mark). */
  readonly rows: number;
  readonly entries: readonly (readonly [slot: number, id: string, meta: VectorMetadata])[];
}

export interface LoadedShard {
  readonly header: ShardHeader;
  readonly vectors: Float32Array;
  /** The ANN file of this generation, when the shard has one. */
  readonly annPath: string;
}

/**
 * Writes one generation `gen-<n>/` (vectors.f32, meta.json, and the ANN file through `writeAnn`),
 * then points `CURRENT` at it with an atomic rename, then removes older generations. A crash at
 * any point leaves the previous generation readable.
 */
export async function writeShardFiles(
  dir: string,
  header: ShardHeader,
  vectors: Float32Array,
  writeAnn: ((path: string) => void) | undefined,
): Promise<void> {
  await mkdir(dir, { recursive: true });
  const gen = `gen-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  const genDir = join(dir, gen);
  await mkdir(genDir);
  // The ANN file is written first and synchronously: it reflects the same instant as `header`.
  writeAnn?.(join(genDir, 'index.usearch'));
  await writeFile(
    join(genDir, 'vectors.f32'),
    new Uint8Array(vectors.buffer, vectors.byteOffset, header.rows * header.dims * 4),
  );
  await writeFile(join(genDir, 'meta.json'), JSON.stringify(header));
  await writeFile(join(dir, 'CURRENT.tmp'), gen);
  await rename(join(dir, 'CURRENT.tmp'), join(dir, 'CURRENT'));
  for (const name of await readdir(dir)) {
    if (name.startsWith('gen-') && name !== gen)
      await rm(join(dir, name), { recursive: true, force: true });
  }
}

/** Reads the current generation, or undefined when the directory holds no shard yet. */
export async function readShardFiles(dir: string): Promise<LoadedShard | undefined> {
  const current = await readShardHeader(dir);
  if (current === undefined) return undefined;
  const { genDir, header } = current;
  const raw = await readFile(join(genDir, 'vectors.f32'));
  const vectors =
    raw.byteOffset % 4 === 0
      ? new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4)
      : new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  return { header, vectors, annPath: join(genDir, 'index.usearch') };
}

/** The current generation's header (not its vectors), or undefined when there is none yet. */
export async function readShardHeader(
  dir: string,
): Promise<{ readonly genDir: string; readonly header: ShardHeader } | undefined> {
  let gen: string;
  try {
    gen = (await readFile(join(dir, 'CURRENT'), 'utf8')).trim();
  } catch {
    return undefined;
  }
  const genDir = join(dir, gen);
  const header = JSON.parse(await readFile(join(genDir, 'meta.json'), 'utf8')) as ShardHeader;
  if (header.format !== FORMAT) {
    throw syError('SY_ERR_INTERNAL', `shard ${dir}: unknown format ${String(header.format)}`);
  }
  return { genDir, header };
}

export function shardHeader(
  id: string,
  dims: number,
  metric: VectorMetric,
  rows: number,
  entries: ShardHeader['entries'],
): ShardHeader {
  return { format: FORMAT, id, dims, metric, rows, entries };
}
