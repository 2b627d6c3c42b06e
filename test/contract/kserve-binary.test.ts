import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pairExpected, pairModel, writeSynthetic } from '../../src/modelkit/synthetic-models.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { json, startUpstream, type TestUpstream } from '../support/upstream.js';

/**
 * #16 item 7: the KServe v2 binary tensor data extension, as Triton's clients send it. The
 * requests are built here by hand, byte by byte, from Triton's protocol docs
 * (github.com/triton-inference-server/server, docs/protocol/extension_binary_data.md): a JSON
 * header whose length is in `Inference-Header-Content-Length`, then each binary input's bytes in
 * input order (little-endian, row-major; BYTES elements as a 4-byte little-endian length and the
 * bytes); `binary_data_size` on each such input; `binary_data: true` on an output (or the request
 * parameter `binary_data_output`) asks for it in binary, appended after the answer's JSON header.
 * The body is labelled application/octet-stream, as Triton's client does.
 */

const fp32 = (values: number[]): Buffer => {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeFloatLE(v, i * 4));
  return b;
};
const bytesElements = (values: string[]): Buffer =>
  Buffer.concat(
    values.flatMap((v) => {
      const s = Buffer.from(v, 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32LE(s.length);
      return [len, s];
    }),
  );

/** A binary-extension request: the JSON header, then the binary parts in order. */
function binaryRequest(header: unknown, parts: Buffer[]): { body: Buffer; jsonLength: number } {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  return { body: Buffer.concat([json, ...parts]), jsonLength: json.length };
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

let gw: TestGateway;
let up: TestUpstream;
let dir: string;

async function infer(
  model: string,
  body: Buffer | string,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const res = await request(`${gw.url}/v2/models/${model}/infer`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${gw.key}`,
      'content-type': 'application/octet-stream',
      ...headers,
    },
    body,
  });
  return {
    status: res.statusCode,
    headers: res.headers,
    body: Buffer.from(await res.body.arrayBuffer()),
  };
}

/** Splits a binary answer into its JSON header and the bytes after it. */
function split(a: Answer): { json: Record<string, unknown>; rest: Buffer } {
  const n = Number(a.headers['inference-header-content-length']);
  expect(Number.isInteger(n) && n > 0).toBe(true);
  return {
    json: JSON.parse(a.body.subarray(0, n).toString('utf8')) as Record<string, unknown>,
    rest: a.body.subarray(n),
  };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'switchyard-kserve-binary-'));
  await writeSynthetic(join(dir, 'pair'), '1', pairModel(3));
  up = await startUpstream();
  gw = await startTestGateway({
    config: {
      onnx: { workers: 1 },
      models: {
        pair: { backend: 'onnx', store: join(dir, 'pair'), watch: false },
        remote: { backend: 'kserve', url: up.url },
      },
    },
  });
});
afterAll(async () => {
  await gw?.close();
  await up?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('the KServe v2 binary tensor data extension (#16)', () => {
  const a = [1, 2, 3, 4];
  const b = [0.5, -1, 2, 8];
  const expected = pairExpected(a, b, 3);

  it('reads binary FP32 inputs and answers a binary output beside a JSON one (in-process ONNX)', async () => {
    const req = binaryRequest(
      {
        id: 'bin-1',
        inputs: [
          { name: 'a', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: 16 } },
          { name: 'b', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: 16 } },
        ],
        outputs: [{ name: 'dot', parameters: { binary_data: true } }, { name: 'mixed' }],
      },
      [fp32(a), fp32(b)],
    );
    const res = await infer('pair', req.body, {
      'inference-header-content-length': String(req.jsonLength),
    });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/octet-stream');
    const { json: head, rest } = split(res);
    expect(head).toMatchObject({ model_name: 'pair', id: 'bin-1' });
    const [dot, mixed] = head['outputs'] as Record<string, unknown>[];
    expect(dot).toEqual({
      name: 'dot',
      datatype: 'FP32',
      shape: [1, 1],
      parameters: { binary_data_size: 4 },
    });
    expect(rest.length).toBe(4);
    expect(rest.readFloatLE(0)).toBeCloseTo(expected.dot, 4);
    expect(mixed).toMatchObject({ name: 'mixed', datatype: 'FP32', shape: [1, 4] });
    expect(mixed!['data']).toEqual(expected.mixed);
  });

  it('takes one input in binary and one in JSON, and binary_data_output for every output', async () => {
    const req = binaryRequest(
      {
        inputs: [
          { name: 'a', datatype: 'FP32', shape: [1, 4], data: a },
          { name: 'b', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: 16 } },
        ],
        parameters: { binary_data_output: true },
      },
      [fp32(b)],
    );
    const res = await infer('pair', req.body, {
      'inference-header-content-length': String(req.jsonLength),
    });
    expect(res.status).toBe(200);
    const { json: head, rest } = split(res);
    const outputs = head['outputs'] as { name: string; parameters: { binary_data_size: number } }[];
    let at = 0;
    for (const o of outputs) {
      const bytes = rest.subarray(at, at + o.parameters.binary_data_size);
      at += o.parameters.binary_data_size;
      const values = Array.from({ length: bytes.length / 4 }, (_, i) => bytes.readFloatLE(i * 4));
      if (o.name === 'mixed') expect(values).toEqual(expected.mixed);
      else expect(values[0]).toBeCloseTo(expected.dot, 4);
    }
    expect(at).toBe(rest.length);
  });

  it('accepts plain JSON labelled application/octet-stream when no binary header is sent', async () => {
    const body = JSON.stringify({
      inputs: [
        { name: 'a', datatype: 'FP32', shape: [1, 4], data: a },
        { name: 'b', datatype: 'FP32', shape: [1, 4], data: b },
      ],
    });
    const res = await infer('pair', body);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/json');
    const answer = JSON.parse(res.body.toString('utf8')) as { outputs: { data: number[] }[] };
    expect(answer.outputs[0]!.data).toEqual(expected.mixed);
  });

  it('translates BYTES, INT64, BOOL and FP16 inputs for a KServe upstream, and encodes its BYTES output in binary', async () => {
    up.behave(
      json(200, {
        model_name: 'remote',
        outputs: [
          { name: 'labels', datatype: 'BYTES', shape: [2], data: ['spam', 'ham ✓'] },
          { name: 'ids', datatype: 'INT32', shape: [2], data: [7, -3] },
        ],
      }),
    );
    const int64 = Buffer.alloc(16);
    int64.writeBigInt64LE(-5n, 0);
    int64.writeBigInt64LE(1n << 40n, 8);
    const fp16 = Buffer.alloc(4);
    fp16.writeUInt16LE(0x3c00, 0); // 1.0
    fp16.writeUInt16LE(0xc100, 2); // -2.5
    const text = bytesElements(['hello', 'wörld']);
    const req = binaryRequest(
      {
        inputs: [
          {
            name: 't',
            datatype: 'BYTES',
            shape: [2],
            parameters: { binary_data_size: text.length },
          },
          { name: 'n', datatype: 'INT64', shape: [2], parameters: { binary_data_size: 16 } },
          { name: 'f', datatype: 'BOOL', shape: [3], parameters: { binary_data_size: 3 } },
          { name: 'h', datatype: 'FP16', shape: [2], parameters: { binary_data_size: 4 } },
        ],
        outputs: [{ name: 'labels', parameters: { binary_data: true } }, { name: 'ids' }],
      },
      [text, int64, Buffer.from([1, 0, 1]), fp16],
    );
    const res = await infer('remote', req.body, {
      'inference-header-content-length': String(req.jsonLength),
    });
    expect(res.status).toBe(200);
    // The upstream got the JSON request the binary one stands for, with no binary wishes left.
    const sent = JSON.parse(up.calls.at(-1)!.body) as { inputs: unknown[]; outputs: unknown[] };
    expect(up.calls.at(-1)!.path).toBe('/v2/models/remote/infer');
    expect(sent.inputs).toEqual([
      { name: 't', datatype: 'BYTES', shape: [2], data: ['hello', 'wörld'] },
      { name: 'n', datatype: 'INT64', shape: [2], data: [-5, 2 ** 40] },
      { name: 'f', datatype: 'BOOL', shape: [3], data: [true, false, true] },
      { name: 'h', datatype: 'FP16', shape: [2], data: [1, -2.5] },
    ]);
    expect(sent.outputs).toEqual([{ name: 'labels' }, { name: 'ids' }]);
    const { json: head, rest } = split(res);
    const [labels, ids] = head['outputs'] as Record<string, unknown>[];
    expect(labels).toEqual({
      name: 'labels',
      datatype: 'BYTES',
      shape: [2],
      parameters: { binary_data_size: rest.length },
    });
    expect(rest.equals(bytesElements(['spam', 'ham ✓']))).toBe(true);
    expect(ids).toEqual({ name: 'ids', datatype: 'INT32', shape: [2], data: [7, -3] });
  });

  it.each([
    ['a header length past the body', 16, fp32(a), 999, 'does not fit'],
    ['a binary_data_size that is not the shape', 12, fp32([1, 2, 3]), 0, 'is not 4 FP32 elements'],
    ['bytes left after the inputs', 16, Buffer.concat([fp32(a), Buffer.from([0])]), 0, 'follow'],
  ])('refuses %s with 400', async (_what, size, part, extra, says) => {
    const req = binaryRequest(
      {
        inputs: [
          { name: 'a', datatype: 'FP32', shape: [1, 4], parameters: { binary_data_size: size } },
          { name: 'b', datatype: 'FP32', shape: [1, 4], data: b },
        ],
      },
      [part],
    );
    const res = await infer('pair', req.body, {
      'inference-header-content-length': String(req.jsonLength + extra),
    });
    expect(res.status).toBe(400);
    const body = JSON.parse(res.body.toString('utf8')) as Record<string, unknown>;
    expect(body['code']).toBe('SY_ERR_INVALID_REQUEST');
    expect(String(body['error'])).toContain(says);
  });
});
