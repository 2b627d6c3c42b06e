import p from 'onnx-proto';

/**
 * A small typed builder for ONNX graphs (opset 13 by default), written with onnx-proto. Offline
 * tooling only: the demo models and the quantizer use it; nothing on the request path does.
 */
const { onnx } = p;
export { onnx };
export type ModelProto = p.onnx.IModelProto;
export type NodeProto = p.onnx.INodeProto;
export type TensorProto = p.onnx.ITensorProto;
export type GraphProto = p.onnx.IGraphProto;
export type AttributeProto = p.onnx.IAttributeProto;

export type DType = 'float32' | 'uint8' | 'int8' | 'int32' | 'int64';

const ELEM_TYPE: Record<DType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  uint8: onnx.TensorProto.DataType.UINT8,
  int8: onnx.TensorProto.DataType.INT8,
  int32: onnx.TensorProto.DataType.INT32,
  int64: onnx.TensorProto.DataType.INT64,
};

export function elemType(dtype: DType): number {
  return ELEM_TYPE[dtype];
}

/** A dimension: a size, a symbolic name, or -1 for the symbolic batch dimension `batch`. */
export type Dim = number | string;

export interface ValueSpec {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly Dim[];
}

export type TensorValues = Float32Array | Uint8Array | Int8Array | Int32Array | BigInt64Array;

/** An attribute value with its ONNX type spelled out (1.0 and 1 are the same number in JS). */
export type AttrValue =
  | { readonly int: number }
  | { readonly float: number }
  | { readonly ints: readonly number[] }
  | { readonly floats: readonly number[] }
  | { readonly string: string };

export const BATCH = 'batch';
export const DEFAULT_OPSET = 13;
/** IR version 7 is the one that goes with opset 13. */
const IR_VERSION = 7;

function valueInfo(spec: ValueSpec): p.onnx.IValueInfoProto {
  return {
    name: spec.name,
    type: {
      tensorType: {
        elemType: ELEM_TYPE[spec.dtype],
        shape: {
          dim: spec.shape.map((d) =>
            typeof d === 'string' ? { dimParam: d } : d < 0 ? { dimParam: BATCH } : { dimValue: d },
          ),
        },
      },
    },
  };
}

/** An initializer or constant tensor; data is stored little-endian in `rawData`. */
export function tensorProto(
  name: string,
  dtype: DType,
  dims: readonly number[],
  data: TensorValues,
): TensorProto {
  const count = dims.reduce((a, b) => a * b, 1);
  if (data.length !== count) {
    throw new Error(`tensor ${name}: ${data.length} values for dims [${dims.join(', ')}]`);
  }
  const expected: Record<DType, abstract new (n: number) => TensorValues> = {
    float32: Float32Array,
    uint8: Uint8Array,
    int8: Int8Array,
    int32: Int32Array,
    int64: BigInt64Array,
  };
  if (!(data instanceof expected[dtype])) {
    throw new Error(`tensor ${name}: ${dtype} needs a ${expected[dtype].name}`);
  }
  // Typed arrays are little-endian on every platform Node supports here (x64, arm64).
  const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
  return { name, dataType: ELEM_TYPE[dtype], dims: [...dims], rawData: raw };
}

export function attributeProto(name: string, value: AttrValue): AttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if ('int' in value) return { name, type: T.INT, i: value.int };
  if ('float' in value) return { name, type: T.FLOAT, f: value.float };
  if ('ints' in value) return { name, type: T.INTS, ints: [...value.ints] };
  if ('floats' in value) return { name, type: T.FLOATS, floats: [...value.floats] };
  return { name, type: T.STRING, s: new TextEncoder().encode(value.string) };
}

export interface GraphBuilderOptions {
  readonly opset?: number;
  readonly producer?: string;
  readonly docString?: string;
}

/**
 * Builds one graph. `node()` is the general form; the named helpers cover the ops the demo
 * models and the quantizer need and return the name of their output.
 */
export class OnnxGraphBuilder {
  private readonly inputs: p.onnx.IValueInfoProto[] = [];
  private readonly outputs: p.onnx.IValueInfoProto[] = [];
  private readonly initializers: TensorProto[] = [];
  private readonly nodes: NodeProto[] = [];
  private readonly names = new Set<string>();
  private counter = 0;

  constructor(
    private readonly graphName: string,
    private readonly options: GraphBuilderOptions = {},
  ) {}

  /** A fresh value name that no input, initializer or node output uses yet. */
  fresh(hint: string): string {
    let name = hint;
    while (this.names.has(name)) name = `${hint}_${++this.counter}`;
    this.names.add(name);
    return name;
  }

  private claim(name: string): string {
    if (this.names.has(name)) throw new Error(`the name ${name} is already used in this graph`);
    this.names.add(name);
    return name;
  }

  input(name: string, dtype: DType, shape: readonly Dim[]): string {
    this.inputs.push(valueInfo({ name: this.claim(name), dtype, shape }));
    return name;
  }

  /** Declares a graph output; `value` is the node output that becomes it (renamed by Identity when it differs). */
  output(name: string, dtype: DType, shape: readonly Dim[], value: string = name): void {
    if (value !== name) this.node('Identity', [value], [name]);
    this.outputs.push(valueInfo({ name, dtype, shape }));
  }

  initializer(name: string, dtype: DType, dims: readonly number[], data: TensorValues): string {
    const unique = this.fresh(name);
    this.initializers.push(tensorProto(unique, dtype, dims, data));
    return unique;
  }

  /** Adds a node. `outputs` are names, or a count of fresh names derived from the op type. */
  node(
    opType: string,
    inputs: readonly string[],
    outputs: readonly string[] | number = 1,
    attrs: Readonly<Record<string, AttrValue>> = {},
    domain = '',
  ): string[] {
    const outs =
      typeof outputs === 'number'
        ? Array.from({ length: outputs }, () => this.fresh(opType.toLowerCase()))
        : outputs.map((o) => this.claim(o));
    this.nodes.push({
      opType,
      domain,
      name: this.fresh(`${opType}_node`),
      input: [...inputs],
      output: outs,
      attribute: Object.entries(attrs).map(([k, v]) => attributeProto(k, v)),
    });
    return outs;
  }

  private one(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}) {
    const [out] = this.node(opType, inputs, 1, attrs);
    return out!;
  }

  /** y = x·W + b with W stored [in, out] (transB = 0) or [out, in] (transB = 1). */
  gemm(x: string, w: string, b: string | undefined, opts: { transB?: boolean } = {}): string {
    return this.one('Gemm', b === undefined ? [x, w] : [x, w, b], {
      transB: { int: opts.transB === true ? 1 : 0 },
    });
  }
  matMul(a: string, b: string): string {
    return this.one('MatMul', [a, b]);
  }
  add(a: string, b: string): string {
    return this.one('Add', [a, b]);
  }
  mul(a: string, b: string): string {
    return this.one('Mul', [a, b]);
  }
  div(a: string, b: string): string {
    return this.one('Div', [a, b]);
  }
  max(a: string, b: string): string {
    return this.one('Max', [a, b]);
  }
  relu(x: string): string {
    return this.one('Relu', [x]);
  }
  tanh(x: string): string {
    return this.one('Tanh', [x]);
  }
  sigmoid(x: string): string {
    return this.one('Sigmoid', [x]);
  }
  softmax(x: string, axis = -1): string {
    return this.one('Softmax', [x], { axis: { int: axis } });
  }
  concat(xs: readonly string[], axis = -1): string {
    return this.one('Concat', xs, { axis: { int: axis } });
  }
  /** x / max(‖x‖₂, eps) along the last axis, so a zero row stays zero instead of NaN. */
  l2Normalize(x: string, eps = 1e-12): string {
    const norm = this.one('ReduceL2', [x], { axes: { ints: [-1] }, keepdims: { int: 1 } });
    const floor = this.initializer('l2_eps', 'float32', [], new Float32Array([eps]));
    return this.div(x, this.max(norm, floor));
  }

  toProto(): ModelProto {
    return {
      irVersion: IR_VERSION,
      producerName: this.options.producer ?? 'switchyard-modelkit',
      opsetImport: [{ domain: '', version: this.options.opset ?? DEFAULT_OPSET }],
      ...(this.options.docString === undefined ? {} : { docString: this.options.docString }),
      graph: {
        name: this.graphName,
        input: this.inputs,
        output: this.outputs,
        initializer: this.initializers,
        node: this.nodes,
      },
    };
  }

  toBytes(): Uint8Array {
    return encodeModel(this.toProto());
  }
}

export function encodeModel(model: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(onnx.ModelProto.create(model)).finish();
}

export function decodeModel(bytes: Uint8Array): p.onnx.ModelProto {
  return onnx.ModelProto.decode(bytes);
}

/** The values of a FLOAT tensor, from `rawData` or `floatData`. */
export function floatValues(t: TensorProto): Float32Array {
  if (t.dataType !== onnx.TensorProto.DataType.FLOAT) {
    throw new Error(`tensor ${t.name ?? '?'} is not FLOAT`);
  }
  const count = (t.dims ?? []).reduce<number>((a, b) => a * Number(b), 1);
  if (t.rawData !== null && t.rawData !== undefined && t.rawData.length > 0) {
    // A decoded rawData is a Buffer view into the whole model at an unaligned offset: copy it.
    const copy = new Uint8Array(t.rawData);
    const out = new Float32Array(copy.buffer, copy.byteOffset, copy.byteLength / 4);
    if (out.length !== count) throw new Error(`tensor ${t.name ?? '?'}: rawData size mismatch`);
    return out;
  }
  const data = t.floatData ?? [];
  if (data.length !== count) throw new Error(`tensor ${t.name ?? '?'}: floatData size mismatch`);
  return Float32Array.from(data);
}

/** An attribute's integer value, or `fallback` when absent. */
export function intAttr(
  node: { readonly attribute?: readonly AttributeProto[] | null },
  name: string,
  fallback: number,
): number {
  const a = node.attribute?.find((x) => x.name === name);
  return a?.i === undefined || a.i === null ? fallback : Number(a.i);
}

/** An attribute's float value, or `fallback` when absent. */
export function floatAttr(
  node: { readonly attribute?: readonly AttributeProto[] | null },
  name: string,
  fallback: number,
): number {
  const a = node.attribute?.find((x) => x.name === name);
  return a?.f === undefined || a.f === null ? fallback : a.f;
}

/** A decoded node with its optional protobuf fields filled in. */
export interface Node {
  readonly opType: string;
  readonly domain: string;
  readonly name: string;
  readonly input: readonly string[];
  readonly output: readonly string[];
  readonly attribute: readonly AttributeProto[];
}

export function normalizeNode(n: NodeProto): Node {
  return {
    opType: n.opType ?? '',
    domain: n.domain ?? '',
    name: n.name ?? '',
    input: n.input ?? [],
    output: n.output ?? [],
    attribute: n.attribute ?? [],
  };
}

export function dimsOf(t: TensorProto): number[] {
  return (t.dims ?? []).map(Number);
}
