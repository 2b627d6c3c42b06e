import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OnnxBackend, type OnnxBackendOptions } from '../../src/backends/onnx/onnx-backend.js';
import { WorkerPool } from '../../src/backends/onnx/worker-pool.js';
import type { JsonObject } from '../../src/contracts/json.js';
import { systemClock } from '../../src/core/clock.js';
import { mlpModel, pairModel, writeSynthetic } from '../../src/modelkit/synthetic-models.js';
import { callContext } from '../contract/backend.contract.js';
import { modelEvents, quietLogger } from '../support/onnx.js';

/**
 * The staged next batch (src/backends/onnx/stage.ts) with real ONNX Runtime workers: a worker
 * starts the batch staged behind its running one by itself; an idle worker takes a stage when
 * the batching delay is up; staged requests survive the worker watching them dying.
 */

const INPUTS = 8;
/** Enough rows of the slow model to keep the one worker busy while the test stages work. */
const BLOCKER_ROWS = 300;

let dir: string;
let pool: WorkerPool;
let backend: OnnxBackend;
let opts: OnnxBackendOptions;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'switchyard-onnx-staging-'));
  // 32 shared 1024×1024 layers per row: milliseconds even for one row (staging is for models
  // whose batches take that long), and a while for a big batch.
  await writeSynthetic(
    join(dir, 'slow'),
    '1',
    mlpModel({
      inputs: INPUTS,
      hidden: [1024],
      outputs: 4,
      seed: 5,
      head: 'softmax',
      repeatLast: 32,
    }),
  );
  pool = new WorkerPool(1, 1, quietLogger);
  opts = {
    name: 'staged',
    store: join(dir, 'slow'),
    policy: { latest: 1 },
    defaultVersion: undefined,
    batch: { max: 64, delay_us: 0, preferred: [], queue: 100_000 },
    allowNonFinite: false,
    tier: 'edge',
    pool,
    clock: systemClock,
    log: quietLogger,
    priorityOf: () => 1,
    watch: false,
  };
  backend = new OnnxBackend(opts);
  await backend.start();
});
afterAll(async () => {
  await backend?.close();
  await pool?.close();
  await rm(dir, { recursive: true, force: true });
});

const recorder = () => modelEvents('staged');

/** Row `seed` of the inputs: distinct per caller. */
const rowOf = (seed: number): number[] =>
  Array.from({ length: INPUTS }, (_, i) => Math.sin(seed * 7 + i) / 2);

async function infer(rows: readonly number[][]): Promise<number[][]> {
  const res = await backend.call(
    {
      op: 'infer',
      body: {
        inputs: [
          { name: 'features', datatype: 'FP32', shape: [rows.length, INPUTS], data: rows.flat() },
        ],
      },
    },
    callContext({}, 60_000),
  );
  const [out] = res.json['outputs'] as JsonObject[];
  const data = out!['data'] as number[];
  return rows.map((_, r) => data.slice(r * 4, r * 4 + 4));
}

const blockerRows = (): number[][] => Array.from({ length: BLOCKER_ROWS }, (_, r) => rowOf(r));

function expectClose(got: number[][], want: number[][]): void {
  expect(got.length).toBe(want.length);
  got.forEach((row, r) => row.forEach((v, i) => expect(v).toBeCloseTo(want[r]![i]!, 5)));
}

describe('the staged next batch, one worker', () => {
  it('is started by the worker the moment its running batch ends, and every caller gets its own rows', async () => {
    const callers = [11, 12, 13, 14, 15, 16];
    // Each caller's answer when it runs alone.
    const alone: number[][][] = [];
    for (const c of callers) alone.push(await infer([rowOf(c)]));

    const rec = recorder();
    try {
      const blocker = infer(blockerRows());
      await expect.poll(() => rec.depths.includes(BLOCKER_ROWS), { timeout: 10_000 }).toBe(true);
      await expect.poll(() => rec.depths.at(-1), { timeout: 10_000 }).toBe(0);
      // The worker is busy with the blocker: these wait, staged, as one batch.
      const staged = callers.map((c) => infer([rowOf(c)]));
      await expect.poll(() => rec.depths.at(-1), { timeout: 10_000 }).toBe(callers.length);
      const answers = await Promise.all(staged);
      await blocker;

      answers.forEach((got, i) => expectClose(got, alone[i]!));
      expect(rec.batches.map((b) => [b.rows, b.requests, b.startedBy])).toEqual([
        [BLOCKER_ROWS, 1, 'gateway'],
        [callers.length, callers.length, 'worker'],
      ]);
      // It started when the blocker's inference ended, not when this thread heard of it.
      const [first, second] = rec.batches;
      expect(second!.startedAt).toBeGreaterThanOrEqual(first!.startedAt + first!.inferMs - 1);
      expect(second!.startedAt).toBeLessThanOrEqual(first!.finishedAt);
      expect(rec.depths.at(-1)).toBe(0);
    } finally {
      rec.stop();
    }
  }, 60_000);

  it('does not stage work past a request too big for a stage: that one goes first, dispatched by the gateway', async () => {
    const rec = recorder();
    try {
      const blocker = infer(blockerRows());
      await expect.poll(() => rec.depths.includes(BLOCKER_ROWS), { timeout: 10_000 }).toBe(true);
      await expect.poll(() => rec.depths.at(-1), { timeout: 10_000 }).toBe(0);
      // 80 rows > max 64: it can only run alone. The small ones behind it must not overtake it
      // through stages the worker keeps taking.
      const big = infer(Array.from({ length: 80 }, (_, r) => rowOf(100 + r)));
      const small = [51, 52, 53].map((c) => infer([rowOf(c)]));
      await Promise.all([blocker, big, ...small]);
      expect(rec.batches.map((b) => b.rows)).toEqual([BLOCKER_ROWS, 80, 3]);
      // The big one could only be dispatched here. (The small ones are usually staged behind it
      // and taken by the worker when it ends; on a busy machine they may arrive after it ended.)
      expect(rec.batches[1]!.startedBy).toBe('gateway');
    } finally {
      rec.stop();
    }
  }, 60_000);

  it('an idle worker takes a stage once its oldest request has waited the delay, with the company it found', async () => {
    backend.reconfigure({
      ...opts,
      batch: { max: 64, delay_us: 40_000, preferred: [], queue: 100_000 },
    });
    const rec = recorder();
    try {
      const callers = [21, 22, 23, 24, 25];
      const answers = await Promise.all(callers.map((c) => infer([rowOf(c)])));
      expect(answers).toHaveLength(callers.length);
      expect(rec.batches).toHaveLength(1);
      const [batch] = rec.batches;
      expect(batch!.requests).toBe(callers.length);
      // Nobody went before the delay; the worker (or the gateway's fallback) went soon after it.
      // The oldest waited the delay (the others joined it up to a few ms later).
      expect(Math.max(...batch!.queueDelaysMs)).toBeGreaterThanOrEqual(39);
      expect(Math.min(...batch!.queueDelaysMs)).toBeGreaterThanOrEqual(20);
      expect(Math.max(...batch!.queueDelaysMs)).toBeLessThan(2_000);
    } finally {
      rec.stop();
      backend.reconfigure(opts);
    }
  }, 30_000);

  it('a stage that reaches a preferred size goes at once, without waiting out the delay', async () => {
    backend.reconfigure({
      ...opts,
      batch: { max: 64, delay_us: 30_000_000, preferred: [4], queue: 100_000 },
    });
    const rec = recorder();
    try {
      const started = systemClock.now();
      await Promise.all([31, 32, 33, 34].map((c) => infer([rowOf(c)])));
      expect(systemClock.now() - started).toBeLessThan(10_000);
      expect(rec.batches.map((b) => b.rows)).toEqual([4]);
    } finally {
      rec.stop();
      backend.reconfigure(opts);
    }
  }, 30_000);

  it('runs staged requests on a new worker when the one watching their stage dies before taking it', async () => {
    const callers = [41, 42, 43];
    const alone: number[][][] = [];
    for (const c of callers) alone.push(await infer([rowOf(c)]));
    backend.reconfigure({
      ...opts,
      batch: { max: 64, delay_us: 300_000, preferred: [], queue: 100_000 },
    });
    const rec = recorder();
    try {
      const staged = callers.map((c) => infer([rowOf(c)]));
      await expect.poll(() => rec.depths.at(-1), { timeout: 10_000 }).toBe(callers.length);
      // The idle worker waits for the delay; it dies first (idle: no inference is cut short).
      const slots = (pool as unknown as { slots: { worker: Worker }[] }).slots;
      await slots[0]!.worker.terminate();

      const answers = await Promise.all(staged);
      answers.forEach((got, i) => expectClose(got, alone[i]!));
      // Nobody else could take the stage: the gateway's own timer dispatched it to the new worker.
      expect(rec.batches.map((b) => [b.rows, b.startedBy])).toEqual([[callers.length, 'gateway']]);
      expect(Math.min(...rec.batches[0]!.queueDelaysMs)).toBeGreaterThanOrEqual(299);
    } finally {
      rec.stop();
      backend.reconfigure(opts);
    }
  }, 60_000);
});

describe('a model whose batches take well under a millisecond', () => {
  it('is not staged: its batches are dispatched by the gateway, as one hop costs less than the cross-thread traffic', async () => {
    await writeSynthetic(join(dir, 'fast'), '1', pairModel(2));
    const fast = new OnnxBackend({
      ...opts,
      name: 'fast',
      store: join(dir, 'fast'),
      batch: { max: 16, delay_us: 500, preferred: [], queue: 100_000 },
    });
    await fast.start();
    const { batches, stop } = modelEvents('fast');
    try {
      for (let round = 0; round < 5; round++)
        await Promise.all(
          Array.from({ length: 24 }, (_, i) =>
            fast.call(
              {
                op: 'infer',
                body: {
                  inputs: [
                    { name: 'a', datatype: 'FP32', shape: [1, 4], data: [i, 1, 2, 3] },
                    { name: 'b', datatype: 'FP32', shape: [1, 4], data: [1, 1, 1, round] },
                  ],
                },
              },
              callContext({}),
            ),
          ),
        );
      expect(batches.some((b) => b.requests > 1)).toBe(true);
      const ms = batches.map((b) => b.inferMs).sort((x, y) => x - y);
      expect(ms[Math.floor(ms.length / 2)]).toBeLessThan(1);
      // A run slowed by a busy machine can lift the average over the line for a few batches.
      const byGateway = batches.filter((b) => b.startedBy === 'gateway').length;
      expect(byGateway / batches.length).toBeGreaterThanOrEqual(0.9);
    } finally {
      stop();
      await fast.close();
    }
  }, 30_000);
});
