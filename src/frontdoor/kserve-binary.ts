import type { JsonObject, JsonValue } from '../contracts/json.js';
import { syError } from '../core/errors.js';
import { isJsonObject, parseJsonObject } from '../core/safe-json.js';
import { extend } from '../core/objects.js';

/**
 * The KServe v2 binary tensor data extension, as Triton defines it and its clients send it by
 * default. Format source: Triton's protocol docs, `docs/protocol/extension_binary_data.md` in
 * github.com/triton-inference-server/server ("Binary Tensor Data Extension"):
 *
 * - The body is a JSON inference header followed by raw tensor bytes. The request (or response)
 *   header `Inference-Header-Content-Length` gives the JSON part's length in bytes; without it the
 *   whole body is JSON. The content type is not what says so (Triton's client labels both kinds
 *   `application/octet-stream`).
 * - An input sent in binary has `"parameters": {"binary_data_size": N}` and no `data`; the binary
 *   parts follow the JSON in the order of those inputs.
 * - Tensors are row-major and little-endian; BOOL is one byte per element; a BYTES element is a
 *   4-byte little-endian length followed by that many bytes.
 * - An output is asked for in binary with `"parameters": {"binary_data": true}` on it, or for all
 *   outputs with the request parameter `"binary_data_output": true`. The answer then carries the
 *   outputs' `binary_data_size` and appends their bytes in output order, with its own
 *   `Inference-Header-Content-Length`.
 *
 * Switchyard translates: binary inputs become JSON `data` before the pipeline (so every backend
 * serves binary clients), and outputs asked for in binary are encoded from the JSON answer. BYTES
 * elements must therefore be UTF-8 text; 64-bit integers beyond 2^53 lose precision.
 */
export const BINARY_HEADER = 'inference-header-content-length';
export const BINARY_CONTENT_TYPE = 'application/octet-stream';

const SIZE: Readonly<Record<string, number>> = {
  BOOL: 1,
  UINT8: 1,
  INT8: 1,
  UINT16: 2,
  INT16: 2,
  FP16: 2,
  BF16: 2,
  UINT32: 4,
  INT32: 4,
  FP32: 4,
  UINT64: 8,
  INT64: 8,
  FP64: 8,
};

function invalid(detail: string, param: string): never {
  throw syError('SY_ERR_INVALID_REQUEST', detail, { param });
}

/** The JSON header's length from `Inference-Header-Content-Length` (a 400 when malformed). */
export function headerLength(value: string | string[] | undefined, bodyBytes: number): number {
  if (typeof value !== 'string' || !/^\d{1,10}$/.test(value))
    invalid('Inference-Header-Content-Length must be one whole number', BINARY_HEADER);
  const n = Number(value);
  if (n === 0 || n > bodyBytes)
    invalid(
      `Inference-Header-Content-Length ${n} does not fit a ${bodyBytes}-byte body`,
      BINARY_HEADER,
    );
  return n;
}

/**
 * A binary-extension request as the plain JSON request it stands for: every input with a
 * `binary_data_size` gets its bytes decoded into `data` (flat, row-major).
 */
export function decodeBinaryRequest(raw: Buffer, jsonLength: number): JsonObject {
  const body = parseJsonObject(raw.subarray(0, jsonLength).toString('utf8'));
  let offset = jsonLength;
  const inputs = body['inputs'];
  if (Array.isArray(inputs)) {
    inputs.forEach((input, i) => {
      if (!isJsonObject(input) || !isJsonObject(input['parameters'])) return;
      const params = input['parameters'];
      const size = params['binary_data_size'];
      if (size === undefined) return;
      const at = `inputs[${i}]`;
      if (typeof size !== 'number' || !Number.isInteger(size) || size < 0)
        invalid('"binary_data_size" must be a non-negative integer', `${at}.parameters`);
      if (input['data'] !== undefined)
        invalid('an input sent in binary has no "data"', `${at}.data`);
      if (offset + size > raw.length)
        invalid(`the binary data ends before input ${i}'s ${size} bytes`, `${at}.parameters`);
      const shape = input['shape'];
      const count = Array.isArray(shape)
        ? shape.reduce<number>((n, d) => n * (typeof d === 'number' ? d : NaN), 1)
        : NaN;
      if (!Number.isInteger(count) || count < 0)
        invalid('"shape" must be an array of non-negative integers', `${at}.shape`);
      const datatype = typeof input['datatype'] === 'string' ? input['datatype'] : '';
      input['data'] = decodeTensor(datatype, raw.subarray(offset, offset + size), count, at);
      offset += size;
      const { binary_data_size: _drop, ...rest } = params;
      if (Object.keys(rest).length === 0) delete input['parameters'];
      else input['parameters'] = rest;
    });
  }
  if (offset !== raw.length)
    invalid(`${raw.length - offset} bytes follow the inputs' binary data`, 'inputs');
  return body;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** `count` elements of `datatype` from little-endian bytes. */
export function decodeTensor(
  datatype: string,
  bytes: Buffer,
  count: number,
  at: string,
): JsonValue[] {
  if (datatype === 'BYTES') {
    const out: JsonValue[] = [];
    let p = 0;
    while (p < bytes.length) {
      if (p + 4 > bytes.length) invalid('a BYTES element is cut short', `${at}.parameters`);
      const len = bytes.readUInt32LE(p);
      p += 4;
      if (p + len > bytes.length) invalid('a BYTES element is cut short', `${at}.parameters`);
      try {
        out.push(utf8.decode(bytes.subarray(p, p + len)));
      } catch {
        invalid('BYTES elements must be UTF-8 text to be served', `${at}.parameters`);
      }
      p += len;
    }
    if (out.length !== count)
      invalid(`${out.length} BYTES elements for a shape of ${count}`, `${at}.shape`);
    return out;
  }
  const size = SIZE[datatype];
  if (size === undefined) invalid(`unknown datatype ${JSON.stringify(datatype)}`, `${at}.datatype`);
  if (bytes.length !== size * count)
    invalid(
      `binary_data_size ${bytes.length} is not ${count} ${datatype} elements (${size * count} bytes)`,
      `${at}.parameters`,
    );
  const out = new Array<JsonValue>(count);
  for (let i = 0; i < count; i++) out[i] = readElement(datatype, bytes, i * size);
  return out;
}

function readElement(datatype: string, b: Buffer, o: number): JsonValue {
  switch (datatype) {
    case 'BOOL':
      return b[o] !== 0;
    case 'UINT8':
      return b.readUInt8(o);
    case 'INT8':
      return b.readInt8(o);
    case 'UINT16':
      return b.readUInt16LE(o);
    case 'INT16':
      return b.readInt16LE(o);
    case 'FP16':
      return halfToFloat(b.readUInt16LE(o));
    case 'BF16':
      return bf16ToFloat(b.readUInt16LE(o));
    case 'UINT32':
      return b.readUInt32LE(o);
    case 'INT32':
      return b.readInt32LE(o);
    case 'FP32':
      return b.readFloatLE(o);
    case 'UINT64':
      return Number(b.readBigUInt64LE(o));
    case 'INT64':
      return Number(b.readBigInt64LE(o));
    default:
      return b.readDoubleLE(o);
  }
}

/** Little-endian bytes of a tensor's (possibly nested) JSON data. */
export function encodeTensor(datatype: string, data: JsonValue): Buffer {
  const flat: JsonValue[] = [];
  const walk = (v: JsonValue): void => {
    if (Array.isArray(v)) for (const x of v) walk(x);
    else flat.push(v);
  };
  walk(data);
  if (datatype === 'BYTES') {
    const parts: Buffer[] = [];
    for (const v of flat) {
      const s = Buffer.from(typeof v === 'string' ? v : JSON.stringify(v), 'utf8');
      const len = Buffer.allocUnsafe(4);
      len.writeUInt32LE(s.length, 0);
      parts.push(len, s);
    }
    return Buffer.concat(parts);
  }
  const size = SIZE[datatype];
  if (size === undefined)
    throw syError('SY_ERR_UPSTREAM_BAD_RESPONSE', `an output has datatype ${datatype}`);
  const b = Buffer.alloc(size * flat.length);
  flat.forEach((v, i) => writeElement(datatype, b, i * size, v));
  return b;
}

function writeElement(datatype: string, b: Buffer, o: number, v: JsonValue): void {
  const n = typeof v === 'boolean' ? (v ? 1 : 0) : typeof v === 'number' ? v : Number(v);
  switch (datatype) {
    case 'BOOL':
    case 'UINT8':
      b.writeUInt8(n & 0xff, o);
      return;
    case 'INT8':
      b.writeInt8(n, o);
      return;
    case 'UINT16':
      b.writeUInt16LE(n, o);
      return;
    case 'INT16':
      b.writeInt16LE(n, o);
      return;
    case 'FP16':
      b.writeUInt16LE(floatToHalf(n), o);
      return;
    case 'BF16':
      b.writeUInt16LE(floatToBf16(n), o);
      return;
    case 'UINT32':
      b.writeUInt32LE(n, o);
      return;
    case 'INT32':
      b.writeInt32LE(n, o);
      return;
    case 'FP32':
      b.writeFloatLE(n, o);
      return;
    case 'UINT64':
      b.writeBigUInt64LE(BigInt(Math.trunc(n)), o);
      return;
    case 'INT64':
      b.writeBigInt64LE(BigInt(Math.trunc(n)), o);
      return;
    default:
      b.writeDoubleLE(n, o);
  }
}

/** Which outputs the client wants in binary. */
export interface BinaryWish {
  readonly all: boolean;
  readonly names: ReadonlySet<string>;
}

/**
 * Reads the request's binary-output wishes and removes them from the body, so an upstream answers
 * plain JSON and the front door encodes what was asked. Undefined when nothing is wanted in binary.
 */
export function takeBinaryWish(body: JsonObject): BinaryWish | undefined {
  let all = false;
  const names = new Set<string>();
  const params = body['parameters'];
  if (isJsonObject(params) && params['binary_data_output'] !== undefined) {
    all = params['binary_data_output'] === true;
    const { binary_data_output: _drop, ...rest } = params;
    body['parameters'] = rest;
  }
  const outputs = body['outputs'];
  if (Array.isArray(outputs)) {
    for (const o of outputs) {
      if (!isJsonObject(o) || !isJsonObject(o['parameters'])) continue;
      const p = o['parameters'];
      if (p['binary_data'] === undefined) continue;
      if (p['binary_data'] === true && typeof o['name'] === 'string') names.add(o['name']);
      const { binary_data: _drop, ...rest } = p;
      if (Object.keys(rest).length === 0) delete o['parameters'];
      else o['parameters'] = rest;
    }
  }
  return all || names.size > 0 ? { all, names } : undefined;
}

/**
 * A JSON inference answer as a binary-extension answer: each wanted output's `data` moves behind
 * the JSON header as bytes, and its `parameters.binary_data_size` says how many.
 */
export function encodeBinaryResponse(
  answer: JsonObject,
  wish: BinaryWish,
): { readonly body: Buffer; readonly jsonLength: number } {
  const parts: Buffer[] = [];
  const outputs = Array.isArray(answer['outputs']) ? answer['outputs'] : [];
  const shown = outputs.map((o) => {
    if (!isJsonObject(o) || typeof o['name'] !== 'string') return o;
    if (!wish.all && !wish.names.has(o['name'])) return o;
    const { data, ...rest } = o;
    const bytes = encodeTensor(typeof o['datatype'] === 'string' ? o['datatype'] : '', data ?? []);
    parts.push(bytes);
    const params = isJsonObject(o['parameters']) ? o['parameters'] : {};
    return extend(rest, { parameters: extend(params, { binary_data_size: bytes.length }) });
  });
  const json = Buffer.from(JSON.stringify(extend(answer, { outputs: shown })), 'utf8');
  return { body: Buffer.concat([json, ...parts]), jsonLength: json.length };
}

// IEEE 754 half precision (FP16) and bfloat16 conversions.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

function floatToHalf(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const frac = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (frac === 0 ? 0 : 0x200);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = (frac | 0x800000) >> (1 - e);
    return sign | ((m + 0x1000) >> 13);
  }
  return sign | (e << 10) | ((frac + 0x1000) >> 13);
}

function bf16ToFloat(h: number): number {
  u32[0] = h << 16;
  return f32[0]!;
}

function floatToBf16(v: number): number {
  f32[0] = v;
  return u32[0]! >>> 16;
}
