import type { JsonObject, JsonValue } from '../../contracts/json.js';
import { syError } from '../../core/errors.js';
import { isJsonObject } from '../../core/safe-json.js';

/**
 * Tensors as they cross threads: a typed array over a transferable buffer, its ORT type and its
 * dimensions. KServe v2 JSON tensors are converted to and from this form here, and checked
 * against the model's own input metadata.
 */
export type OrtType =
  | 'float32'
  | 'float64'
  | 'int8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'uint8'
  | 'uint16'
  | 'uint32'
  | 'uint64'
  | 'bool'
  | 'string';

export type TensorData =
  | Float32Array
  | Float64Array
  | Int8Array
  | Int16Array
  | Int32Array
  | BigInt64Array
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | BigUint64Array
  | string[];

export interface Tensor {
  readonly type: OrtType;
  readonly dims: readonly number[];
  readonly data: TensorData;
}

/** A model input or output as the model declares it. Symbolic dimensions are -1. */
export interface TensorSpec {
  readonly name: string;
  readonly type: OrtType;
  readonly shape: readonly number[];
}

const KSERVE_OF: Record<OrtType, string> = {
  float32: 'FP32',
  float64: 'FP64',
  int8: 'INT8',
  int16: 'INT16',
  int32: 'INT32',
  int64: 'INT64',
  uint8: 'UINT8',
  uint16: 'UINT16',
  uint32: 'UINT32',
  uint64: 'UINT64',
  bool: 'BOOL',
  string: 'BYTES',
};

export function kserveDatatype(type: OrtType): string {
  return KSERVE_OF[type];
}

export function isOrtType(type: string): type is OrtType {
  return type in KSERVE_OF;
}

const INT_RANGE: Partial<Record<OrtType, readonly [number, number]>> = {
  int8: [-128, 127],
  int16: [-32768, 32767],
  int32: [-2147483648, 2147483647],
  uint8: [0, 255],
  uint16: [0, 65535],
  uint32: [0, 4294967295],
  int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
  uint64: [0, Number.MAX_SAFE_INTEGER],
};

function allocate(type: OrtType, n: number): TensorData {
  switch (type) {
    case 'float32':
      return new Float32Array(n);
    case 'float64':
      return new Float64Array(n);
    case 'int8':
      return new Int8Array(n);
    case 'int16':
      return new Int16Array(n);
    case 'int32':
      return new Int32Array(n);
    case 'int64':
      return new BigInt64Array(n);
    case 'uint8':
    case 'bool':
      return new Uint8Array(n);
    case 'uint16':
      return new Uint16Array(n);
    case 'uint32':
      return new Uint32Array(n);
    case 'uint64':
      return new BigUint64Array(n);
    case 'string':
      return new Array<string>(n).fill('');
  }
}

/** An empty tensor of `rows` rows shaped like `like` (for concatenating a batch). */
export function allocateRows(like: Tensor, rows: number): Tensor {
  const rowSize = rowElements(like.dims);
  return {
    type: like.type,
    dims: [rows, ...like.dims.slice(1)],
    data: allocate(like.type, rows * rowSize),
  };
}

export function rowElements(dims: readonly number[]): number {
  let n = 1;
  for (let i = 1; i < dims.length; i++) n *= dims[i]!;
  return n;
}

export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

function invalid(detail: string, param: string): never {
  throw syError('SY_ERR_INVALID_TENSOR', detail, { param });
}

/** Flattens nested `data` arrays (KServe allows nested or flat row-major data). */
function flatten(data: readonly JsonValue[], at: string, out: JsonValue[], depth = 0): void {
  for (const v of data) {
    if (Array.isArray(v)) {
      if (depth > 32) invalid('data is nested too deeply', at);
      flatten(v, at, out, depth + 1);
    } else out.push(v);
  }
}

/**
 * Converts one KServe v2 input to a Tensor after checking it against the model's spec:
 * datatype, rank, fixed dimensions, element count, value types and ranges, and non-finite
 * floats unless the model allows them.
 */
export function tensorFromKServe(
  input: JsonObject,
  spec: TensorSpec,
  allowNonFinite: boolean,
): Tensor {
  const at = `inputs[${spec.name}]`;
  const want = KSERVE_OF[spec.type];
  if (input['datatype'] !== want) {
    invalid(
      `input ${spec.name} must be ${want}, not ${JSON.stringify(input['datatype'] ?? null)}`,
      `${at}.datatype`,
    );
  }
  const shape = input['shape'] as number[];
  if (spec.shape.length > 0 && shape.length !== spec.shape.length) {
    invalid(
      `input ${spec.name} must have rank ${spec.shape.length} (shape ${fmt(spec.shape)}), not ${fmt(shape)}`,
      `${at}.shape`,
    );
  }
  spec.shape.forEach((d, i) => {
    if (d >= 0 && shape[i] !== d)
      invalid(
        `input ${spec.name} must have shape ${fmt(spec.shape)}, not ${fmt(shape)}`,
        `${at}.shape`,
      );
  });
  const count = elementCount(shape);
  if (count > 50_000_000)
    invalid(`input ${spec.name} is too large (${count} elements)`, `${at}.shape`);
  const flat: JsonValue[] = [];
  flatten(input['data'] as JsonValue[], at, flat);
  if (flat.length !== count) {
    invalid(
      `input ${spec.name} has ${flat.length} values but shape ${fmt(shape)} needs ${count}`,
      `${at}.data`,
    );
  }
  const data = allocate(spec.type, count);
  const type = spec.type;
  if (type === 'string') {
    for (let i = 0; i < count; i++) {
      const v = flat[i];
      if (typeof v !== 'string')
        invalid(`input ${spec.name} (BYTES) must hold strings`, `${at}.data[${i}]`);
      (data as string[])[i] = v;
    }
  } else if (type === 'bool') {
    for (let i = 0; i < count; i++) {
      const v = flat[i];
      if (typeof v !== 'boolean')
        invalid(`input ${spec.name} (BOOL) must hold true/false`, `${at}.data[${i}]`);
      (data as Uint8Array)[i] = v ? 1 : 0;
    }
  } else if (type === 'float32' || type === 'float64') {
    const arr = data as Float32Array | Float64Array;
    for (let i = 0; i < count; i++) {
      const v = flat[i];
      if (typeof v !== 'number')
        invalid(`input ${spec.name} must hold numbers`, `${at}.data[${i}]`);
      if (!allowNonFinite && !Number.isFinite(v))
        invalid(`input ${spec.name} holds a non-finite value`, `${at}.data[${i}]`);
      arr[i] = v;
    }
    if (!allowNonFinite && type === 'float32') {
      // A finite double can still overflow float32 (1e39 → Infinity).
      for (let i = 0; i < count; i++)
        if (!Number.isFinite(arr[i]!))
          invalid(`input ${spec.name} holds a value outside the FP32 range`, `${at}.data[${i}]`);
    }
  } else {
    const [lo, hi] = INT_RANGE[type]!;
    const big = type === 'int64' || type === 'uint64';
    for (let i = 0; i < count; i++) {
      const v = flat[i];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
        invalid(
          `input ${spec.name} (${want}) must hold integers in [${lo}, ${hi}]`,
          `${at}.data[${i}]`,
        );
      }
      if (big) (data as BigInt64Array)[i] = BigInt(v);
      else (data as Int32Array)[i] = v;
    }
  }
  return { type, dims: shape, data };
}

/**
 * Checks a KServe request's inputs against the model's: every input present once, no unknown
 * ones, the same batch size along dimension 0. Returns the tensors by name and the batch rows.
 */
export function tensorsFromKServe(
  body: JsonObject,
  specs: readonly TensorSpec[],
  allowNonFinite: boolean,
): { feeds: Map<string, Tensor>; rows: number } {
  const inputs = body['inputs'] as JsonValue[];
  const byName = new Map<string, JsonObject>();
  for (const input of inputs) {
    const obj = input as JsonObject;
    const name = obj['name'] as string;
    if (byName.has(name)) invalid(`input ${name} is given twice`, 'inputs');
    if (!specs.some((s) => s.name === name)) {
      invalid(
        `the model has no input ${name}; it takes ${specs.map((s) => s.name).join(', ')}`,
        'inputs',
      );
    }
    byName.set(name, obj);
  }
  const feeds = new Map<string, Tensor>();
  let rows = -1;
  for (const spec of specs) {
    const input = byName.get(spec.name);
    if (input === undefined) invalid(`input ${spec.name} is missing`, 'inputs');
    const tensor = tensorFromKServe(input, spec, allowNonFinite);
    const r = tensor.dims.length === 0 ? 1 : tensor.dims[0]!;
    if (rows >= 0 && r !== rows)
      invalid(
        `every input must have the same batch size (${rows} vs ${r})`,
        `inputs[${spec.name}].shape`,
      );
    rows = r;
    feeds.set(spec.name, tensor);
  }
  if (rows === 0) invalid('the batch is empty', 'inputs');
  return { feeds, rows };
}

/** The `outputs` a KServe request asks for (all when absent); unknown names are 400s. */
export function requestedOutputs(body: JsonObject, specs: readonly TensorSpec[]): string[] {
  const asked = body['outputs'];
  if (!Array.isArray(asked)) return specs.map((s) => s.name);
  return asked.map((o, i) => {
    const name = isJsonObject(o) ? o['name'] : undefined;
    if (typeof name !== 'string' || !specs.some((s) => s.name === name)) {
      invalid(
        `the model has no output ${JSON.stringify(name ?? null)}; it has ${specs.map((s) => s.name).join(', ')}`,
        `outputs[${i}]`,
      );
    }
    return name;
  });
}

/** A Tensor as a KServe v2 output object (flat row-major data). */
export function tensorToKServe(name: string, t: Tensor): JsonObject {
  let data: JsonValue[];
  if (t.type === 'string') data = [...(t.data as string[])];
  else if (t.type === 'bool') data = Array.from(t.data as Uint8Array, (v) => v !== 0);
  else if (t.type === 'int64' || t.type === 'uint64')
    data = Array.from(t.data as BigInt64Array, (v) => Number(v));
  else data = Array.from(t.data as Float32Array);
  return { name, datatype: KSERVE_OF[t.type], shape: [...t.dims], data };
}

/** Rows [from, from + rows) of a batched tensor. Shares memory with `t` where it can. */
export function sliceRows(t: Tensor, from: number, rows: number): Tensor {
  const size = rowElements(t.dims);
  const dims = [rows, ...t.dims.slice(1)];
  const data = Array.isArray(t.data)
    ? t.data.slice(from * size, (from + rows) * size)
    : (t.data as Float32Array).subarray(from * size, (from + rows) * size);
  return { type: t.type, dims, data };
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
