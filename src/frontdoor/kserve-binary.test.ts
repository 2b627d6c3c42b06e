import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { JsonValue } from '../contracts/json.js';
import {
  decodeTensor,
  encodeBinaryResponse,
  encodeTensor,
  takeBinaryWish,
} from './kserve-binary.js';

/** Elements each datatype holds exactly, so encode → decode must give them back. */
const ELEMENTS: Record<string, fc.Arbitrary<JsonValue>> = {
  BOOL: fc.boolean(),
  UINT8: fc.integer({ min: 0, max: 255 }),
  INT8: fc.integer({ min: -128, max: 127 }),
  UINT16: fc.integer({ min: 0, max: 65_535 }),
  INT16: fc.integer({ min: -32_768, max: 32_767 }),
  UINT32: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
  INT32: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  UINT64: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  INT64: fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }),
  // Values FP32, FP16 and BF16 hold exactly.
  FP32: fc.float({ noNaN: true, noDefaultInfinity: true }).map((v) => Math.fround(v)),
  FP64: fc.double({ noNaN: true, noDefaultInfinity: true }),
  FP16: fc.integer({ min: -2048, max: 2048 }).map((v) => v / 4),
  BF16: fc.integer({ min: -128, max: 128 }).map((v) => v * 2 ** 10),
  BYTES: fc.string({ unit: 'grapheme', maxLength: 20 }),
};

describe('the binary tensor codec', () => {
  it('gives back every element of every datatype it encodes', () => {
    for (const [datatype, element] of Object.entries(ELEMENTS)) {
      fc.assert(
        fc.property(fc.array(element, { maxLength: 40 }), (values) => {
          const bytes = encodeTensor(datatype, values);
          const back = decodeTensor(datatype, bytes, values.length, 'inputs[0]');
          // -0 and 0 are the same number to a client; toEqual would tell them apart.
          expect(back.map((v) => (v === 0 ? 0 : v))).toEqual(values.map((v) => (v === 0 ? 0 : v)));
        }),
        { seed: 16, numRuns: 200 },
      );
    }
  });

  it('writes FP16 and BF16 in their IEEE bit layouts, little-endian', () => {
    expect(encodeTensor('FP16', [1, -2, 0.5])).toEqual(
      Buffer.from([0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38]),
    );
    expect(encodeTensor('BF16', [1])).toEqual(Buffer.from([0x80, 0x3f]));
  });

  it('takes the binary wishes out of the request, per output or for all', () => {
    const body = {
      inputs: [],
      outputs: [
        { name: 'a', parameters: { binary_data: true } },
        { name: 'b', parameters: { binary_data: false, x: 1 } },
      ],
      parameters: { binary_data_output: false },
    };
    const wish = takeBinaryWish(body);
    expect(wish?.all).toBe(false);
    expect([...(wish?.names ?? [])]).toEqual(['a']);
    expect(body).toEqual({
      inputs: [],
      outputs: [{ name: 'a' }, { name: 'b', parameters: { x: 1 } }],
      parameters: {},
    });
    expect(takeBinaryWish({ inputs: [] })).toBeUndefined();
  });

  it('appends the wanted outputs after the JSON header, in output order', () => {
    const { body, jsonLength } = encodeBinaryResponse(
      {
        model_name: 'm',
        outputs: [
          { name: 'x', datatype: 'INT32', shape: [2], data: [1, 2] },
          { name: 'y', datatype: 'UINT8', shape: [1, 1], data: [[9]] },
        ],
      },
      { all: true, names: new Set() },
    );
    const head = JSON.parse(body.subarray(0, jsonLength).toString('utf8')) as {
      outputs: unknown[];
    };
    expect(head.outputs).toEqual([
      { name: 'x', datatype: 'INT32', shape: [2], parameters: { binary_data_size: 8 } },
      { name: 'y', datatype: 'UINT8', shape: [1, 1], parameters: { binary_data_size: 1 } },
    ]);
    expect(body.subarray(jsonLength)).toEqual(Buffer.from([1, 0, 0, 0, 2, 0, 0, 0, 9]));
  });
});
