import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { systemClock } from '../../core/clock.js';
import { syError, SwitchyardError } from '../../core/errors.js';
import { DynamicBatcher, type BatchStats, type BatcherSettings, type RunBatch } from './batcher.js';
import type { Tensor } from './tensors.js';

const WIDTH = 3;

/** A real row-wise computation: each output row is the sum of its input row, times 10. */
function sumRows(delayMs = 0): { run: RunBatch; batches: number[] } {
  const batches: number[] = [];
  const run: RunBatch = async (feeds) => {
    const x = feeds.get('x')!;
    const rows = x.dims[0]!;
    batches.push(rows);
    if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
    const out = new Float32Array(rows);
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let c = 0; c < WIDTH; c++) s += (x.data as Float32Array)[r * WIDTH + c]!;
      out[r] = s * 10;
    }
    return {
      outputs: new Map([['y', { type: 'float32', dims: [rows, 1], data: out } satisfies Tensor]]),
      ms: delayMs,
    };
  };
  return { run, batches };
}

function rowsOf(values: number[]): Map<string, Tensor> {
  const data = new Float32Array(values.length * WIDTH);
  values.forEach((v, r) => data.fill(v, r * WIDTH, (r + 1) * WIDTH));
  return new Map([['x', { type: 'float32', dims: [values.length, WIDTH], data } satisfies Tensor]]);
}

const SETTINGS: BatcherSettings = { max: 16, delay_us: 2_000, preferred: [], queue: 1_000 };
const live = (): AbortSignal => new AbortController().signal;
const far = (): number => systemClock.now() + 60_000;

describe('dynamic batcher', () => {
  it('gives every caller exactly its own rows back, whatever the sizes and arrival order', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({ rows: fc.integer({ min: 1, max: 9 }), wait: fc.integer({ min: 0, max: 3 }) }),
          { minLength: 1, maxLength: 25 },
        ),
        fc.integer({ min: 1, max: 3 }),
        async (requests, inFlight) => {
          const { run } = sumRows(1);
          const batcher = new DynamicBatcher(
            { ...SETTINGS, max: 8, delay_us: 500 },
            inFlight,
            run,
            systemClock,
          );
          let next = 0;
          const pending = requests.map(async (req, i) => {
            await new Promise((r) => setTimeout(r, req.wait));
            const values = Array.from({ length: req.rows }, () => ++next + i * 1000);
            const out = await batcher.submit({
              feeds: rowsOf(values),
              rows: req.rows,
              priority: i % 3,
              signal: live(),
              deadlineAt: far(),
            });
            return { values, got: Array.from(out.get('y')!.data as Float32Array) };
          });
          for (const { values, got } of await Promise.all(pending)) {
            expect(got).toEqual(values.map((v) => Math.fround(v * WIDTH * 10)));
          }
        },
      ),
      { seed: 20261122, numRuns: 60 },
    );
  });

  it('dispatches a full batch at once and waits out the delay for a partial one', async () => {
    const { run, batches } = sumRows();
    const batcher = new DynamicBatcher(
      { ...SETTINGS, max: 4, delay_us: 50_000 },
      1,
      run,
      systemClock,
    );
    const t0 = performance.now();
    await Promise.all(
      [1, 2, 3, 4].map((v) =>
        batcher.submit({
          feeds: rowsOf([v]),
          rows: 1,
          priority: 0,
          signal: live(),
          deadlineAt: far(),
        }),
      ),
    );
    expect(performance.now() - t0).toBeLessThan(40);
    expect(batches).toEqual([4]);
    const t1 = performance.now();
    await batcher.submit({
      feeds: rowsOf([5]),
      rows: 1,
      priority: 0,
      signal: live(),
      deadlineAt: far(),
    });
    expect(performance.now() - t1).toBeGreaterThanOrEqual(45);
    expect(batches).toEqual([4, 1]);
  });

  it('dispatches a preferred batch size without waiting out the delay', async () => {
    const { run, batches } = sumRows();
    const batcher = new DynamicBatcher(
      { ...SETTINGS, max: 16, delay_us: 200_000, preferred: [2] },
      1,
      run,
      systemClock,
    );
    const t0 = performance.now();
    await Promise.all(
      [1, 2].map((v) =>
        batcher.submit({
          feeds: rowsOf([v]),
          rows: 1,
          priority: 0,
          signal: live(),
          deadlineAt: far(),
        }),
      ),
    );
    expect(performance.now() - t0).toBeLessThan(100);
    expect(batches).toEqual([2]);
  });

  it('runs higher-priority requests first when the model is busy', async () => {
    const { run } = sumRows(20);
    const order: number[] = [];
    const batcher = new DynamicBatcher({ ...SETTINGS, max: 1, delay_us: 0 }, 1, run, systemClock);
    const submit = (v: number, priority: number): Promise<void> =>
      batcher
        .submit({ feeds: rowsOf([v]), rows: 1, priority, signal: live(), deadlineAt: far() })
        .then(() => {
          order.push(v);
        });
    const first = submit(0, 3); // occupies the model
    await new Promise((r) => setTimeout(r, 2));
    await Promise.all([first, submit(1, 3), submit(2, 3), submit(3, 0), submit(4, 1)]);
    expect(order).toEqual([0, 3, 4, 1, 2]);
  });

  it('drops a request whose deadline passes while it waits, before it runs', async () => {
    const { run, batches } = sumRows(40);
    const dropped: string[] = [];
    const batcher = new DynamicBatcher({ ...SETTINGS, max: 1, delay_us: 0 }, 1, run, systemClock, {
      onExpired: (r) => dropped.push(r),
    });
    const busy = batcher.submit({
      feeds: rowsOf([1]),
      rows: 1,
      priority: 0,
      signal: live(),
      deadlineAt: far(),
    });
    const late = batcher.submit({
      feeds: rowsOf([2]),
      rows: 1,
      priority: 0,
      signal: live(),
      deadlineAt: systemClock.now() + 10,
    });
    await expect(late).rejects.toMatchObject({ code: 'SY_ERR_DEADLINE_EXCEEDED' });
    await busy;
    expect(batches).toEqual([1]); // the expired request never ran
    expect(dropped).toEqual(['deadline']);
  });

  it('drops a queued request whose client went away, before it runs', async () => {
    const { run, batches } = sumRows(30);
    const batcher = new DynamicBatcher({ ...SETTINGS, max: 1, delay_us: 0 }, 1, run, systemClock);
    const busy = batcher.submit({
      feeds: rowsOf([1]),
      rows: 1,
      priority: 0,
      signal: live(),
      deadlineAt: far(),
    });
    const client = new AbortController();
    const gone = batcher.submit({
      feeds: rowsOf([2]),
      rows: 1,
      priority: 0,
      signal: client.signal,
      deadlineAt: far(),
    });
    client.abort(syError('SY_ERR_CLIENT_CLOSED'));
    await expect(gone).rejects.toMatchObject({ code: 'SY_ERR_CLIENT_CLOSED' });
    await busy;
    await new Promise((r) => setTimeout(r, 40));
    expect(batches).toEqual([1]);
    expect(batcher.depth).toBe(0);
  });

  it('refuses work beyond the bounded queue with SY_ERR_QUEUE_FULL', async () => {
    const { run } = sumRows(30);
    const batcher = new DynamicBatcher(
      { ...SETTINGS, max: 1, delay_us: 0, queue: 3 },
      1,
      run,
      systemClock,
    );
    const accepted = [1, 2, 3, 4].map((v) =>
      batcher.submit({
        feeds: rowsOf([v]),
        rows: 1,
        priority: 0,
        signal: live(),
        deadlineAt: far(),
      }),
    );
    const refused = await batcher
      .submit({ feeds: rowsOf([5]), rows: 1, priority: 0, signal: live(), deadlineAt: far() })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(SwitchyardError);
    expect((refused as SwitchyardError).code).toBe('SY_ERR_QUEUE_FULL');
    expect((refused as SwitchyardError).status).toBe(503);
    await Promise.all(accepted);
  });

  it('keeps requests with different row shapes in different batches', async () => {
    const seen: string[] = [];
    const run: RunBatch = (feeds) => {
      const x = feeds.get('x')!;
      seen.push(x.dims.join('x'));
      return Promise.resolve({ outputs: new Map([['y', x]]), ms: 0 });
    };
    const batcher = new DynamicBatcher(
      { ...SETTINGS, max: 8, delay_us: 5_000 },
      1,
      run,
      systemClock,
    );
    const tensor = (w: number): Map<string, Tensor> =>
      new Map([['x', { type: 'float32', dims: [1, w], data: new Float32Array(w) }]]);
    await Promise.all(
      [3, 5, 3, 5].map((w) =>
        batcher.submit({
          feeds: tensor(w),
          rows: 1,
          priority: 0,
          signal: live(),
          deadlineAt: far(),
        }),
      ),
    );
    expect(seen.sort()).toEqual(['2x3', '2x5']);
  });

  it('reports each batch: rows, requests, queue delays and inference time', async () => {
    const { run } = sumRows(5);
    const stats: BatchStats[] = [];
    const batcher = new DynamicBatcher(
      { ...SETTINGS, max: 3, delay_us: 1_000 },
      1,
      run,
      systemClock,
      { onBatch: (s) => stats.push(s) },
    );
    await Promise.all(
      [[1], [2, 3]].map((v) =>
        batcher.submit({
          feeds: rowsOf(v),
          rows: v.length,
          priority: 0,
          signal: live(),
          deadlineAt: far(),
        }),
      ),
    );
    expect(stats).toHaveLength(1);
    expect(stats[0]).toMatchObject({ rows: 3, requests: 2, inferMs: 5 });
    expect(stats[0]!.queueDelaysMs).toHaveLength(2);
  });

  it('finishes queued work before a drain resolves, and refuses new work once closed', async () => {
    const { run, batches } = sumRows(10);
    const batcher = new DynamicBatcher({ ...SETTINGS, max: 1, delay_us: 0 }, 1, run, systemClock);
    const work = [1, 2, 3].map((v) =>
      batcher.submit({
        feeds: rowsOf([v]),
        rows: 1,
        priority: 0,
        signal: live(),
        deadlineAt: far(),
      }),
    );
    batcher.close();
    await batcher.drain();
    expect(batches).toEqual([1, 1, 1]);
    await Promise.all(work);
    await expect(
      batcher.submit({
        feeds: rowsOf([4]),
        rows: 1,
        priority: 0,
        signal: live(),
        deadlineAt: far(),
      }),
    ).rejects.toMatchObject({
      code: 'SY_ERR_MODEL_NOT_READY',
    });
  });
});
