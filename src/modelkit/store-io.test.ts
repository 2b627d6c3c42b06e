import fc from 'fast-check';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ModelCard } from '../backends/onnx/model-card.js';
import {
  heldoutMatrix,
  matrixToRows,
  readVersion,
  shortFloat32,
  writeVersion,
} from './store-io.js';

describe('shortFloat32', () => {
  it('reads back as the same float32 for any float32, through JSON', () => {
    fc.assert(
      fc.property(fc.float({ noNaN: true, noDefaultInfinity: true }), (v) => {
        const back: unknown = JSON.parse(JSON.stringify(shortFloat32(v)));
        expect(Math.fround(back as number)).toBe(Math.fround(v));
      }),
      { seed: 20261122, numRuns: 2000 },
    );
  });

  it('keeps held-out matrices exact through JSON rows', () => {
    const data = Float32Array.from([0.1, 1 / 3, -2.5e-7, 0]);
    const rows = JSON.parse(JSON.stringify(matrixToRows({ data, rows: 2, cols: 2 }))) as number[][];
    expect(JSON.stringify(rows)).toBe('[[0.1,0.33333334],[-2.5e-7,0]]');
    expect(heldoutMatrix({ inputs: { x: rows } }, 'x').data).toEqual(data);
    expect(() => heldoutMatrix({ inputs: { x: [[1, 2], [3]] } }, 'x')).toThrow(/row 1/);
  });
});

describe('writeVersion', () => {
  let store: string;
  const card: ModelCard = { task: 'ranker', output: 'score' };
  const files = { model: Uint8Array.from([1, 2, 3]), card, heldout: { inputs: {}, targets: [1] } };
  beforeEach(async () => {
    store = await mkdtemp(join(tmpdir(), 'modelkit-store-'));
  });
  afterEach(async () => {
    await rm(store, { recursive: true, force: true });
  });

  it('writes the three files of a version and reads them back', async () => {
    const w = await writeVersion(store, '3', files, { overwrite: false });
    expect(w).toEqual({
      dir: join(store, '3'),
      modelPath: join(store, '3', 'model.onnx'),
      sizeBytes: 3,
    });
    const v = await readVersion(store, '3');
    expect(Array.from(v.model)).toEqual([1, 2, 3]);
    expect(v.card).toEqual(card);
    expect(v.heldout).toEqual(files.heldout);
  });

  it('refuses an existing version directory, even an empty one, unless told to overwrite', async () => {
    await writeVersion(store, '1', files, { overwrite: false });
    await writeFile(join(store, '1', 'notes.txt'), 'keep me');
    await expect(
      writeVersion(store, '1', { ...files, model: Uint8Array.from([9]) }, { overwrite: false }),
    ).rejects.toThrow(/refusing to overwrite/);
    expect(Array.from(await readFile(join(store, '1', 'model.onnx')))).toEqual([1, 2, 3]);
    await writeVersion(store, '1', { ...files, model: Uint8Array.from([9]) }, { overwrite: true });
    expect(Array.from(await readFile(join(store, '1', 'model.onnx')))).toEqual([9]);
    expect(await readFile(join(store, '1', 'notes.txt'), 'utf8')).toBe('keep me');
    await mkdir(join(store, '2'));
    await expect(writeVersion(store, '2', files, { overwrite: false })).rejects.toThrow(
      /refusing to overwrite/,
    );
  });
});
