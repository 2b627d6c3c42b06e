import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { HeldOut, ModelCard } from '../backends/onnx/model-card.js';
import type { Matrix } from './ort-session.js';

/**
 * Reading and writing one version of a model store (`<store>/<version>/model.onnx`,
 * `model.json`, `heldout.json`). The model file is written last, through a rename, because the
 * store scanner treats a version directory without `model.onnx` as still being written.
 */
export interface VersionFiles {
  readonly model: Uint8Array;
  readonly card: ModelCard;
  /** The held-out split, or the text of a `heldout.json` to copy as it is. */
  readonly heldout: HeldOut | string;
}

export interface WrittenVersion {
  readonly dir: string;
  readonly modelPath: string;
  readonly sizeBytes: number;
}

/**
 * Writes a version. With `overwrite: false` an existing version directory is an error (nothing
 * is written); with `overwrite: true` its three files are replaced and anything else is left.
 */
export async function writeVersion(
  store: string,
  version: string,
  files: VersionFiles,
  options: { readonly overwrite: boolean },
): Promise<WrittenVersion> {
  const dir = join(store, version);
  await mkdir(store, { recursive: true });
  if (options.overwrite) {
    await mkdir(dir, { recursive: true });
  } else {
    try {
      await mkdir(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new Error(`version ${version} already exists in ${store}; refusing to overwrite it`);
      }
      throw err;
    }
  }
  const modelPath = join(dir, 'model.onnx');
  const heldout = typeof files.heldout === 'string' ? files.heldout : JSON.stringify(files.heldout);
  await writeFile(join(dir, 'heldout.json'), heldout);
  await writeFile(join(dir, 'model.json'), `${JSON.stringify(files.card, null, 2)}\n`);
  const tmp = join(dir, '.model.onnx.tmp');
  await writeFile(tmp, files.model);
  await rename(tmp, modelPath).catch(async (err: unknown) => {
    await rm(tmp, { force: true });
    throw err;
  });
  return { dir, modelPath, sizeBytes: files.model.byteLength };
}

export interface ReadVersion {
  readonly dir: string;
  readonly model: Uint8Array;
  readonly card: ModelCard;
  readonly heldout: HeldOut;
  /** `heldout.json` as read, for copying. */
  readonly heldoutText: string;
}

export async function readVersion(store: string, version: string): Promise<ReadVersion> {
  const dir = join(store, version);
  const [model, card, heldout] = await Promise.all([
    readFile(join(dir, 'model.onnx')),
    readFile(join(dir, 'model.json'), 'utf8'),
    readFile(join(dir, 'heldout.json'), 'utf8'),
  ]);
  return {
    dir,
    model: new Uint8Array(model.buffer, model.byteOffset, model.byteLength),
    card: JSON.parse(card) as ModelCard,
    heldout: JSON.parse(heldout) as HeldOut,
    heldoutText: heldout,
  };
}

export async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** The shortest decimal that reads back as the same float32, so JSON stays small and exact. */
export function shortFloat32(v: number): number {
  const f = Math.fround(v);
  for (let digits = 6; digits < 9; digits++) {
    const s = Number(f.toPrecision(digits));
    if (Math.fround(s) === f) return s;
  }
  return Number(f.toPrecision(9));
}

/** A matrix as JSON rows (held-out inputs). */
export function matrixToRows(m: Matrix): number[][] {
  return Array.from({ length: m.rows }, (_, r) =>
    Array.from(m.data.subarray(r * m.cols, (r + 1) * m.cols), shortFloat32),
  );
}

/** A held-out input as a matrix; every row must have the same width. */
export function heldoutMatrix(heldout: HeldOut, input: string): Matrix {
  const rows = heldout.inputs[input];
  if (rows === undefined || rows.length === 0)
    throw new Error(`heldout.json has no rows for input ${input}`);
  const cols = rows[0]!.length;
  const data = new Float32Array(rows.length * cols);
  rows.forEach((row, r) => {
    if (row.length !== cols)
      throw new Error(
        `heldout.json input ${input}: row ${r} has ${row.length} values, not ${cols}`,
      );
    data.set(row, r * cols);
  });
  return { data, rows: rows.length, cols };
}
