import { seededRandom } from '../core/random.js';
import type { Random } from '../core/random.js';

/**
 * A dense multi-layer perceptron and its trainer (mini-batch Adam) in plain TypeScript. The
 * demo models are tiny (tens of thousands of weights), so a training framework would be a heavy
 * dependency for no gain. Training runs in float64; the trained weights are rounded to float32,
 * which is what the ONNX graph holds, and `predict` uses those rounded weights so it matches
 * ONNX Runtime to ~1e-6. Deterministic for a seed: the seed fixes initialisation and shuffling.
 */
export type HiddenActivation = 'relu' | 'tanh' | 'linear';
/** The output layer: softmax with cross-entropy loss, or independent sigmoids with binary cross-entropy. */
export type Head = 'softmax' | 'sigmoid';

export interface MlpShape {
  readonly inputs: number;
  readonly hidden: readonly { readonly units: number; readonly activation: HiddenActivation }[];
  readonly outputs: number;
  readonly head: Head;
}

export interface DenseLayer {
  readonly inputs: number;
  readonly outputs: number;
  /** [inputs, outputs] row-major: ONNX Gemm's B with transB = 0, or MatMul's B. */
  readonly weights: Float32Array;
  readonly bias: Float32Array;
  readonly activation: HiddenActivation | Head;
}

export interface Mlp {
  readonly shape: MlpShape;
  /** The hidden layers, then the output layer. */
  readonly layers: readonly DenseLayer[];
}

/** Rows of `x` ([rows, inputs] row-major) with class indices (softmax) or 0/1 targets [rows, outputs] (sigmoid). */
export interface TrainingSet {
  readonly x: Float32Array;
  readonly rows: number;
  readonly labels?: Int32Array;
  readonly targets?: Float32Array;
}

export interface TrainOptions {
  readonly seed: number;
  readonly epochs: number;
  readonly batchSize?: number;
  readonly learningRate?: number;
  /** Decoupled weight decay (AdamW) on the weights, not the biases. 0 by default. */
  readonly weightDecay?: number;
  readonly beta1?: number;
  readonly beta2?: number;
  readonly epsilon?: number;
  /** Called after each epoch with the mean training loss of that epoch. */
  readonly onEpoch?: (epoch: number, loss: number) => void;
}

export interface TrainResult {
  readonly mlp: Mlp;
  /** Mean training loss per epoch. */
  readonly losses: readonly number[];
}

interface Params {
  readonly nIn: number;
  readonly nOut: number;
  readonly activation: HiddenActivation | Head;
  readonly w: Float64Array;
  readonly b: Float64Array;
}

function checkData(shape: MlpShape, data: TrainingSet): void {
  if (data.x.length !== data.rows * shape.inputs) {
    throw new Error(`x has ${data.x.length} values, expected ${data.rows} × ${shape.inputs}`);
  }
  if (shape.head === 'softmax') {
    if (data.labels?.length !== data.rows)
      throw new Error('a softmax head needs one label per row');
    for (const l of data.labels) {
      if (!(l >= 0 && l < shape.outputs)) throw new Error(`label ${l} is out of range`);
    }
  } else if (data.targets?.length !== data.rows * shape.outputs) {
    throw new Error('a sigmoid head needs `outputs` targets per row');
  }
}

function initParams(shape: MlpShape, rng: Random): Params[] {
  const sizes = [shape.inputs, ...shape.hidden.map((h) => h.units), shape.outputs];
  const acts: (HiddenActivation | Head)[] = [...shape.hidden.map((h) => h.activation), shape.head];
  return acts.map((activation, l) => {
    const nIn = sizes[l]!;
    const nOut = sizes[l + 1]!;
    // He for ReLU, Glorot otherwise (uniform variants).
    const limit = activation === 'relu' ? Math.sqrt(6 / nIn) : Math.sqrt(6 / (nIn + nOut));
    const w = new Float64Array(nIn * nOut);
    for (let k = 0; k < w.length; k++) w[k] = (rng() * 2 - 1) * limit;
    return { nIn, nOut, activation, w, b: new Float64Array(nOut) };
  });
}

type Vec = Float64Array | Float32Array;

/** out[r] = act(in[r]·W + b) for `rows` rows. Zero inputs are skipped: text features are sparse. */
function denseForward(
  input: Vec,
  rows: number,
  nIn: number,
  nOut: number,
  w: Vec,
  b: Vec,
  activation: HiddenActivation | Head,
  out: Float64Array,
): void {
  for (let r = 0; r < rows; r++) {
    const io = r * nIn;
    const oo = r * nOut;
    for (let j = 0; j < nOut; j++) out[oo + j] = b[j]!;
    for (let i = 0; i < nIn; i++) {
      const v = input[io + i]!;
      if (v === 0) continue;
      const wo = i * nOut;
      for (let j = 0; j < nOut; j++) out[oo + j] = out[oo + j]! + v * w[wo + j]!;
    }
    switch (activation) {
      case 'relu':
        for (let j = 0; j < nOut; j++) if (out[oo + j]! < 0) out[oo + j] = 0;
        break;
      case 'tanh':
        for (let j = 0; j < nOut; j++) out[oo + j] = Math.tanh(out[oo + j]!);
        break;
      case 'sigmoid':
        for (let j = 0; j < nOut; j++) out[oo + j] = 1 / (1 + Math.exp(-out[oo + j]!));
        break;
      case 'softmax': {
        let max = -Infinity;
        for (let j = 0; j < nOut; j++) max = Math.max(max, out[oo + j]!);
        let sum = 0;
        for (let j = 0; j < nOut; j++) {
          const e = Math.exp(out[oo + j]! - max);
          out[oo + j] = e;
          sum += e;
        }
        for (let j = 0; j < nOut; j++) out[oo + j] = out[oo + j]! / sum;
        break;
      }
      case 'linear':
        break;
    }
  }
}

/** Trains an MLP of `shape` on `data`. The same seed, data and options give the same weights. */
export function trainMlp(shape: MlpShape, data: TrainingSet, options: TrainOptions): TrainResult {
  checkData(shape, data);
  const rng = seededRandom(options.seed);
  const params = initParams(shape, rng);
  const batchSize = Math.max(1, Math.min(options.batchSize ?? 32, data.rows));
  const lr = options.learningRate ?? 1e-3;
  const wd = options.weightDecay ?? 0;
  const beta1 = options.beta1 ?? 0.9;
  const beta2 = options.beta2 ?? 0.999;
  const eps = options.epsilon ?? 1e-8;

  const L = params.length;
  const m = params.map((q) => ({ w: new Float64Array(q.w.length), b: new Float64Array(q.nOut) }));
  const v = params.map((q) => ({ w: new Float64Array(q.w.length), b: new Float64Array(q.nOut) }));
  const grad = params.map((q) => ({
    w: new Float64Array(q.w.length),
    b: new Float64Array(q.nOut),
  }));
  const acts = params.map((q) => new Float64Array(batchSize * q.nOut));
  const deltas = params.map((q) => new Float64Array(batchSize * q.nOut));
  const xb = new Float64Array(batchSize * shape.inputs);
  const order = Int32Array.from({ length: data.rows }, (_, i) => i);
  const losses: number[] = [];
  let step = 0;

  for (let epoch = 0; epoch < options.epochs; epoch++) {
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      const t = order[i]!;
      order[i] = order[j]!;
      order[j] = t;
    }
    let lossSum = 0;
    for (let start = 0; start < data.rows; start += batchSize) {
      const B = Math.min(batchSize, data.rows - start);
      for (let r = 0; r < B; r++) {
        const src = order[start + r]! * shape.inputs;
        for (let i = 0; i < shape.inputs; i++) xb[r * shape.inputs + i] = data.x[src + i]!;
      }
      // Forward.
      for (let l = 0; l < L; l++) {
        const q = params[l]!;
        denseForward(
          l === 0 ? xb : acts[l - 1]!,
          B,
          q.nIn,
          q.nOut,
          q.w,
          q.b,
          q.activation,
          acts[l]!,
        );
      }
      // Loss and the gradient at the logits (the same expression for both heads).
      const out = acts[L - 1]!;
      const dOut = deltas[L - 1]!;
      const nOut = shape.outputs;
      for (let r = 0; r < B; r++) {
        const row = order[start + r]!;
        for (let j = 0; j < nOut; j++) {
          const pr = out[r * nOut + j]!;
          const y =
            shape.head === 'softmax'
              ? data.labels![row] === j
                ? 1
                : 0
              : data.targets![row * nOut + j]!;
          if (shape.head === 'softmax') {
            if (y === 1) lossSum -= Math.log(Math.max(pr, 1e-12));
          } else {
            lossSum -=
              y * Math.log(Math.max(pr, 1e-12)) + (1 - y) * Math.log(Math.max(1 - pr, 1e-12));
          }
          dOut[r * nOut + j] = (pr - y) / B;
        }
      }
      // Backward.
      for (let l = L - 1; l >= 0; l--) {
        const q = params[l]!;
        const input = l === 0 ? xb : acts[l - 1]!;
        const delta = deltas[l]!;
        const g = grad[l]!;
        g.w.fill(0);
        g.b.fill(0);
        for (let r = 0; r < B; r++) {
          const io = r * q.nIn;
          const dO = r * q.nOut;
          for (let j = 0; j < q.nOut; j++) g.b[j] = g.b[j]! + delta[dO + j]!;
          for (let i = 0; i < q.nIn; i++) {
            const x = input[io + i]!;
            if (x === 0) continue;
            const wo = i * q.nOut;
            for (let j = 0; j < q.nOut; j++) g.w[wo + j] = g.w[wo + j]! + x * delta[dO + j]!;
          }
        }
        if (l > 0) {
          const prev = params[l - 1]!;
          const a = acts[l - 1]!;
          const dPrev = deltas[l - 1]!;
          for (let r = 0; r < B; r++) {
            for (let i = 0; i < q.nIn; i++) {
              const ai = a[r * q.nIn + i]!;
              if (prev.activation === 'relu' && ai === 0) {
                dPrev[r * q.nIn + i] = 0;
                continue;
              }
              let s = 0;
              const wo = i * q.nOut;
              for (let j = 0; j < q.nOut; j++) s += delta[r * q.nOut + j]! * q.w[wo + j]!;
              dPrev[r * q.nIn + i] = prev.activation === 'tanh' ? s * (1 - ai * ai) : s;
            }
          }
        }
      }
      // Adam (AdamW when weightDecay > 0).
      step++;
      const lrT = (lr * Math.sqrt(1 - beta2 ** step)) / (1 - beta1 ** step);
      for (let l = 0; l < L; l++) {
        const q = params[l]!;
        adam(q.w, grad[l]!.w, m[l]!.w, v[l]!.w, lrT, lr * wd, beta1, beta2, eps);
        adam(q.b, grad[l]!.b, m[l]!.b, v[l]!.b, lrT, 0, beta1, beta2, eps);
      }
    }
    const loss = lossSum / data.rows;
    losses.push(loss);
    options.onEpoch?.(epoch, loss);
  }

  const layers: DenseLayer[] = params.map((q) => ({
    inputs: q.nIn,
    outputs: q.nOut,
    weights: Float32Array.from(q.w),
    bias: Float32Array.from(q.b),
    activation: q.activation,
  }));
  return { mlp: { shape, layers }, losses };
}

function adam(
  p: Float64Array,
  g: Float64Array,
  m: Float64Array,
  v: Float64Array,
  lrT: number,
  decay: number,
  beta1: number,
  beta2: number,
  eps: number,
): void {
  for (let k = 0; k < p.length; k++) {
    const gk = g[k]!;
    const mk = beta1 * m[k]! + (1 - beta1) * gk;
    const vk = beta2 * v[k]! + (1 - beta2) * gk * gk;
    m[k] = mk;
    v[k] = vk;
    p[k] = p[k]! - lrT * (mk / (Math.sqrt(vk) + eps)) - decay * p[k]!;
  }
}

/**
 * The output of layer `upTo` (default: the output layer, head applied) for [rows, inputs] `x`,
 * as [rows, units] float32. `upTo` = 0 is the first hidden layer.
 */
export function forward(
  mlp: Mlp,
  x: Float32Array,
  rows: number,
  upTo = mlp.layers.length - 1,
): Float32Array {
  if (x.length !== rows * mlp.shape.inputs) {
    throw new Error(`x has ${x.length} values, expected ${rows} × ${mlp.shape.inputs}`);
  }
  let input: Vec = x;
  for (let l = 0; l <= upTo; l++) {
    const layer = mlp.layers[l];
    if (layer === undefined) throw new Error(`the MLP has no layer ${l}`);
    const out = new Float64Array(rows * layer.outputs);
    denseForward(
      input,
      rows,
      layer.inputs,
      layer.outputs,
      layer.weights,
      layer.bias,
      layer.activation,
      out,
    );
    input = out;
  }
  return Float32Array.from(input);
}

/** Number of trainable parameters. */
export function parameterCount(mlp: Mlp): number {
  return mlp.layers.reduce((n, l) => n + l.weights.length + l.bias.length, 0);
}
