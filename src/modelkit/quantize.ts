import { join } from 'node:path';
import type { HeldOut, ModelCard } from '../backends/onnx/model-card.js';
import { agreement, evaluateModel } from './evaluate.js';
import {
  attributeProto,
  decodeModel,
  encodeModel,
  floatAttr,
  floatValues,
  dimsOf,
  intAttr,
  normalizeNode,
  onnx,
  tensorProto,
} from './onnx-builder.js';
import type { AttrValue, ModelProto, Node, TensorProto } from './onnx-builder.js';
import { exists, readVersion, writeVersion } from './store-io.js';

export { compareVariants, evaluateModel } from './evaluate.js';
export type { Evaluation, VariantComparison, VariantStats } from './evaluate.js';

/**
 * Dynamic int8 quantization, as ONNX Runtime's `quantize_dynamic` does it, written out here so
 * the weight format is ours to choose. Every MatMul or Gemm whose weight is a float initializer
 * becomes:
 *
 *   DynamicQuantizeLinear(x) → x_q (uint8), x_scale, x_zp
 *   MatMulInteger(x_q, W_q, x_zp, 128) → int32   Cast → float   Mul(x_scale · w_scale[col])   Add bias
 *
 * W_q is UINT8 with zero point 128 and one scale per output column (symmetric, |q − 128| ≤ 127).
 * Not int8: on AVX2 without VNNI, ORT's u8×s8 kernel adds pairs of products in int16 and
 * saturates with full-range int8 weights (TOOLCHAIN.md: top-1 agreement fell to 84%); its u8×u8
 * path does not. Every other node, input, output and initializer is left as it was.
 */
export const QUANTIZATION_METHOD =
  'dynamic; uint8 weights, zero point 128, per-column scales; uint8 activations';

export interface QuantizeResult {
  readonly bytes: Uint8Array;
  /** Names (or first outputs) of the nodes that were quantized. */
  readonly quantized: readonly string[];
}

const FLOAT = onnx.TensorProto.DataType.FLOAT;

interface Weight {
  /** [K, N] row-major: K inputs, N output columns. */
  readonly w: Float32Array;
  readonly k: number;
  readonly n: number;
}

function quantizeWeight(weight: Weight, alpha: number): { q: Uint8Array; scales: Float32Array } {
  const { w, k, n } = weight;
  const q = new Uint8Array(k * n);
  const scales = new Float32Array(n);
  for (let c = 0; c < n; c++) {
    let max = 0;
    for (let r = 0; r < k; r++) max = Math.max(max, Math.abs(w[r * n + c]!));
    const scale = max === 0 ? 1 : max / 127;
    for (let r = 0; r < k; r++) {
      const v = Math.round(w[r * n + c]! / scale);
      q[r * n + c] = Math.max(-127, Math.min(127, v)) + 128;
    }
    // Gemm's alpha folds into the scale: alpha·(x·W) = x·W_q·(scale·alpha).
    scales[c] = scale * alpha;
  }
  return { q, scales };
}

function transpose(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c]!;
  return out;
}

/** Quantizes a model; see the module comment for what changes. Throws when nothing is quantizable. */
export function quantizeModelDetailed(input: Uint8Array): QuantizeResult {
  const model = decodeModel(input);
  const graph = model.graph;
  if (graph === null || graph === undefined) throw new Error('the model has no graph');
  const opset = model.opsetImport.find((o) => (o.domain ?? '') === '' || o.domain === 'ai.onnx');
  if (opset === undefined || Number(opset.version) < 11) {
    throw new Error('quantization needs opset ≥ 11 (DynamicQuantizeLinear)');
  }
  const graphNodes = (graph.node ?? []).map(normalizeNode);
  const graphInits = graph.initializer ?? [];
  const graphInputs = graph.input ?? [];
  const graphOutputs = graph.output ?? [];

  const initializers = new Map<string, TensorProto>(graphInits.map((t) => [t.name ?? '', t]));
  const used = new Set<string>();
  for (const v of [...graphInputs, ...graphOutputs, ...graphInits, ...(graph.valueInfo ?? [])]) {
    used.add(v.name ?? '');
  }
  for (const nd of graphNodes) {
    for (const o of nd.output) used.add(o);
    used.add(nd.name);
  }
  let counter = 0;
  const fresh = (hint: string): string => {
    let name = hint;
    while (used.has(name)) name = `${hint}_${++counter}`;
    used.add(name);
    return name;
  };
  const newInits: TensorProto[] = [];
  const constant = (
    hint: string,
    dtype: 'float32' | 'uint8',
    dims: readonly number[],
    data: Float32Array | Uint8Array,
  ): string => {
    const name = fresh(hint);
    newInits.push(tensorProto(name, dtype, dims, data));
    return name;
  };
  const node = (
    opType: string,
    inputs: readonly string[],
    outputs: readonly string[],
    attrs: Record<string, AttrValue> = {},
  ): Node => ({
    opType,
    domain: '',
    name: fresh(`${opType}_q`),
    input: inputs,
    output: outputs,
    attribute: Object.entries(attrs).map(([name, v]) => attributeProto(name, v)),
  });
  const floatMatrix = (name: string | undefined): TensorProto | undefined => {
    const t = name === undefined ? undefined : initializers.get(name);
    return t !== undefined && t.dataType === FLOAT && dimsOf(t).length === 2 ? t : undefined;
  };

  let weightZeroPoint: string | undefined;
  const dynamicQuantized = new Map<string, readonly [string, string, string]>();
  const nodes: Node[] = [];
  const quantized: string[] = [];

  for (const nd of graphNodes) {
    const isGemm = nd.opType === 'Gemm' && nd.domain === '';
    const isMatMul = nd.opType === 'MatMul' && nd.domain === '';
    const wt = isGemm || isMatMul ? floatMatrix(nd.input[1]) : undefined;
    const out = nd.output[0];
    if (wt === undefined || out === undefined || nd.input[0] === undefined) {
      nodes.push(nd);
      continue;
    }
    const [d0, d1] = dimsOf(wt) as [number, number];
    const transA = isGemm ? intAttr(nd, 'transA', 0) : 0;
    const transB = isGemm ? intAttr(nd, 'transB', 0) : 0;
    const alpha = isGemm ? floatAttr(nd, 'alpha', 1) : 1;
    const beta = isGemm ? floatAttr(nd, 'beta', 1) : 1;
    const raw = floatValues(wt);
    const weight: Weight =
      transB === 1 ? { w: transpose(raw, d0, d1), k: d1, n: d0 } : { w: raw, k: d0, n: d1 };
    const { q, scales } = quantizeWeight(weight, alpha);
    const base = nd.name !== '' ? nd.name : out;
    const wName = wt.name ?? base;

    let x = nd.input[0];
    if (transA === 1) {
      const t = fresh(`${base}_a_transposed`);
      nodes.push(node('Transpose', [x], [t], { perm: { ints: [1, 0] } }));
      x = t;
    }
    // One DynamicQuantizeLinear per activation, however many weights it meets.
    let dq = dynamicQuantized.get(x);
    if (dq === undefined) {
      dq = [fresh(`${x}_quantized`), fresh(`${x}_scale`), fresh(`${x}_zero_point`)];
      nodes.push(node('DynamicQuantizeLinear', [x], dq));
      dynamicQuantized.set(x, dq);
    }
    weightZeroPoint ??= constant('weight_zero_point', 'uint8', [], new Uint8Array([128]));
    const wq = constant(`${wName}_quantized`, 'uint8', [weight.k, weight.n], q);
    const ws = constant(`${wName}_scale`, 'float32', [weight.n], scales);
    const yInt = fresh(`${base}_int32`);
    const yFloat = fresh(`${base}_unscaled`);
    const scale = fresh(`${base}_scale`);
    nodes.push(node('MatMulInteger', [dq[0], wq, dq[2], weightZeroPoint], [yInt]));
    nodes.push(node('Cast', [yInt], [yFloat], { to: { int: FLOAT } }));
    nodes.push(node('Mul', [dq[1], ws], [scale]));

    const c = isGemm ? nd.input[2] : undefined;
    if (c === undefined || c === '') {
      nodes.push(node('Mul', [yFloat, scale], [out]));
    } else {
      const scaled = fresh(`${base}_scaled`);
      nodes.push(node('Mul', [yFloat, scale], [scaled]));
      let bias = c;
      if (beta !== 1) {
        const ct = initializers.get(c);
        if (ct !== undefined && ct.dataType === FLOAT) {
          bias = constant(
            `${c}_beta`,
            'float32',
            dimsOf(ct),
            floatValues(ct).map((v) => v * beta),
          );
        } else {
          bias = fresh(`${c}_beta`);
          const b = constant(`${base}_beta`, 'float32', [], new Float32Array([beta]));
          nodes.push(node('Mul', [c, b], [bias]));
        }
      }
      nodes.push(node('Add', [scaled, bias], [out]));
    }
    quantized.push(base);
  }
  if (quantized.length === 0) {
    throw new Error('the model has no MatMul or Gemm with a float initializer weight');
  }

  // Drop initializers nothing reads any more (the float weights, a bias replaced by its beta copy).
  const read = new Set<string>([
    ...nodes.flatMap((n) => n.input),
    ...graphOutputs.map((o) => o.name ?? ''),
  ]);
  const kept = graphInits.filter((t) => read.has(t.name ?? ''));
  const keptNames = new Set(kept.map((t) => t.name ?? ''));
  const result: ModelProto = {
    ...model,
    graph: {
      ...graph,
      node: nodes.map((n) => ({
        ...n,
        input: [...n.input],
        output: [...n.output],
        attribute: [...n.attribute],
      })),
      initializer: [...kept, ...newInits],
      // An initializer also listed as a graph input (IR < 4 style) goes with its initializer.
      input: graphInputs.filter(
        (i) => !initializers.has(i.name ?? '') || keptNames.has(i.name ?? ''),
      ),
    },
    metadataProps: [
      ...model.metadataProps,
      { key: 'switchyard.quantization', value: QUANTIZATION_METHOD },
    ],
  };
  return { bytes: encodeModel(result), quantized };
}

/** The int8 (dynamic) variant of a float ONNX model. */
export function quantizeModel(input: Uint8Array): Uint8Array {
  return quantizeModelDetailed(input).bytes;
}

export interface QuantizedVariant {
  readonly dir: string;
  readonly modelPath: string;
  readonly sizeBytes: number;
  readonly card: ModelCard;
}

const round6 = (x: number): number => Math.round(x * 1e6) / 1e6;

/**
 * Writes `<store>/<toVersion>`: the int8 variant of `<store>/<fromVersion>`, a card with the
 * same task, text and labels, metrics measured on the held-out split (plus agreement with the
 * float model), lineage, and a copy of `heldout.json`. An existing `toVersion` is never overwritten.
 */
export async function writeQuantizedVariant(
  storeDir: string,
  fromVersion: string,
  toVersion: string,
): Promise<QuantizedVariant> {
  if (await exists(join(storeDir, toVersion))) {
    throw new Error(`version ${toVersion} already exists in ${storeDir}; refusing to overwrite it`);
  }
  const from = await readVersion(storeDir, fromVersion);
  if (from.card.variant !== undefined)
    throw new Error(`version ${fromVersion} is already an ${from.card.variant.precision} variant`);
  const bytes = quantizeModel(from.model);
  const heldout: HeldOut = from.heldout;
  const before = await evaluateModel(from.model, heldout, from.card);
  const after = await evaluateModel(bytes, heldout, from.card);
  const agree = agreement(from.card.task, before.output, after.output);
  const metrics = Object.fromEntries(
    Object.entries({
      ...after.metrics,
      ...(agree.top1Agreement === undefined
        ? {}
        : { top1_agreement_with_float: agree.top1Agreement }),
      ...(agree.meanCosine === undefined ? {} : { mean_cosine_with_float: agree.meanCosine }),
      ...(agree.maxScoreDiff === undefined
        ? {}
        : { max_score_diff_from_float: agree.maxScoreDiff }),
    }).map(([k, v]) => [k, round6(v)]),
  );
  const { metrics: _floatMetrics, lineage, description, ...rest } = from.card;
  const card: ModelCard = {
    ...rest,
    description: `${description ?? 'model'} (int8 dynamic quantization of version ${fromVersion})`,
    metrics,
    lineage: {
      ...lineage,
      quantizer: `switchyard modelkit quantize (${QUANTIZATION_METHOD})`,
      from_version: fromVersion,
    },
    variant: { precision: 'int8', from_version: fromVersion },
  };
  const written = await writeVersion(
    storeDir,
    toVersion,
    { model: bytes, card, heldout: from.heldoutText },
    { overwrite: false },
  );
  return { ...written, card };
}
