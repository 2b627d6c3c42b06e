import ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { seededRandom } from '../core/random.js';
import { appendMlp } from './mlp-graph.js';
import { forward, trainMlp } from './mlp.js';
import type { HiddenActivation, Head } from './mlp.js';
import { decodeModel, floatValues, OnnxGraphBuilder, tensorProto } from './onnx-builder.js';
import { openSession, runRows } from './ort-session.js';

function randomMatrix(seed: number, rows: number, cols: number): Float32Array {
  const rng = seededRandom(seed);
  return Float32Array.from({ length: rows * cols }, () => rng() * 2 - 1);
}

async function run(
  bytes: Uint8Array,
  feeds: Record<string, [Float32Array, number[]]>,
  output: string,
) {
  const session = await openSession(bytes);
  try {
    const tensors = Object.fromEntries(
      Object.entries(feeds).map(([k, [data, dims]]) => [k, new ort.Tensor('float32', data, dims)]),
    );
    const result = await session.run(tensors, [output]);
    return result[output]!;
  } finally {
    await session.release();
  }
}

describe('OnnxGraphBuilder', () => {
  it.each([
    ['relu', 'softmax'],
    ['tanh', 'sigmoid'],
    ['linear', 'softmax'],
  ] as const)(
    'builds an MLP graph (%s hidden, %s head) that ONNX Runtime runs exactly like the JS forward pass',
    async (activation: HiddenActivation, head: Head) => {
      const rows = 50;
      const x = randomMatrix(1, rows, 12);
      const labels = Int32Array.from({ length: rows }, (_, i) => i % 5);
      const targets = Float32Array.from({ length: rows * 5 }, (_, i) => (i % 3 === 0 ? 1 : 0));
      const { mlp } = trainMlp(
        {
          inputs: 12,
          hidden: [
            { units: 9, activation },
            { units: 7, activation },
          ],
          outputs: 5,
          head,
        },
        { x, rows, labels, targets },
        { seed: 2, epochs: 3 },
      );
      const g = new OnnxGraphBuilder('t');
      const input = g.input('x', 'float32', [-1, 12]);
      g.output('y', 'float32', [-1, 5], appendMlp(g, input, mlp, { prefix: 'm' }));
      const session = await openSession(g.toBytes());
      const y = await runRows(session, { x: { data: x, rows, cols: 12 } }, 'y', 16);
      await session.release();
      const expected = forward(mlp, x, rows);
      let max = 0;
      for (let i = 0; i < expected.length; i++)
        max = Math.max(max, Math.abs(expected[i]! - y.data[i]!));
      expect(max).toBeLessThan(1e-5);
    },
  );

  it('declares a symbolic batch dimension so any batch size runs', async () => {
    const g = new OnnxGraphBuilder('t');
    const x = g.input('x', 'float32', [-1, 3]);
    const w = g.initializer('w', 'float32', [3, 2], Float32Array.from([1, 0, 0, 1, 1, 1]));
    g.output('y', 'float32', [-1, 2], g.matMul(x, w));
    const bytes = g.toBytes();
    const dim = decodeModel(bytes).graph!.input![0]!.type!.tensorType!.shape!.dim![0]!;
    expect(dim.dimParam).toBe('batch');
    for (const batch of [1, 7]) {
      const out = await run(bytes, { x: [new Float32Array(batch * 3).fill(1), [batch, 3]] }, 'y');
      expect(out.dims).toEqual([batch, 2]);
      expect(Array.from(out.data as Float32Array).slice(0, 2)).toEqual([2, 2]);
    }
  });

  it('L2-normalises rows and keeps an all-zero row zero instead of NaN', async () => {
    const g = new OnnxGraphBuilder('t');
    const x = g.input('x', 'float32', [-1, 2]);
    g.output('y', 'float32', [-1, 2], g.l2Normalize(x));
    const out = await run(g.toBytes(), { x: [Float32Array.from([3, 4, 0, 0]), [2, 2]] }, 'y');
    const y = Array.from(out.data as Float32Array);
    expect(y[0]).toBeCloseTo(0.6, 6);
    expect(y[1]).toBeCloseTo(0.8, 6);
    expect(y.slice(2)).toEqual([0, 0]);
  });

  it('combines two inputs with Mul and Concat on the last axis', async () => {
    const g = new OnnxGraphBuilder('t');
    const a = g.input('a', 'float32', [-1, 2]);
    const b = g.input('b', 'float32', [-1, 2]);
    g.output('y', 'float32', [-1, 6], g.concat([a, b, g.mul(a, b)], -1));
    const out = await run(
      g.toBytes(),
      { a: [Float32Array.from([1, 2]), [1, 2]], b: [Float32Array.from([3, 4]), [1, 2]] },
      'y',
    );
    expect(Array.from(out.data as Float32Array)).toEqual([1, 2, 3, 4, 3, 8]);
  });

  it('runs Gemm with transB = 1, a weight stored [out, in]', async () => {
    const g = new OnnxGraphBuilder('t');
    const x = g.input('x', 'float32', [-1, 2]);
    const w = g.initializer('w', 'float32', [3, 2], Float32Array.from([1, 0, 0, 1, 1, 1]));
    const bias = g.initializer('b', 'float32', [3], Float32Array.from([0, 0, 10]));
    g.output('y', 'float32', [-1, 3], g.gemm(x, w, bias, { transB: true }));
    const out = await run(g.toBytes(), { x: [Float32Array.from([2, 5]), [1, 2]] }, 'y');
    expect(Array.from(out.data as Float32Array)).toEqual([2, 5, 17]);
  });

  it('refuses a name used twice and a tensor whose data does not fit its dims or type', () => {
    const g = new OnnxGraphBuilder('t');
    g.input('x', 'float32', [-1, 2]);
    expect(() => g.input('x', 'float32', [-1, 2])).toThrow(/already used/);
    expect(() => tensorProto('w', 'float32', [2, 2], new Float32Array(3))).toThrow(/dims/);
    expect(() => tensorProto('w', 'float32', [2], new Uint8Array(2))).toThrow(/Float32Array/);
  });

  it('gives fresh initializer names and reads float tensors back from rawData and floatData', () => {
    const g = new OnnxGraphBuilder('t');
    const a = g.initializer('w', 'float32', [2], Float32Array.from([1.5, -2]));
    const b = g.initializer('w', 'float32', [2], Float32Array.from([3, 4]));
    expect(a).not.toBe(b);
    const graph = decodeModel(g.toBytes()).graph!;
    expect(Array.from(floatValues(graph.initializer![1]!))).toEqual([3, 4]);
    expect(
      Array.from(floatValues({ name: 'f', dataType: 1, dims: [2], floatData: [0.5, 1] })),
    ).toEqual([0.5, 1]);
  });
});
