import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pairExpected, pairModel, writeSynthetic } from '../../src/modelkit/synthetic-models.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';

/**
 * #16 item 7: the KServe v2 gRPC service (inference.GRPCInferenceService) through a plain
 * grpc-js client built from the shipped proto, against an in-process ONNX model: the same
 * models, auth (the key in metadata) and pipeline as the REST routes, on server.grpc.port.
 */
type Callback<T> = (err: grpc.ServiceError | null, res: T) => void;
type Rpc = (req: unknown, md: grpc.Metadata, cb: Callback<Record<string, unknown>>) => void;
type Client = grpc.Client & Record<string, Rpc>;

let dir: string;
let gw: TestGateway;
let client: Client;
let auth: grpc.Metadata;

function call(rpc: string, req: unknown, md = auth): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) =>
    client[rpc]!.call(client, req, md, (err, res) => (err === null ? resolve(res) : reject(err))),
  );
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'switchyard-kserve-grpc-'));
  await writeSynthetic(join(dir, 'pair'), '1', pairModel(3));
  gw = await startTestGateway({
    config: {
      server: { host: '127.0.0.1', port: 0, grpc: { enabled: true, port: 0 } },
      onnx: { workers: 1 },
      models: { pair: { backend: 'onnx', store: join(dir, 'pair'), watch: false } },
    },
  });
  const def = protoLoader.loadSync(join(process.cwd(), 'proto/kserve/grpc_predict_v2.proto'), {
    keepCase: true,
    longs: Number,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    inference: {
      GRPCInferenceService: new (addr: string, creds: grpc.ChannelCredentials) => Client;
    };
  };
  client = new pkg.inference.GRPCInferenceService(
    `127.0.0.1:${gw.gateway.grpcPort}`,
    grpc.credentials.createInsecure(),
  );
  auth = new grpc.Metadata();
  auth.set('authorization', `Bearer ${gw.key}`);
});
afterAll(async () => {
  client?.close();
  await gw?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('KServe v2 gRPC (#16)', () => {
  it('answers ServerLive and ServerMetadata', async () => {
    expect(await call('ServerLive', {})).toEqual({ live: true });
    expect(await call('ServerMetadata', {})).toMatchObject({
      name: 'switchyard',
      extensions: ['binary_tensor_data'],
    });
  });

  it('answers ModelReady and ModelMetadata for a model the key may use', async () => {
    expect(await call('ModelReady', { name: 'pair' })).toEqual({ ready: true });
    expect(await call('ModelReady', { name: 'pair', version: '7' })).toEqual({ ready: false });
    const meta = await call('ModelMetadata', { name: 'pair' });
    expect(meta['name']).toBe('pair');
    expect(meta['versions']).toEqual(['1']);
    expect(meta['inputs']).toEqual([
      { name: 'a', datatype: 'FP32', shape: [-1, 4] },
      { name: 'b', datatype: 'FP32', shape: [-1, 4] },
    ]);
  });

  it('runs ModelInfer with typed contents and with raw_input_contents', async () => {
    const a = [1, 2, 3, 4];
    const b = [0.5, -1, 2, 8];
    const want = pairExpected(a, b, 3);
    const typed = await call('ModelInfer', {
      model_name: 'pair',
      id: 'g-1',
      inputs: [
        { name: 'a', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: a } },
        { name: 'b', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: b } },
      ],
      outputs: [{ name: 'dot' }],
    });
    expect(typed).toMatchObject({ model_name: 'pair', model_version: '1', id: 'g-1' });
    const [dot] = typed['outputs'] as {
      name: string;
      shape: number[];
      contents: { fp32_contents: number[] };
    }[];
    expect(dot!.name).toBe('dot');
    expect(dot!.shape).toEqual([1, 1]);
    expect(dot!.contents.fp32_contents[0]).toBeCloseTo(want.dot, 4);

    const le = (v: number[]) => {
      const buf = Buffer.alloc(v.length * 4);
      v.forEach((x, i) => buf.writeFloatLE(x, i * 4));
      return buf;
    };
    const raw = await call('ModelInfer', {
      model_name: 'pair',
      inputs: [
        { name: 'a', datatype: 'FP32', shape: [1, 4] },
        { name: 'b', datatype: 'FP32', shape: [1, 4] },
      ],
      raw_input_contents: [le(a), le(b)],
    });
    const mixed = (
      raw['outputs'] as { name: string; contents: { fp32_contents: number[] } }[]
    ).find((o) => o.name === 'mixed');
    mixed!.contents.fp32_contents.forEach((v, i) => expect(v).toBeCloseTo(want.mixed[i]!, 4));
    // Each RPC is one request-log line, as an HTTP request is, with its route through the pipeline.
    const lines = gw.logs.filter((l) => l['route'] === 'grpc:ModelInfer' && l['status'] === 200);
    expect(lines.length).toBeGreaterThanOrEqual(2);
    expect(lines.at(-1)).toMatchObject({ model: 'pair', tenant: 'acme' });
  });

  it('refuses a call without a key, an unknown model and a bad tensor with the matching status', async () => {
    const none = await call('ModelMetadata', { name: 'pair' }, new grpc.Metadata()).catch(
      (e: grpc.ServiceError) => e,
    );
    expect((none as grpc.ServiceError).code).toBe(grpc.status.UNAUTHENTICATED);
    expect((none as grpc.ServiceError).metadata.get('switchyard-code')).toEqual([
      'SY_ERR_AUTH_MISSING',
    ]);
    const unknown = await call('ModelInfer', { model_name: 'nope', inputs: [] }).catch(
      (e: grpc.ServiceError) => e,
    );
    expect((unknown as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
    const bad = await call('ModelInfer', {
      model_name: 'pair',
      inputs: [{ name: 'a', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1] } }],
    }).catch((e: grpc.ServiceError) => e);
    expect((bad as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((bad as grpc.ServiceError).details).toMatch(/^SY_ERR_/);
  });
});

describe('server.grpc.host', () => {
  it('binds the gRPC service to the configured address, not the HTTP one', async () => {
    const other = await startTestGateway({
      config: {
        server: { host: '127.0.0.1', port: 0, grpc: { enabled: true, host: '127.0.0.2', port: 0 } },
        models: {},
      },
    });
    const connects = (host: string): Promise<boolean> =>
      new Promise((resolve) => {
        const c = new grpc.Client(
          `${host}:${other.gateway.grpcPort}`,
          grpc.credentials.createInsecure(),
        );
        c.waitForReady(Date.now() + 1_000, (err) => {
          c.close();
          resolve(err === undefined || err === null);
        });
      });
    try {
      expect(await connects('127.0.0.2')).toBe(true);
      expect(await connects('127.0.0.1')).toBe(false);
    } finally {
      await other.close();
    }
  });
});
