import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OnnxBackend, type OnnxBackendOptions } from '../../src/backends/onnx/onnx-backend.js';
import { WorkerPool } from '../../src/backends/onnx/worker-pool.js';
import type { BackendRequest } from '../../src/contracts/backend.js';
import { systemClock } from '../../src/core/clock.js';
import { SwitchyardError } from '../../src/core/errors.js';
import { events, subscribe, type ModelBatchEvent } from '../../src/core/events.js';
import {
  mlpModel,
  pairModel,
  textCard,
  writeSynthetic,
} from '../../src/modelkit/synthetic-models.js';
import { callContext } from './backend.contract.js';
import { quietLogger } from '../support/onnx.js';

/**
 * The Backend contract for the in-process ONNX backend. The shared suite in backend.contract.ts
 * drives an HTTP upstream (resets, truncated bodies, upstream status codes), which an in-process
 * model does not have; this file checks the same promises where they apply: answers, describe,
 * health, metadata, SwitchyardErrors with registry codes, and no work for a caller whose signal
 * fired or whose deadline passed.
 */

let dir: string;
let pool: WorkerPool;
let backend: OnnxBackend;
let embed: OnnxBackend;
const batches: ModelBatchEvent[] = [];
let unsubscribe: () => void;

const options = (name: string, store: string): OnnxBackendOptions => ({
  name,
  store,
  policy: 'all',
  defaultVersion: undefined,
  batch: { max: 16, delay_us: 0, preferred: [], queue: 1000 },
  allowNonFinite: false,
  tier: 'edge',
  pool,
  clock: systemClock,
  log: quietLogger,
  priorityOf: () => 0,
  watch: false,
});

const request: BackendRequest = {
  op: 'infer',
  body: {
    inputs: [
      { name: 'a', datatype: 'FP32', shape: [1, 4], data: [1, 2, 3, 4] },
      { name: 'b', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, 1] },
    ],
  },
};

async function failure(p: Promise<unknown>): Promise<SwitchyardError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(SwitchyardError);
    return err as SwitchyardError;
  }
  throw new Error('expected the call to fail');
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'switchyard-onnx-contract-'));
  await writeSynthetic(join(dir, 'pair'), '1', pairModel(1));
  await writeSynthetic(join(dir, 'pair'), '2', pairModel(2));
  await writeSynthetic(
    join(dir, 'embed'),
    '1',
    mlpModel({ inputs: 64, hidden: [8], outputs: 4, seed: 5, head: 'l2' }),
    textCard('embedding', 64),
  );
  pool = new WorkerPool(1, 1, quietLogger);
  backend = new OnnxBackend(options('pair-contract', join(dir, 'pair')));
  embed = new OnnxBackend(options('embed-contract', join(dir, 'embed')));
  await Promise.all([backend.start(), embed.start()]);
  unsubscribe = subscribe(events.modelBatch, (e) => {
    if (e.model === 'pair-contract') batches.push(e);
  });
});

afterAll(async () => {
  unsubscribe();
  await Promise.all([backend.close(), embed.close()]);
  await pool.close();
  await rm(dir, { recursive: true, force: true });
});

describe('onnx backend contract', () => {
  it('returns the model answer on success, from the newest version by default', async () => {
    const res = await backend.call(request, callContext());
    expect(res.json).toMatchObject({
      model_name: 'pair-contract',
      model_version: '2',
      outputs: [
        { name: 'mixed', datatype: 'FP32', shape: [1, 4], data: [3, 4, 5, 6] },
        { name: 'dot', datatype: 'FP32', shape: [1, 1], data: [10] },
      ],
    });
    const v1 = await backend.call({ ...request, version: '1' }, callContext());
    expect(v1.json['model_version']).toBe('1');
  });

  it('describes itself with its kind, tier, upstream and operations', () => {
    expect(backend.describe()).toEqual({
      name: 'pair-contract',
      kind: 'onnx',
      tier: 'edge',
      upstream: 'in-process',
      operations: ['infer'],
    });
    expect(embed.describe().operations).toEqual(['infer', 'embeddings']);
  });

  it('reports health, readiness and metadata from the loaded versions', async () => {
    expect(backend.health()).toEqual({ state: 'healthy' });
    expect(await backend.ready(undefined)).toBe(true);
    expect(await backend.ready('3')).toBe(false);
    expect(await backend.metadata('1')).toMatchObject({
      name: 'pair-contract',
      versions: ['1', '2'],
      inputs: [{ name: 'a' }, { name: 'b' }],
    });
    const empty = new OnnxBackend(options('empty', join(dir, 'no-such-store')));
    await empty.start();
    expect(empty.health().state).toBe('unhealthy');
    const err = await failure(empty.call(request, callContext()));
    expect(err.code).toBe('SY_ERR_MODEL_NOT_READY');
    expect(err.retryable).toBe(true);
    await empty.close();
  });

  it('fails with SwitchyardErrors carrying registry codes', async () => {
    const bad = await failure(
      backend.call(
        {
          op: 'infer',
          body: { inputs: [{ name: 'a', datatype: 'FP32', shape: [1, 4], data: [1] }] },
        },
        callContext(),
      ),
    );
    expect(bad.code).toBe('SY_ERR_INVALID_TENSOR');
    expect(bad.status).toBe(400);
    expect((await failure(backend.call({ ...request, version: '9' }, callContext()))).code).toBe(
      'SY_ERR_MODEL_NOT_FOUND',
    );
    expect((await failure(backend.call({ op: 'chat', body: {} }, callContext()))).code).toBe(
      'SY_ERR_OPERATION_UNSUPPORTED',
    );
    expect((await failure(backend.stream())).code).toBe('SY_ERR_OPERATION_UNSUPPORTED');
  });

  it('runs nothing for a caller whose signal has already fired', async () => {
    const before = batches.length;
    const controller = new AbortController();
    controller.abort(new SwitchyardError('SY_ERR_CLIENT_CLOSED'));
    const err = await failure(backend.call(request, callContext({ signal: controller.signal })));
    expect(err.code).toBe('SY_ERR_CLIENT_CLOSED');
    await backend.call(request, callContext()); // a later call still runs, alone
    expect(batches.slice(before).map((b) => b.rows)).toEqual([1]);
  });

  it('drops a request whose deadline has passed with SY_ERR_DEADLINE_EXCEEDED before it runs', async () => {
    const before = batches.length;
    const err = await failure(
      backend.call(request, callContext({ deadlineAt: systemClock.now() - 1 })),
    );
    expect(err.code).toBe('SY_ERR_DEADLINE_EXCEEDED');
    expect(batches.length).toBe(before);
  });
});
