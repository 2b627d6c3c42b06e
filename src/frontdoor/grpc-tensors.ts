import type { JsonObject, JsonValue } from '../contracts/json.js';
import { syError } from '../core/errors.js';
import { isJsonObject } from '../core/safe-json.js';
import { decodeTensor, encodeTensor } from './kserve-binary.js';
import { extend } from '../core/objects.js';

/**
 * KServe v2 gRPC tensors (proto/kserve/grpc_predict_v2.proto) to and from the JSON tensors the
 * pipeline serves: a gRPC ModelInfer request becomes the REST inference request it stands for,
 * and the JSON answer becomes a ModelInferResponse. Typed contents go by datatype (the spec's
 * table: BOOL → bool_contents, INT8/16/32 → int_contents, ...); raw contents use the binary
 * extension's byte layout, so FP16 and BF16, which have no typed field, travel raw.
 */

interface GrpcParameter {
  readonly bool_param?: boolean;
  readonly int64_param?: number;
  readonly string_param?: string;
  readonly parameter_choice?: string;
}

export interface GrpcContents {
  bool_contents?: boolean[];
  int_contents?: number[];
  int64_contents?: number[];
  uint_contents?: number[];
  uint64_contents?: number[];
  fp32_contents?: number[];
  fp64_contents?: number[];
  bytes_contents?: Buffer[];
}

export interface GrpcInferRequest {
  readonly model_name: string;
  readonly model_version: string;
  readonly id: string;
  readonly parameters?: Record<string, GrpcParameter>;
  readonly inputs: readonly {
    readonly name: string;
    readonly datatype: string;
    readonly shape: readonly number[];
    readonly parameters?: Record<string, GrpcParameter>;
    readonly contents?: GrpcContents | null;
  }[];
  readonly outputs: readonly { readonly name: string }[];
  readonly raw_input_contents: readonly Buffer[];
}

const FIELD: Readonly<Record<string, keyof GrpcContents>> = {
  BOOL: 'bool_contents',
  INT8: 'int_contents',
  INT16: 'int_contents',
  INT32: 'int_contents',
  INT64: 'int64_contents',
  UINT8: 'uint_contents',
  UINT16: 'uint_contents',
  UINT32: 'uint_contents',
  UINT64: 'uint64_contents',
  FP32: 'fp32_contents',
  FP64: 'fp64_contents',
  BYTES: 'bytes_contents',
};

function paramValue(p: GrpcParameter): JsonValue {
  if (p.parameter_choice === 'bool_param') return p.bool_param ?? false;
  if (p.parameter_choice === 'int64_param') return p.int64_param ?? 0;
  return p.string_param ?? '';
}

function params(map: Record<string, GrpcParameter> | undefined): JsonObject | undefined {
  if (map === undefined || Object.keys(map).length === 0) return undefined;
  const out: JsonObject = {};
  for (const [k, v] of Object.entries(map)) out[k] = paramValue(v);
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The JSON inference request a gRPC ModelInferRequest stands for. */
export function inferRequestToJson(req: GrpcInferRequest): JsonObject {
  const raw = req.raw_input_contents;
  if (raw.length > 0 && raw.length !== req.inputs.length)
    throw syError(
      'SY_ERR_INVALID_REQUEST',
      `raw_input_contents holds ${raw.length} tensors for ${req.inputs.length} inputs`,
      { param: 'raw_input_contents' },
    );
  const inputs = req.inputs.map((input, i) => {
    const at = `inputs[${i}]`;
    const count = input.shape.reduce((n, d) => n * d, 1);
    let data: JsonValue[];
    if (raw.length > 0) data = decodeTensor(input.datatype, raw[i]!, count, at);
    else {
      const field = FIELD[input.datatype];
      if (field === undefined)
        throw syError(
          'SY_ERR_INVALID_REQUEST',
          `${input.datatype} has no typed contents: send it in raw_input_contents`,
          { param: `${at}.datatype` },
        );
      const values = input.contents?.[field] ?? [];
      data =
        field === 'bytes_contents'
          ? (values as Buffer[]).map((b) => {
              try {
                return utf8.decode(b);
              } catch {
                throw syError('SY_ERR_INVALID_REQUEST', 'BYTES elements must be UTF-8 text', {
                  param: `${at}.contents`,
                });
              }
            })
          : [...(values as number[] | boolean[])];
    }
    const p = params(input.parameters);
    return {
      name: input.name,
      datatype: input.datatype,
      shape: [...input.shape],
      data,
      ...(p === undefined ? {} : { parameters: p }),
    };
  });
  const p = params(req.parameters);
  return {
    inputs,
    ...(req.outputs.length === 0 ? {} : { outputs: req.outputs.map((o) => ({ name: o.name })) }),
    ...(req.id === '' ? {} : { id: req.id }),
    ...(p === undefined ? {} : { parameters: p }),
  };
}

const str = (v: JsonValue | undefined): string => (typeof v === 'string' ? v : '');

/** A JSON inference answer as a ModelInferResponse (raw for every output when one needs it). */
export function inferResponseFromJson(answer: JsonObject, model: string): Record<string, unknown> {
  const outputs = (Array.isArray(answer['outputs']) ? answer['outputs'] : []).filter(isJsonObject);
  const raw = outputs.some((o) => FIELD[str(o['datatype'])] === undefined);
  const flat = (v: JsonValue | undefined): JsonValue[] => {
    const out: JsonValue[] = [];
    const walk = (x: JsonValue | undefined): void => {
      if (Array.isArray(x)) for (const y of x) walk(y);
      else if (x !== undefined) out.push(x);
    };
    walk(v);
    return out;
  };
  const tensors = outputs.map((o) => {
    const datatype = str(o['datatype']);
    const base = {
      name: str(o['name']),
      datatype,
      shape: Array.isArray(o['shape']) ? o['shape'] : [],
    };
    if (raw) return base;
    const field = FIELD[datatype]!;
    const values = flat(o['data']);
    const contents: GrpcContents = {
      [field]:
        field === 'bytes_contents'
          ? values.map((v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)))
          : field === 'bool_contents'
            ? values.map((v) => v === true)
            : values.map((v) => Number(v)),
    };
    return extend(base, { contents });
  });
  return {
    model_name: model,
    model_version: typeof answer['model_version'] === 'string' ? answer['model_version'] : '',
    id: typeof answer['id'] === 'string' ? answer['id'] : '',
    outputs: tensors,
    raw_output_contents: raw
      ? outputs.map((o) => encodeTensor(str(o['datatype']), o['data'] ?? []))
      : [],
  };
}
