import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OnnxBackend, type OnnxBackendOptions } from '../../src/backends/onnx/onnx-backend.js';
import { WorkerPool } from '../../src/backends/onnx/worker-pool.js';
import type { JsonObject } from '../../src/contracts/json.js';
import { systemClock } from '../../src/core/clock.js';
import {
  mlpModel,
  pairExpected,
  pairModel,
  writeSynthetic,
} from '../../src/modelkit/synthetic-models.js';
import { callContext } from '../contract/backend.contract.js';
import { startTestGateway, type TestGateway } from '../support/gateway.js';
import { modelEvents, quietLogger } from '../support/onnx.js';

/**
 * The dynamic batcher in front of real ONNX Runtime sessions in worker threads (issue #3):
 * every caller gets exactly its own rows, whatever the sizes, priorities and arrival order; and
 * work whose deadline passed or whose client left is dropped before it runs.
 */

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'switchyard-onnx-batching-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('batching through the real ONNX backend', () => {
  let pool: WorkerPool;
  let backend: OnnxBackend;
  let opts: OnnxBackendOptions;
  const SCALE = 3;

  beforeAll(async () => {
    await writeSynthetic(join(dir, 'pair'), '1', pairModel(SCALE));
    pool = new WorkerPool(2, 1, quietLogger);
    opts = {
      name: 'pair-prop',
      store: join(dir, 'pair'),
      policy: { latest: 1 },
      defaultVersion: undefined,
      batch: { max: 8, delay_us: 500, preferred: [], queue: 100_000 },
      allowNonFinite: false,
      tier: 'edge',
      pool,
      clock: systemClock,
      log: quietLogger,
      priorityOf: (c) => (c === 'interactive' ? 0 : c === 'background' ? 3 : 1),
      watch: false,
    };
    backend = new OnnxBackend(opts);
    await backend.start();
    expect(backend.versions()).toEqual(['1']);
  });
  afterAll(async () => {
    await backend.close();
    await pool.close();
  });

  const caller = fc.record({
    rows: fc.integer({ min: 1, max: 12 }),
    trafficClass: fc.constantFrom('interactive', 'personalization', 'background'),
    /** Event-loop turns to wait before sending: varies the arrival order. */
    wait: fc.integer({ min: 0, max: 4 }),
    offset: fc.integer({ min: -1000, max: 1000 }),
  });

  it('gives every concurrent caller exactly its own rows back, whatever the sizes, classes and arrival order', async () => {
    const rec = modelEvents('pair-prop');
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          max: fc.integer({ min: 1, max: 16 }),
          delayUs: fc.integer({ min: 0, max: 3000 }),
          preferred: fc.subarray([2, 4, 8, 16]),
          callers: fc.array(caller, { minLength: 1, maxLength: 24 }),
        }),
        async ({ max, delayUs, preferred, callers }) => {
          backend.reconfigure({
            ...opts,
            batch: { max, delay_us: delayUs, preferred, queue: 100_000 },
          });
          const results = await Promise.all(
            callers.map(async (c, id) => {
              // Row r of caller id is unique to that caller and row.
              const a = Array.from({ length: c.rows * 4 }, (_, i) => id * 1000 + c.offset + i);
              const b = Array.from({ length: c.rows * 4 }, (_, i) => (i % 4) - id / 8);
              for (let t = 0; t < c.wait; t++) await new Promise((r) => setImmediate(r));
              const body: JsonObject = {
                inputs: [
                  { name: 'a', datatype: 'FP32', shape: [c.rows, 4], data: a },
                  { name: 'b', datatype: 'FP32', shape: [c.rows, 4], data: b },
                ],
              };
              const res = await backend.call(
                { op: 'infer', body },
                callContext({ trafficClass: c.trafficClass }),
              );
              return { a, b, rows: c.rows, outputs: res.json['outputs'] as JsonObject[] };
            }),
          );
          for (const { a, b, rows, outputs } of results) {
            const [mixed, dot] = outputs as { shape: number[]; data: number[] }[];
            expect(mixed!.shape).toEqual([rows, 4]);
            expect(dot!.shape).toEqual([rows, 1]);
            for (let r = 0; r < rows; r++) {
              const want = pairExpected(
                a.slice(r * 4, r * 4 + 4),
                b.slice(r * 4, r * 4 + 4),
                SCALE,
              );
              expect(mixed!.data.slice(r * 4, r * 4 + 4)).toEqual(want.mixed);
              expect(dot!.data[r]).toBeCloseTo(want.dot, 1);
            }
          }
        },
      ),
      { seed: 0x5eed, numRuns: 40 },
    );
    rec.stop();
    // The property is about batching, so it must actually have batched callers together.
    expect(rec.batches.some((b) => b.requests > 1)).toBe(true);
    expect(rec.batches.reduce((n, b) => Math.max(n, b.rows), 0)).toBeGreaterThan(1);
    expect(rec.drops).toEqual([]);
  });
});

describe('deadlines and cancellation through the gateway', () => {
  let gw: TestGateway;
  const BLOCKER_ROWS = 6000;

  beforeAll(async () => {
    // Slow on purpose: 32 shared 512×512 layers per row, so a big batch keeps the one worker busy.
    await writeSynthetic(
      join(dir, 'slow'),
      '1',
      mlpModel({ inputs: 8, hidden: [512], outputs: 4, seed: 3, head: 'softmax', repeatLast: 32 }),
    );
    gw = await startTestGateway({
      config: {
        onnx: { workers: 1 },
        models: {
          slow: {
            backend: 'onnx',
            store: join(dir, 'slow'),
            watch: false,
            batch: { max: 64, delay_us: 0, queue: 100_000 },
          },
        },
      },
    });
  });
  afterAll(async () => {
    await gw?.close();
  });

  const infer = (rows: number, headers: Record<string, string> = {}, signal?: AbortSignal) =>
    request(`${gw.url}/v2/models/slow/infer`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${gw.key}`,
        'content-type': 'application/json',
        ...headers,
      },
      body: JSON.stringify({
        inputs: [
          {
            name: 'features',
            datatype: 'FP32',
            shape: [rows, 8],
            data: Array.from({ length: rows * 8 }, (_, i) => (i % 7) / 7),
          },
        ],
      }),
      ...(signal === undefined ? {} : { signal }),
    });

  it('drops a request whose deadline passes in the queue, and one whose client leaves, before the model runs them', async () => {
    const rec = modelEvents('slow');
    try {
      // A big batch occupies the only worker; it is dispatched the moment it is queued.
      const blocker = infer(BLOCKER_ROWS);
      await expect.poll(() => rec.depths.includes(BLOCKER_ROWS), { timeout: 10_000 }).toBe(true);

      const late = await infer(3, { 'x-switchyard-timeout-ms': '50' });
      expect(late.statusCode).toBe(504);
      expect(await late.body.json()).toMatchObject({ code: 'SY_ERR_DEADLINE_EXCEEDED' });

      const controller = new AbortController();
      const leaving = infer(5, {}, controller.signal).catch((err: unknown) => err);
      await expect.poll(() => rec.depths.at(-1), { timeout: 10_000 }).toBe(5);
      controller.abort();
      expect(await leaving).toBeInstanceOf(Error);
      await expect
        .poll(() => rec.drops.map((d) => d.reason).sort(), { timeout: 10_000 })
        .toEqual(['cancelled', 'deadline']);

      expect((await blocker).statusCode).toBe(200);
      // The model still runs work that is not dropped ...
      const after = await infer(2);
      expect(after.statusCode).toBe(200);
      await after.body.json();
      // ... and never ran the dropped rows: its batches are the blocker's and the last request's.
      expect(rec.batches.map((b) => b.rows)).toEqual([BLOCKER_ROWS, 2]);
      expect(rec.depths.at(-1)).toBe(0);
      const metrics = await (await request(`${gw.url}/metrics`)).body.text();
      expect(metrics).toMatch(
        /switchyard_model_dropped_total\{model="slow",version="1",reason="deadline"\} 1/,
      );
      expect(metrics).toMatch(
        /switchyard_model_dropped_total\{model="slow",version="1",reason="cancelled"\} 1/,
      );
    } finally {
      rec.stop();
    }
  }, 60_000);

  it('refuses work when the queue is full, with a 503 the client may retry', async () => {
    await gw.close();
    gw = await startTestGateway({
      config: {
        onnx: { workers: 1 },
        models: {
          slow: {
            backend: 'onnx',
            store: join(dir, 'slow'),
            watch: false,
            batch: { max: 64, delay_us: 0, queue: 2000 },
          },
        },
      },
    });
    const rec = modelEvents('slow');
    try {
      const blocker = infer(1500);
      await expect.poll(() => rec.depths.length > 0, { timeout: 10_000 }).toBe(true);
      const queued = infer(8);
      await expect.poll(() => rec.depths.at(-1), { timeout: 10_000 }).toBe(8);
      // 8 rows wait; 1993 more would make 2001 > 2000.
      const refused = await infer(1993);
      expect(refused.statusCode).toBe(503);
      expect(refused.headers['retry-after']).toBeDefined();
      expect(await refused.body.json()).toMatchObject({ code: 'SY_ERR_QUEUE_FULL' });
      expect((await blocker).statusCode).toBe(200);
      expect((await queued).statusCode).toBe(200);
      expect(rec.drops.map((d) => d.reason)).toEqual(['queue_full']);
    } finally {
      rec.stop();
    }
  }, 60_000);
});
