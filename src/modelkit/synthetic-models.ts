import type { ModelCard } from '../backends/onnx/model-card.js';
import { seededRandom } from '../core/random.js';
import { OnnxGraphBuilder } from './onnx-builder.js';
import { writeVersion, type WrittenVersion } from './store-io.js';

/**
 * Small untrained ONNX models with known, checkable outputs, for serving tests and benchmarks.
 * Unlike the demo models they need no training, so a test builds them in milliseconds. Nothing
 * here loads ONNX Runtime.
 */

const PAIR_WIDTH = 4;

/**
 * `pair`: inputs `a` and `b` [batch, 4] → `mixed` = a + scale·b [batch, 4] and `dot` = Σ a·b
 * [batch, 1]. Each output row depends only on its own input row, so a test can check that every
 * caller got exactly its rows back; `scale` tells versions apart.
 */
export function pairModel(scale: number): Uint8Array {
  const g = new OnnxGraphBuilder('pair', { docString: `switchyard test model, scale ${scale}` });
  const a = g.input('a', 'float32', [-1, PAIR_WIDTH]);
  const b = g.input('b', 'float32', [-1, PAIR_WIDTH]);
  const k = g.initializer('scale', 'float32', [], new Float32Array([scale]));
  g.output('mixed', 'float32', [-1, PAIR_WIDTH], g.add(a, g.mul(b, k)));
  const ones = g.initializer(
    'ones',
    'float32',
    [PAIR_WIDTH, 1],
    new Float32Array(PAIR_WIDTH).fill(1),
  );
  g.output('dot', 'float32', [-1, 1], g.matMul(g.mul(a, b), ones));
  return g.toBytes();
}

/** What `pairModel(scale)` computes for one row, in float32. */
export function pairExpected(
  a: readonly number[],
  b: readonly number[],
  scale: number,
): { mixed: number[]; dot: number } {
  const f = Math.fround;
  return {
    mixed: a.map((v, i) => f(f(v) + f(f(b[i]!) * f(scale)))),
    dot: a.reduce((s, v, i) => s + f(v) * f(b[i]!), 0),
  };
}

function randomMatrix(rng: () => number, rows: number, cols: number): Float32Array {
  // Glorot-uniform, so activations stay in range through deep stacks.
  const limit = Math.sqrt(6 / (rows + cols));
  return Float32Array.from({ length: rows * cols }, () => (rng() * 2 - 1) * limit);
}

export interface MlpModelOptions {
  readonly inputs: number;
  readonly hidden: readonly number[];
  readonly outputs: number;
  readonly seed: number;
  /** `softmax` (a classifier, output `probabilities`) or `l2` (an embedding, output `embedding`). */
  readonly head: 'softmax' | 'l2';
  /** Extra square hidden layers of the last hidden width, repeated with shared weights (a cheap way to make a model slow). */
  readonly repeatLast?: number;
}

/** A random-weight MLP over `features` [batch, inputs]. */
export function mlpModel(o: MlpModelOptions): Uint8Array {
  const rng = seededRandom(o.seed);
  const g = new OnnxGraphBuilder('mlp', { docString: 'switchyard synthetic MLP (random weights)' });
  let x = g.input('features', 'float32', [-1, o.inputs]);
  let width = o.inputs;
  o.hidden.forEach((units, l) => {
    const w = g.initializer(`w${l}`, 'float32', [width, units], randomMatrix(rng, width, units));
    const b = g.initializer(`b${l}`, 'float32', [units], new Float32Array(units));
    x = g.relu(g.gemm(x, w, b));
    width = units;
  });
  if ((o.repeatLast ?? 0) > 0) {
    const w = g.initializer('w_repeat', 'float32', [width, width], randomMatrix(rng, width, width));
    for (let i = 0; i < o.repeatLast!; i++) x = g.tanh(g.matMul(x, w));
  }
  const w = g.initializer(
    'w_out',
    'float32',
    [width, o.outputs],
    randomMatrix(rng, width, o.outputs),
  );
  const b = g.initializer('b_out', 'float32', [o.outputs], new Float32Array(o.outputs));
  const logits = g.gemm(x, w, b);
  if (o.head === 'softmax')
    g.output('probabilities', 'float32', [-1, o.outputs], g.softmax(logits));
  else g.output('embedding', 'float32', [-1, o.outputs], g.l2Normalize(logits));
  return g.toBytes();
}

/** A card for a text model made with `mlpModel` over hashing-v1 features. */
export function textCard(
  task: 'classifier' | 'embedding',
  dims: number,
  labels?: readonly string[],
): ModelCard {
  return {
    task,
    description: `synthetic ${task} (random weights, for tests and benchmarks)`,
    text: { featurizer: 'hashing-v1', dims, input: 'features' },
    output: task === 'classifier' ? 'probabilities' : 'embedding',
    ...(labels === undefined ? {} : { labels }),
  };
}

/** Writes a synthetic model as `<store>/<version>` (no held-out split: these are not measured). */
export function writeSynthetic(
  store: string,
  version: string,
  model: Uint8Array,
  card?: ModelCard,
): Promise<WrittenVersion> {
  return writeVersion(
    store,
    version,
    { model, card: card ?? { task: 'generic' }, heldout: { inputs: {} } },
    { overwrite: false },
  );
}
