import { describe, expect, it } from 'vitest';
import { seededRandom } from '../core/random.js';
import { accuracy, argmaxRows } from './metrics.js';
import { forward, parameterCount, trainMlp } from './mlp.js';
import type { MlpShape } from './mlp.js';

/** Two interleaved half-circles with noise: not linearly separable. */
function twoMoons(seed: number, rows: number) {
  const rng = seededRandom(seed);
  const x = new Float32Array(rows * 2);
  const labels = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    const label = r % 2;
    const t = rng() * Math.PI;
    const [cx, cy] =
      label === 0 ? [Math.cos(t), Math.sin(t)] : [1 - Math.cos(t), 0.5 - Math.sin(t)];
    x[r * 2] = cx + (rng() - 0.5) * 0.2;
    x[r * 2 + 1] = cy + (rng() - 0.5) * 0.2;
    labels[r] = label;
  }
  return { x, labels, rows };
}

const XOR = {
  x: Float32Array.from([0, 0, 0, 1, 1, 0, 1, 1]),
  targets: Float32Array.from([0, 1, 1, 0]),
  rows: 4,
};

const moonsShape: MlpShape = {
  inputs: 2,
  hidden: [{ units: 16, activation: 'relu' }],
  outputs: 2,
  head: 'softmax',
};

describe('trainMlp', () => {
  it('learns two moons with a ReLU layer and a softmax head to ≥ 97% on held-out points', () => {
    const train = twoMoons(1, 600);
    const test = twoMoons(2, 400);
    const { mlp, losses } = trainMlp(moonsShape, train, {
      seed: 7,
      epochs: 60,
      learningRate: 0.01,
    });
    const predicted = argmaxRows(forward(mlp, test.x, test.rows), test.rows, 2);
    expect(accuracy(predicted, test.labels)).toBeGreaterThanOrEqual(0.97);
    expect(losses.at(-1)!).toBeLessThan(losses[0]! / 4);
  });

  it('learns XOR with a tanh layer and a sigmoid head, which no linear model can', () => {
    const { mlp } = trainMlp(
      { inputs: 2, hidden: [{ units: 4, activation: 'tanh' }], outputs: 1, head: 'sigmoid' },
      XOR,
      { seed: 3, epochs: 1500, batchSize: 4, learningRate: 0.05 },
    );
    const p = forward(mlp, XOR.x, 4);
    expect(Array.from(p, (v) => (v > 0.5 ? 1 : 0))).toEqual([0, 1, 1, 0]);
    for (let i = 0; i < 4; i++) expect(Math.abs(p[i]! - XOR.targets[i]!)).toBeLessThan(0.2);
  });

  it('gives identical weights for the same seed and different weights for another seed', () => {
    const data = twoMoons(5, 200);
    const options = { seed: 11, epochs: 5, learningRate: 0.01 };
    const a = trainMlp(moonsShape, data, options);
    const b = trainMlp(moonsShape, data, options);
    const c = trainMlp(moonsShape, data, { ...options, seed: 12 });
    expect(a.mlp.layers.map((l) => Array.from(l.weights))).toEqual(
      b.mlp.layers.map((l) => Array.from(l.weights)),
    );
    expect(a.losses).toEqual(b.losses);
    expect(Array.from(c.mlp.layers[0]!.weights)).not.toEqual(Array.from(a.mlp.layers[0]!.weights));
  });

  it('shrinks the weights when decoupled weight decay is on', () => {
    const data = twoMoons(6, 300);
    const norm = (decay: number) => {
      const { mlp } = trainMlp(moonsShape, data, {
        seed: 1,
        epochs: 20,
        learningRate: 0.01,
        weightDecay: decay,
      });
      return mlp.layers.reduce((s, l) => s + l.weights.reduce((a, w) => a + w * w, 0), 0);
    };
    expect(norm(5)).toBeLessThan(norm(0) * 0.8);
  });

  it('reports the output of any layer and counts parameters', () => {
    const data = twoMoons(8, 10);
    const { mlp } = trainMlp(moonsShape, data, { seed: 1, epochs: 1 });
    const hidden = forward(mlp, data.x, data.rows, 0);
    expect(hidden).toHaveLength(10 * 16);
    expect(Math.min(...hidden)).toBeGreaterThanOrEqual(0); // ReLU
    const probs = forward(mlp, data.x, data.rows);
    for (let r = 0; r < 10; r++) expect(probs[r * 2]! + probs[r * 2 + 1]!).toBeCloseTo(1, 6);
    expect(parameterCount(mlp)).toBe(2 * 16 + 16 + 16 * 2 + 2);
  });

  it.each([
    [
      'softmax',
      [
        { units: 4, activation: 'tanh' },
        { units: 5, activation: 'relu' },
      ],
    ],
    [
      'sigmoid',
      [
        { units: 5, activation: 'relu' },
        { units: 4, activation: 'linear' },
      ],
    ],
  ] as const)(
    'moves every weight against its numerical gradient on the first Adam step (%s head)',
    (head, hidden) => {
      // Adam's first step is −lr·sign(gradient), so the direction of each change is a gradient check.
      const rng = seededRandom(21);
      const rows = 8;
      const shape: MlpShape = { inputs: 3, hidden, outputs: 3, head };
      const x = Float32Array.from({ length: rows * 3 }, () => rng() * 2 - 1);
      const labels = Int32Array.from({ length: rows }, () => Math.floor(rng() * 3));
      const targets = Float32Array.from({ length: rows * 3 }, () => (rng() < 0.5 ? 1 : 0));
      const data = { x, rows, labels, targets };
      const options = { seed: 4, batchSize: rows, learningRate: 1e-3 };
      const before = trainMlp(shape, data, { ...options, epochs: 0 }).mlp;
      const after = trainMlp(shape, data, { ...options, epochs: 1 }).mlp;
      const loss = (mlp: typeof before): number => {
        const p = forward(mlp, x, rows);
        let sum = 0;
        for (let r = 0; r < rows; r++) {
          for (let j = 0; j < 3; j++) {
            const pr = p[r * 3 + j]!;
            if (head === 'softmax') sum -= labels[r] === j ? Math.log(pr) : 0;
            else
              sum -=
                targets[r * 3 + j]! * Math.log(pr) + (1 - targets[r * 3 + j]!) * Math.log(1 - pr);
          }
        }
        return sum / rows;
      };
      let checked = 0;
      before.layers.forEach((layer, l) => {
        for (const key of ['weights', 'bias'] as const) {
          for (let k = 0; k < layer[key].length; k++) {
            const probe = (delta: number) => {
              const layers = before.layers.map((ly) => ({
                ...ly,
                weights: ly.weights.slice(),
                bias: ly.bias.slice(),
              }));
              layers[l]![key][k] = layer[key][k]! + delta;
              return loss({ shape, layers });
            };
            const grad = (probe(1e-3) - probe(-1e-3)) / 2e-3;
            if (Math.abs(grad) < 1e-3) continue; // too flat to tell the sign in float32
            const step = after.layers[l]![key][k]! - layer[key][k]!;
            expect(Math.sign(step)).toBe(-Math.sign(grad));
            checked++;
          }
        }
      });
      expect(checked).toBeGreaterThan(20);
    },
  );

  it('rejects labels out of range and inputs of the wrong width', () => {
    const data = twoMoons(9, 10);
    expect(() =>
      trainMlp(
        moonsShape,
        { ...data, labels: Int32Array.from({ length: 10 }, () => 2) },
        { seed: 1, epochs: 1 },
      ),
    ).toThrow(/out of range/);
    expect(() => trainMlp(moonsShape, { ...data, rows: 9 }, { seed: 1, epochs: 1 })).toThrow(
      /expected/,
    );
  });
});
