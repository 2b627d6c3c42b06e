import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../core/random.js';
import { buildDemoModels } from './demo-models.js';
import { decodeModel, dimsOf, normalizeNode, onnx, OnnxGraphBuilder } from './onnx-builder.js';
import { openSession } from './ort-session.js';
import {
  compareVariants,
  quantizeModel,
  quantizeModelDetailed,
  writeQuantizedVariant,
} from './quantize.js';
import { readVersion } from './store-io.js';

const randomArray = (seed: number, n: number, scale = 1) => {
  const rng = seededRandom(seed);
  return Float32Array.from({ length: n }, () => (rng() * 2 - 1) * scale);
};

async function run(bytes: Uint8Array, feeds: Record<string, [Float32Array, number[]]>) {
  const session = await openSession(bytes);
  try {
    const tensors = Object.fromEntries(
      Object.entries(feeds).map(([k, [data, dims]]) => [k, new ort.Tensor('float32', data, dims)]),
    );
    const out = await session.run(tensors);
    return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, t.data as Float32Array]));
  } finally {
    await session.release();
  }
}

const maxDiff = (a: Float32Array, b: Float32Array) =>
  a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

/** Gemm (transB 0) → Relu → Gemm (transB 1, alpha, beta) → Tanh → MatMul → Softmax, plus a MatMul of two activations. */
function mixedGraph(): Uint8Array {
  const g = new OnnxGraphBuilder('mixed');
  const x = g.input('x', 'float32', [-1, 6]);
  const k = g.input('k', 'float32', [8, 3]);
  const w1 = g.initializer('w1', 'float32', [6, 8], randomArray(1, 48));
  const b1 = g.initializer('b1', 'float32', [8], randomArray(2, 8, 0.1));
  const r = g.relu(g.gemm(x, w1, b1));
  const w2 = g.initializer('w2', 'float32', [5, 8], randomArray(3, 40));
  const b2 = g.initializer('b2', 'float32', [5], randomArray(4, 5, 0.1));
  const [h2] = g.node('Gemm', [r, w2, b2], 1, {
    transB: { int: 1 },
    alpha: { float: 0.5 },
    beta: { float: 2 },
  });
  const w3 = g.initializer('w3', 'float32', [5, 4], randomArray(5, 20));
  g.output('probabilities', 'float32', [-1, 4], g.softmax(g.matMul(g.tanh(h2!), w3)));
  g.output('side', 'float32', [-1, 3], g.matMul(r, k));
  return g.toBytes();
}

describe('quantizeModel', () => {
  const float = mixedGraph();
  const { bytes, quantized } = quantizeModelDetailed(float);
  const before = (decodeModel(float).graph!.node ?? []).map(normalizeNode);
  const after = decodeModel(bytes).graph!;
  const nodes = (after.node ?? []).map(normalizeNode);
  const count = (op: string) => nodes.filter((n) => n.opType === op).length;

  it('replaces every MatMul and Gemm with an initializer weight by MatMulInteger and leaves every other node alone', () => {
    expect(quantized).toHaveLength(3);
    expect(count('MatMulInteger')).toBe(3);
    expect(count('DynamicQuantizeLinear')).toBe(3);
    expect(count('Gemm')).toBe(0);
    for (const n of before.filter(
      (n) => n.opType !== 'Gemm' && !(n.opType === 'MatMul' && n.input[1] !== 'k'),
    )) {
      expect(nodes).toContainEqual(n);
    }
    const side = nodes.find((n) => n.opType === 'MatMul');
    expect(side?.input).toEqual([before.find((n) => n.opType === 'Relu')!.output[0], 'k']);
  });

  it('keeps the inputs and outputs, and stores weights as UINT8 with zero point 128 instead of floats', () => {
    const original = decodeModel(float).graph!;
    expect(after.input).toEqual(original.input);
    expect(after.output).toEqual(original.output);
    const inits = after.initializer ?? [];
    const floats = inits.filter((t) => t.dataType === onnx.TensorProto.DataType.FLOAT).map(dimsOf);
    expect(floats).not.toContainEqual([6, 8]);
    expect(floats).not.toContainEqual([5, 8]);
    expect(floats).not.toContainEqual([5, 4]);
    const uint8 = inits.filter((t) => t.dataType === onnx.TensorProto.DataType.UINT8);
    // The transB = 1 weight [5, 8] is stored transposed, [8, 5], as MatMulInteger wants it.
    expect(uint8.map(dimsOf)).toEqual(expect.arrayContaining([[6, 8], [8, 5], [5, 4], []]));
    const zeroPoint = uint8.find((t) => dimsOf(t).length === 0)!;
    expect(Array.from(zeroPoint.rawData!)).toEqual([128]);
    for (const t of uint8.filter((t) => dimsOf(t).length === 2)) {
      const [rows, cols] = dimsOf(t) as [number, number];
      for (let c = 0; c < cols; c++) {
        let widest = 0;
        for (let r = 0; r < rows; r++)
          widest = Math.max(widest, Math.abs(t.rawData![r * cols + c]! - 128));
        expect(widest).toBe(127); // each column uses its own scale, symmetric around 128
      }
    }
  });

  it('computes nearly what the float graph computes, alpha and beta included', async () => {
    const rows = 64;
    const feeds = {
      x: [randomArray(9, rows * 6, 2), [rows, 6]],
      k: [randomArray(10, 24), [8, 3]],
    } satisfies Record<string, [Float32Array, number[]]>;
    const f = await run(float, feeds);
    const q = await run(bytes, feeds);
    expect(maxDiff(f['probabilities']!, q['probabilities']!)).toBeLessThan(0.02);
    expect(maxDiff(f['side']!, q['side']!)).toBeLessThan(0.05);
    expect(maxDiff(f['side']!, q['side']!)).toBeGreaterThan(0); // quantization did happen upstream
  });

  it('quantizes a Gemm with transB = 1 exactly as the same weights stored for transB = 0', async () => {
    const w = randomArray(11, 7 * 3); // [7, 3]
    const wT = new Float32Array(21);
    for (let i = 0; i < 7; i++) for (let j = 0; j < 3; j++) wT[j * 7 + i] = w[i * 3 + j]!;
    const gemm = (transB: boolean) => {
      const g = new OnnxGraphBuilder('g');
      const x = g.input('x', 'float32', [-1, 7]);
      const wi = transB
        ? g.initializer('w', 'float32', [3, 7], wT)
        : g.initializer('w', 'float32', [7, 3], w);
      const b = g.initializer('b', 'float32', [3], Float32Array.from([0.1, -0.2, 0.3]));
      g.output('y', 'float32', [-1, 3], g.gemm(x, wi, b, { transB }));
      return g.toBytes();
    };
    const feeds = { x: [randomArray(12, 10 * 7), [10, 7]] } satisfies Record<
      string,
      [Float32Array, number[]]
    >;
    const plain = await run(quantizeModel(gemm(false)), feeds);
    const transposed = await run(quantizeModel(gemm(true)), feeds);
    const reference = await run(gemm(false), feeds);
    expect(transposed['y']).toEqual(plain['y']);
    expect(maxDiff(plain['y']!, reference['y']!)).toBeLessThan(0.03);
  });

  it('transposes the activation for a Gemm with transA = 1', async () => {
    const g = new OnnxGraphBuilder('a');
    const x = g.input('x', 'float32', [7, 4]); // [K, M]: the Gemm reads it transposed
    const w = g.initializer('w', 'float32', [7, 3], randomArray(13, 21));
    const [y] = g.node('Gemm', [x, w], 1, { transA: { int: 1 } });
    g.output('y', 'float32', [4, 3], y);
    const feeds = { x: [randomArray(14, 28), [7, 4]] } satisfies Record<
      string,
      [Float32Array, number[]]
    >;
    const reference = await run(g.toBytes(), feeds);
    const q = await run(quantizeModel(g.toBytes()), feeds);
    expect(maxDiff(q['y']!, reference['y']!)).toBeLessThan(0.03);
  });

  it('does not saturate when activations and weights sit at the top of their ranges (the AVX2 u8×s8 trap)', async () => {
    const g = new OnnxGraphBuilder('s');
    const x = g.input('x', 'float32', [-1, 256]);
    const w = g.initializer('w', 'float32', [256, 4], new Float32Array(1024).fill(1));
    g.output('y', 'float32', [-1, 4], g.matMul(x, w));
    const out = await run(quantizeModel(g.toBytes()), {
      x: [new Float32Array(512).fill(1), [2, 256]],
    });
    for (const v of out['y']!) expect(v).toBeCloseTo(256, 3);
  });

  it('refuses a model below opset 11 and a model with nothing to quantize', () => {
    const old = new OnnxGraphBuilder('o', { opset: 10 });
    const x = old.input('x', 'float32', [-1, 2]);
    old.output(
      'y',
      'float32',
      [-1, 2],
      old.matMul(x, old.initializer('w', 'float32', [2, 2], new Float32Array(4))),
    );
    expect(() => quantizeModel(old.toBytes())).toThrow(/opset/);
    const plain = new OnnxGraphBuilder('p');
    plain.output('y', 'float32', [-1, 2], plain.relu(plain.input('x', 'float32', [-1, 2])));
    expect(() => quantizeModel(plain.toBytes())).toThrow(/no MatMul or Gemm/);
  });
});

describe('int8 variants of the demo models', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'modelkit-quantize-'));
    await buildDemoModels(dir, { seed: 42 });
  }, 60_000);
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes an intent variant within one accuracy point of the float model, agreeing on ≥ 98% of top-1 classes', async () => {
    const store = join(dir, 'intent');
    const written = await writeQuantizedVariant(store, '1', '2');
    const from = await readVersion(store, '1');
    const to = await readVersion(store, '2');
    expect(to.card).toEqual(written.card);
    expect(to.card).toMatchObject({
      task: 'classifier',
      labels: from.card.labels,
      text: from.card.text,
      output: 'probabilities',
      variant: { precision: 'int8', from_version: '1' },
      lineage: { ...from.card.lineage, from_version: '1' },
    });
    expect(
      Math.abs(to.card.metrics!['accuracy']! - from.card.metrics!['accuracy']!),
    ).toBeLessThanOrEqual(0.01);
    expect(to.card.metrics!['top1_agreement_with_float']).toBeGreaterThanOrEqual(0.98);
    expect(to.heldoutText).toBe(from.heldoutText);
    expect(to.model.byteLength).toBeLessThan(from.model.byteLength * 0.35);
  });

  it('refuses to overwrite an existing version and to quantize a variant again', async () => {
    const store = join(dir, 'intent');
    await writeQuantizedVariant(store, '1', 'int8-a');
    const before = await stat(join(store, 'int8-a', 'model.onnx'));
    const card = await readFile(join(store, 'int8-a', 'model.json'), 'utf8');
    await expect(writeQuantizedVariant(store, '1', 'int8-a')).rejects.toThrow(
      /refusing to overwrite/,
    );
    await expect(writeQuantizedVariant(store, '1', '1')).rejects.toThrow(/refusing to overwrite/);
    expect((await stat(join(store, 'int8-a', 'model.onnx'))).mtimeMs).toBe(before.mtimeMs);
    expect(await readFile(join(store, 'int8-a', 'model.json'), 'utf8')).toBe(card);
    await expect(writeQuantizedVariant(store, 'int8-a', 'int8-b')).rejects.toThrow(
      /already an int8 variant/,
    );
  });

  it('compares float and int8 for all three tasks: metric, size, throughput and agreement', async () => {
    const compare = async (store: string) => {
      await writeQuantizedVariant(join(dir, store), '1', 'q');
      const v = await readVersion(join(dir, store), '1');
      return compareVariants(
        join(v.dir, 'model.onnx'),
        join(dir, store, 'q', 'model.onnx'),
        v.heldout,
        v.card,
        {
          minMs: 50,
        },
      );
    };
    const intent = await compare('intent');
    expect(intent.float.metricName).toBe('accuracy');
    expect(intent.delta).toBeGreaterThanOrEqual(-0.01);
    expect(intent.top1Agreement).toBeGreaterThanOrEqual(0.98);
    const embed = await compare('embed');
    expect(embed.float.metricName).toBe('recall_at_1');
    expect(embed.delta).toBeGreaterThanOrEqual(-0.01);
    expect(embed.meanCosine).toBeGreaterThanOrEqual(0.99);
    const rank = await compare('rank');
    expect(rank.float.metricName).toBe('auc');
    expect(Math.abs(rank.delta)).toBeLessThanOrEqual(0.005);
    expect(rank.maxScoreDiff).toBeLessThan(0.03);
    for (const c of [intent, embed, rank]) {
      expect(c.int8.sizeBytes).toBeLessThan(c.float.sizeBytes * 0.6);
      expect(c.float.throughputRowsPerS).toBeGreaterThan(0);
      expect(c.int8.throughputRowsPerS).toBeGreaterThan(0);
      expect(c.delta).toBeCloseTo(c.int8.metric - c.float.metric, 12);
    }
  }, 60_000);
});
