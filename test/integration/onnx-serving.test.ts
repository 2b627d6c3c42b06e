import { mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { featurize } from '../../src/backends/onnx/text-features.js';
import {
  mlpModel,
  pairExpected,
  pairModel,
  textCard,
  writeSynthetic,
} from '../../src/modelkit/synthetic-models.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

/**
 * In-process ONNX models through the real gateway (issue #3): KServe v2 metadata read from the
 * model, tensor validation as 400s, /v1/embeddings from an ONNX embedding model, and inference
 * that never runs on the main thread. The models are real ONNX files written by modelkit (no
 * ONNX Runtime in this thread: that is one of the things this file checks).
 */

const LABELS = ['a', 'b', 'c', 'd', 'e'];
let dir: string;
let gw: TestGateway;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'switchyard-onnx-serving-'));
  await writeSynthetic(join(dir, 'pair'), '1', pairModel(3));
  await writeSynthetic(
    join(dir, 'embed'),
    '1',
    mlpModel({ inputs: 128, hidden: [32], outputs: 16, seed: 1, head: 'l2' }),
    textCard('embedding', 128),
  );
  await writeSynthetic(
    join(dir, 'intent'),
    '1',
    mlpModel({ inputs: 128, hidden: [16], outputs: LABELS.length, seed: 2, head: 'softmax' }),
    textCard('classifier', 128, LABELS),
  );
  const onnx = (store: string, extra: Record<string, unknown> = {}) => ({
    backend: 'onnx',
    store: join(dir, store),
    watch: false,
    ...extra,
  });
  gw = await startTestGateway({
    config: {
      onnx: { workers: 1 },
      models: {
        pair: onnx('pair'),
        'pair-lenient': onnx('pair', { allow_non_finite: true }),
        embed: onnx('embed'),
        intent: onnx('intent'),
      },
    },
  });
});

afterAll(async () => {
  await gw?.close();
  await rm(dir, { recursive: true, force: true });
});

async function call(method: 'GET' | 'POST', path: string, body?: unknown, raw?: string) {
  const res = await request(`${gw.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${gw.key}`, 'content-type': 'application/json' },
    ...(body === undefined && raw === undefined ? {} : { body: raw ?? JSON.stringify(body) }),
  });
  return {
    status: res.statusCode,
    type: res.headers['content-type'],
    body: (await res.body.json()) as Record<string, unknown>,
  };
}

const fp32 = (name: string, shape: number[], data: unknown[]) => ({
  name,
  datatype: 'FP32',
  shape,
  data,
});

describe('KServe v2 on an in-process ONNX model', () => {
  it('serves model metadata with the input and output names, types and shapes read from the model', async () => {
    const { status, body } = await call('GET', '/v2/models/pair');
    expect(status).toBe(200);
    expect(body).toMatchObject({
      name: 'pair',
      versions: ['1'],
      platform: 'onnxruntime_onnx',
      inputs: [
        { name: 'a', datatype: 'FP32', shape: [-1, 4] },
        { name: 'b', datatype: 'FP32', shape: [-1, 4] },
      ],
      outputs: [
        { name: 'mixed', datatype: 'FP32', shape: [-1, 4] },
        { name: 'dot', datatype: 'FP32', shape: [-1, 1] },
      ],
    });
    const versioned = await call('GET', '/v2/models/intent/versions/1');
    expect(versioned.body).toMatchObject({
      inputs: [{ name: 'features', datatype: 'FP32', shape: [-1, 128] }],
      outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [-1, LABELS.length] }],
      parameters: { task: 'classifier', labels: LABELS },
    });
    expect((await call('GET', '/v2/models/pair/ready')).status).toBe(200);
    expect((await call('GET', '/v2/models/pair/versions/7/ready')).status).toBe(503);
  });

  it('answers an inference request with the model outputs, row for row', async () => {
    const a = [1, 2, 3, 4, -1, 0.5, 0, 2];
    const b = [0.25, 1, -2, 8, 3, 3, 3, 3];
    const { status, body } = await call('POST', '/v2/models/pair/infer', {
      id: 'req-7',
      inputs: [fp32('a', [2, 4], a), fp32('b', [2, 4], [b.slice(0, 4), b.slice(4)])],
    });
    expect(status).toBe(200);
    expect(body).toMatchObject({ model_name: 'pair', model_version: '1', id: 'req-7' });
    const [mixed, dot] = body['outputs'] as { name: string; shape: number[]; data: number[] }[];
    const rows = [0, 1].map((r) =>
      pairExpected(a.slice(r * 4, r * 4 + 4), b.slice(r * 4, r * 4 + 4), 3),
    );
    expect(mixed).toMatchObject({ name: 'mixed', datatype: 'FP32', shape: [2, 4] });
    expect(mixed!.data).toEqual(rows.flatMap((r) => r.mixed));
    expect(dot).toMatchObject({ name: 'dot', shape: [2, 1] });
    dot!.data.forEach((v, i) => expect(v).toBeCloseTo(rows[i]!.dot, 4));
  });

  it('returns only the outputs asked for', async () => {
    const { body } = await call('POST', '/v2/models/pair/infer', {
      inputs: [fp32('a', [1, 4], [1, 1, 1, 1]), fp32('b', [1, 4], [1, 2, 3, 4])],
      outputs: [{ name: 'dot' }],
    });
    expect(body['outputs']).toEqual([{ name: 'dot', datatype: 'FP32', shape: [1, 1], data: [10] }]);
  });

  const good = () => [fp32('a', [1, 4], [1, 2, 3, 4]), fp32('b', [1, 4], [1, 2, 3, 4])];
  const bad: [string, unknown, RegExp][] = [
    [
      'a wrong datatype',
      { inputs: [{ ...good()[0], datatype: 'INT32' }, good()[1]] },
      /must be FP32, not "INT32"/,
    ],
    ['a wrong rank', { inputs: [fp32('a', [4], [1, 2, 3, 4]), good()[1]] }, /rank 2/],
    [
      'a wrong fixed dimension',
      { inputs: [fp32('a', [1, 5], [1, 2, 3, 4, 5]), good()[1]] },
      /shape \[-1, 4\]/,
    ],
    [
      'an element count that does not match the shape',
      { inputs: [fp32('a', [2, 4], [1, 2, 3, 4, 5, 6, 7]), good()[1]] },
      /7 values but shape \[2, 4\] needs 8/,
    ],
    [
      'a value that is not finite in FP32',
      { inputs: [fp32('a', [1, 4], [1, 2, 1e39, 4]), good()[1]] },
      /outside the FP32 range/,
    ],
    [
      'a string where numbers belong',
      { inputs: [fp32('a', [1, 4], [1, 2, 'NaN', 4]), good()[1]] },
      /must hold numbers/,
    ],
    [
      'an unknown input name',
      { inputs: [...good(), fp32('c', [1, 4], [1, 2, 3, 4])] },
      /no input c; it takes a, b/,
    ],
    ['a missing input', { inputs: [good()[0]] }, /input b is missing/],
    [
      'inputs with different batch sizes',
      { inputs: [good()[0], fp32('b', [2, 4], [1, 2, 3, 4, 5, 6, 7, 8])] },
      /same batch size/,
    ],
    [
      'an unknown output name',
      { inputs: good(), outputs: [{ name: 'logits' }] },
      /no output "logits"/,
    ],
  ];
  it.each(bad)(
    'refuses %s with a 400 SY_ERR_INVALID_TENSOR saying what is wrong',
    async (_, body, message) => {
      const res = await call('POST', '/v2/models/pair/infer', body);
      expect(res.status).toBe(400);
      expect(res.type).toMatch(/application\/json/);
      expect(res.body).toMatchObject({ code: 'SY_ERR_INVALID_TENSOR' });
      expect(res.body['error']).toMatch(message);
      expect(typeof res.body['request_id']).toBe('string');
    },
  );

  it('refuses a number JSON turns into Infinity before it reaches the model', async () => {
    const raw = `{"inputs":[{"name":"a","datatype":"FP32","shape":[1,4],"data":[1,2,1e999,4]},${JSON.stringify(good()[1])}]}`;
    const res = await call('POST', '/v2/models/pair/infer', undefined, raw);
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: 'SY_ERR_INVALID_JSON' });
  });

  it('lets a model configured with allow_non_finite take values beyond the FP32 range', async () => {
    const res = await call('POST', '/v2/models/pair-lenient/infer', {
      inputs: [fp32('a', [1, 4], [1, 2, 1e39, 4]), fp32('b', [1, 4], [0, 0, 0, 0])],
      outputs: [{ name: 'mixed' }],
    });
    expect(res.status).toBe(200);
    // Infinity has no JSON form; it is written as null.
    expect((res.body['outputs'] as { data: unknown[] }[])[0]!.data).toEqual([1, 2, null, 4]);
  });

  it('answers an unknown version with 404', async () => {
    const res = await call('POST', '/v2/models/pair/versions/9/infer', { inputs: good() });
    expect(res.status).toBe(404);
    expect(res.body).toMatchObject({ code: 'SY_ERR_MODEL_NOT_FOUND' });
  });
});

describe('/v1/embeddings from an in-process ONNX embedding model', () => {
  it('serves the official OpenAI SDK unit vectors that match the model run on the same features', async () => {
    const client = new OpenAI({ apiKey: gw.key, baseURL: `${gw.url}/v1`, maxRetries: 0 });
    const texts = ['where is my parcel', 'refund my order please', 'where is my parcel'];
    // The SDK asks for base64 and decodes it; this checks the binary path end to end.
    const res = await client.embeddings.create({ model: 'embed', input: texts });
    expect(res.model).toBe('embed');
    expect(res.data.map((d) => d.index)).toEqual([0, 1, 2]);
    for (const d of res.data) {
      expect(d.embedding).toHaveLength(16);
      const norm = Math.hypot(...d.embedding);
      expect(norm).toBeCloseTo(1, 5);
    }
    expect(res.data[2]!.embedding).toEqual(res.data[0]!.embedding);
    expect(res.data[1]!.embedding).not.toEqual(res.data[0]!.embedding);
    expect(res.usage.prompt_tokens).toBe(4 + 4 + 4);

    // The same vectors through KServe, from features computed here the way the gateway does.
    const features = featurize([texts[1]!], { featurizer: 'hashing-v1', dims: 128 });
    const infer = await call('POST', '/v2/models/embed/infer', {
      inputs: [fp32('features', [1, 128], Array.from(features))],
    });
    const vector = (infer.body['outputs'] as { data: number[] }[])[0]!.data;
    vector.forEach((v, i) => expect(v).toBeCloseTo(res.data[1]!.embedding[i]!, 6));

    const floats = await call('POST', '/v1/embeddings', {
      model: 'embed',
      input: 'where is my parcel',
      encoding_format: 'float',
    });
    expect((floats.body['data'] as { embedding: number[] }[])[0]!.embedding).toEqual(
      res.data[0]!.embedding,
    );
  });

  it('refuses a dimensions value the model cannot make, and a classifier, with JSON errors', async () => {
    const dims = await call('POST', '/v1/embeddings', {
      model: 'embed',
      input: 'x',
      dimensions: 8,
    });
    expect(dims.status).toBe(400);
    expect(dims.body).toMatchObject({
      error: { code: 'SY_ERR_INVALID_REQUEST', param: 'dimensions' },
    });
    const classifier = await call('POST', '/v1/embeddings', { model: 'intent', input: 'x' });
    expect(classifier.status).toBe(400);
    expect(classifier.body).toMatchObject({ error: { code: 'SY_ERR_OPERATION_UNSUPPORTED' } });
  });
});

describe('where inference runs', () => {
  it('never loads ONNX Runtime on the main thread: the sessions live in worker threads', async () => {
    const res = await call('POST', '/v2/models/intent/infer', {
      inputs: [
        fp32(
          'features',
          [1, 128],
          Array.from(featurize(['hello'], { featurizer: 'hashing-v1', dims: 128 })),
        ),
      ],
    });
    expect(res.status).toBe(200);
    const probs = (res.body['outputs'] as { data: number[] }[])[0]!.data;
    expect(probs.reduce((s, p) => s + p, 0)).toBeCloseTo(1, 5);
    // The native binding is in the process (a worker loaded it) ...
    const report = process.report.getReport() as unknown as { sharedObjects: string[] };
    expect(report.sharedObjects.some((s) => s.includes('onnxruntime'))).toBe(true);
    // ... but this thread's module cache has never seen onnxruntime-node (a CommonJS package,
    // so importing it anywhere in this thread would have put it here).
    const cache = Object.keys(createRequire(import.meta.url).cache);
    expect(cache.length).toBeGreaterThan(0);
    expect(cache.filter((k) => k.includes('onnxruntime'))).toEqual([]);
  });
});
