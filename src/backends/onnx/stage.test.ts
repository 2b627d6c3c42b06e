import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import {
  CLOSED,
  claimStage,
  stageDueIn,
  stageLayout,
  StageWriter,
  type StageLayout,
  type StagePolicy,
  type TakenStage,
} from './stage.js';
import type { Tensor } from './tensors.js';

const NOW = 1000;
const FAR = NOW + 60_000;
const POLICY: StagePolicy = { delayMs: 20, preferred: [] };

/**
 * Rows that say which request and row they came from, so a row copied to the wrong place or
 * from the wrong entry shows up: row `k` of x is [10k, 10k+1, 10k+2], of ids [100k, 100k+1].
 */
function feedsFor(ids: readonly number[]): Map<string, Tensor> {
  const x = new Float32Array(ids.length * 3);
  const big = new BigInt64Array(ids.length * 2);
  ids.forEach((k, r) => {
    x.set([10 * k, 10 * k + 1, 10 * k + 2], r * 3);
    big.set([BigInt(100 * k), BigInt(100 * k + 1)], r * 2);
  });
  return new Map<string, Tensor>([
    ['x', { type: 'float32', dims: [ids.length, 3], data: x }],
    ['ids', { type: 'int64', dims: [ids.length, 2], data: big }],
  ]);
}

function layoutFor(capacity: number): StageLayout {
  const layout = stageLayout(feedsFor([0]), capacity);
  if (layout === undefined) throw new Error('a numeric layout must fit in shared memory');
  return layout;
}

function append(writer: StageWriter, ids: readonly number[], deadline = FAR, enqueued = NOW) {
  return writer.tryAppend(feedsFor(ids), ids.length, deadline, enqueued);
}

function expectRows(taken: TakenStage, ids: readonly number[]): void {
  const want = feedsFor(ids);
  expect(taken.rows).toBe(ids.length);
  expect(taken.feeds.map((f) => f.name)).toEqual(['x', 'ids']);
  for (const feed of taken.feeds) {
    const expected = want.get(feed.name)!;
    expect(feed.type).toBe(expected.type);
    expect(feed.dims).toEqual(expected.dims);
    expect(feed.data.constructor).toBe(expected.data.constructor);
    expect(Array.from(feed.data as Float32Array)).toEqual(
      Array.from(expected.data as Float32Array),
    );
    // The worker hands these to ORT and may transfer them: shared memory must not leak out.
    const data = feed.data as Float32Array;
    expect(data.buffer).not.toBeInstanceOf(SharedArrayBuffer);
    expect(data.buffer).toBeInstanceOf(ArrayBuffer);
  }
}

describe('stageLayout', () => {
  it('refuses inputs that cannot live in shared memory or have no batch dimension', () => {
    const num: Tensor = { type: 'float32', dims: [1, 2], data: new Float32Array(2) };
    const str: Tensor = { type: 'string', dims: [1], data: ['a'] };
    const bool: Tensor = { type: 'bool', dims: [1], data: new Uint8Array(1) };
    const scalar: Tensor = { type: 'float32', dims: [], data: new Float32Array(1) };
    expect(stageLayout(new Map([['s', str]]), 4)).toBeUndefined();
    expect(stageLayout(new Map([['b', bool]]), 4)).toBeUndefined();
    expect(stageLayout(new Map([['z', scalar]]), 4)).toBeUndefined();
    // One unfit input spoils the whole stage, wherever it comes.
    expect(
      stageLayout(
        new Map([
          ['n', num],
          ['s', str],
        ]),
        4,
      ),
    ).toBeUndefined();
    expect(
      stageLayout(
        new Map([
          ['z', scalar],
          ['n', num],
        ]),
        4,
      ),
    ).toBeUndefined();
    expect(stageLayout(new Map(), 4)).toBeUndefined();
  });

  it('gives each input its own 8-byte aligned region past the entries, all within bytes', () => {
    // An odd capacity and 1- and 2-byte types leave regions ending off an 8-byte boundary.
    const capacity = 7;
    const like = new Map<string, Tensor>([
      ['u8', { type: 'uint8', dims: [1, 5], data: new Uint8Array(5) }],
      ['x', { type: 'float32', dims: [1, 3], data: new Float32Array(3) }],
      ['i16', { type: 'int16', dims: [1, 2, 3], data: new Int16Array(6) }],
      ['ids', { type: 'int64', dims: [1, 2], data: new BigInt64Array(2) }],
      ['f64', { type: 'float64', dims: [1], data: new Float64Array(1) }],
    ]);
    const bytesPer: Record<string, number> = { u8: 1, x: 4, i16: 2, ids: 8, f64: 8 };
    const layout = stageLayout(like, capacity)!;
    expect(layout).toBeDefined();
    expect(layout.capacity).toBe(capacity);
    expect(layout.inputs.map((i) => [i.name, i.type, i.rowDims, i.rowElements])).toEqual([
      ['u8', 'uint8', [5], 5],
      ['x', 'float32', [3], 3],
      ['i16', 'int16', [2, 3], 6],
      ['ids', 'int64', [2], 2],
      ['f64', 'float64', [], 1],
    ]);
    // Header (16 bytes) and one 16-byte entry per row come first.
    let end = 16 + capacity * 16;
    for (const input of layout.inputs) {
      expect(input.byteOffset % 8).toBe(0);
      expect(input.byteOffset).toBeGreaterThanOrEqual(end);
      end = input.byteOffset + capacity * input.rowElements * bytesPer[input.name]!;
    }
    expect(layout.bytes).toBeGreaterThanOrEqual(end);
  });
});

describe('appending and claiming', () => {
  it('claims exactly the appended rows, in order, as plain copies', () => {
    const writer = new StageWriter(layoutFor(8), POLICY);
    expect(append(writer, [1, 2])).toBe(0);
    expect(append(writer, [3])).toBe(1);
    expect(append(writer, [4, 5, 6])).toBe(2);
    expect(writer.rows).toBe(6);
    const taken = claimStage(writer.sab, writer.layout, 7, NOW)!;
    expect(taken).toBeDefined();
    expect(taken.included).toEqual([0, 1, 2]);
    expectRows(taken, [1, 2, 3, 4, 5, 6]);
    expect(writer.closed).toBe(true);
    expect(writer.rows).toBe(6);
  });

  it('keeps every input intact when the stage is filled to capacity', () => {
    // Odd capacity: a region overlapping the next one would corrupt the last rows.
    const writer = new StageWriter(layoutFor(5), POLICY);
    expect(append(writer, [1, 2])).toBe(0);
    expect(append(writer, [3, 4, 5])).toBe(1);
    const taken = claimStage(writer.sab, writer.layout, 1, NOW)!;
    expect(taken.included).toEqual([0, 1]);
    expectRows(taken, [1, 2, 3, 4, 5]);
  });

  it('the claimed copies do not change when the stage memory does', () => {
    const writer = new StageWriter(layoutFor(4), POLICY);
    append(writer, [1, 2]);
    const taken = claimStage(writer.sab, writer.layout, 1, NOW)!;
    new Uint8Array(writer.sab).fill(0xff);
    expectRows(taken, [1, 2]);
  });

  it('leaves out dropped and expired requests and joins the rest', () => {
    const writer = new StageWriter(layoutFor(16), POLICY);
    expect(append(writer, [1, 2])).toBe(0);
    expect(append(writer, [3])).toBe(1); // dropped
    expect(append(writer, [4, 5, 6])).toBe(2);
    expect(append(writer, [7], NOW)).toBe(3); // deadline exactly now: expired
    expect(append(writer, [8, 9], NOW - 1)).toBe(4); // past
    expect(append(writer, [10], NOW + 0.5)).toBe(5); // just in time
    expect(append(writer, [11, 12])).toBe(6); // dropped
    writer.drop(1);
    writer.drop(6);
    const taken = claimStage(writer.sab, writer.layout, 3, NOW)!;
    expect(taken.included).toEqual([0, 2, 5]);
    expectRows(taken, [1, 2, 4, 5, 6, 10]);
  });

  it('closes the stage and takes nothing when every request is left out', () => {
    const writer = new StageWriter(layoutFor(8), POLICY);
    append(writer, [1, 2]);
    append(writer, [3], NOW - 5);
    writer.drop(0);
    const taken = claimStage(writer.sab, writer.layout, 4, NOW)!;
    expect(taken).toBeDefined();
    expect(taken.included).toEqual([]);
    expect(taken.rows).toBe(0);
    expect(taken.feeds.map((f) => [f.name, f.dims, f.data.length])).toEqual([
      ['x', [0, 3], 0],
      ['ids', [0, 2], 0],
    ]);
    // The worker owns it now, even with nothing to run: the main thread must not dispatch it too.
    expect(writer.closed).toBe(true);
    expect(writer.close()).toBe(false);
    expect(append(writer, [4])).toBe(-1);
  });
});

describe('closing', () => {
  it('after a claim the main thread can neither close nor append', () => {
    const writer = new StageWriter(layoutFor(8), POLICY);
    expect(writer.claimer).toBe(0);
    append(writer, [1]);
    expect(claimStage(writer.sab, writer.layout, 42, NOW)).toBeDefined();
    expect(writer.claimer).toBe(42);
    expect(writer.closed).toBe(true);
    expect(writer.close()).toBe(false);
    expect(append(writer, [2])).toBe(-1);
    expect(writer.rows).toBe(1);
    // Nor can a second worker take it again.
    expect(claimStage(writer.sab, writer.layout, 43, NOW)).toBeUndefined();
    expect(writer.claimer).toBe(42);
  });

  it('after the main thread closes it no worker can claim it', () => {
    const writer = new StageWriter(layoutFor(8), POLICY);
    append(writer, [1, 2]);
    expect(writer.close()).toBe(true);
    expect(writer.closed).toBe(true);
    expect(writer.rows).toBe(2);
    expect(claimStage(writer.sab, writer.layout, 5, NOW)).toBeUndefined();
    expect(writer.claimer).toBe(0);
    expect(writer.close()).toBe(false);
    expect(append(writer, [3])).toBe(-1);
  });

  it('a worker finding the stage empty leaves it open for the next append', () => {
    const writer = new StageWriter(layoutFor(8), POLICY);
    expect(claimStage(writer.sab, writer.layout, 5, NOW)).toBeUndefined();
    expect(writer.closed).toBe(false);
    expect(writer.claimer).toBe(0);
    expect(append(writer, [1])).toBe(0);
    const taken = claimStage(writer.sab, writer.layout, 5, NOW)!;
    expect(taken.included).toEqual([0]);
    expectRows(taken, [1]);
  });

  it('the state word keeps the row count below the CLOSED bit', () => {
    const writer = new StageWriter(layoutFor(8), POLICY);
    append(writer, [1, 2, 3]);
    writer.close();
    expect(new Int32Array(writer.sab, 0, 4)[0]).toBe(3 | CLOSED);
  });
});

describe('capacity and matching', () => {
  it('refuses an append that would overflow and leaves the stage as it was', () => {
    const writer = new StageWriter(layoutFor(4), POLICY);
    expect(append(writer, [1, 2, 3], FAR, 900)).toBe(0);
    expect(append(writer, [4, 5], FAR, 100)).toBe(-1);
    expect(writer.rows).toBe(3);
    expect(writer.closed).toBe(false);
    // The refused request's earlier arrival must not make the stage look older.
    expect(stageDueIn(writer.sab, writer.layout, { delayMs: 200, preferred: [] }, NOW)).toBe(100);
    // The refused request took no entry: the next one gets the next index and its rows follow.
    expect(append(writer, [6])).toBe(1);
    expect(append(writer, [7])).toBe(-1);
    const taken = claimStage(writer.sab, writer.layout, 1, NOW)!;
    expect(taken.included).toEqual([0, 1]);
    expectRows(taken, [1, 2, 3, 6]);
  });

  it('refuses feeds that do not match the layout', () => {
    const writer = new StageWriter(layoutFor(8), POLICY);
    const missing = feedsFor([1]);
    missing.delete('ids');
    expect(writer.tryAppend(missing, 1, FAR, NOW)).toBe(-1);

    const wrongType = feedsFor([1]);
    wrongType.set('x', { type: 'float64', dims: [1, 3], data: new Float64Array(3) });
    expect(writer.tryAppend(wrongType, 1, FAR, NOW)).toBe(-1);

    const wrongWidth = feedsFor([1]);
    wrongWidth.set('x', { type: 'float32', dims: [1, 4], data: new Float32Array(4) });
    expect(writer.tryAppend(wrongWidth, 1, FAR, NOW)).toBe(-1);

    // The rows claimed disagree with the data's length, either way.
    expect(writer.tryAppend(feedsFor([1, 2]), 1, FAR, NOW)).toBe(-1);
    expect(writer.tryAppend(feedsFor([1]), 2, FAR, NOW)).toBe(-1);

    expect(writer.rows).toBe(0);
    expect(writer.closed).toBe(false);
    expect(append(writer, [9])).toBe(0);
    const taken = claimStage(writer.sab, writer.layout, 1, NOW)!;
    expect(taken.included).toEqual([0]);
    expectRows(taken, [9]);
  });
});

describe('stageDueIn', () => {
  const policy: StagePolicy = { delayMs: 20, preferred: [8, 4] };

  it('is undefined for an empty stage and for a closed one', () => {
    const empty = new StageWriter(layoutFor(10), policy);
    expect(stageDueIn(empty.sab, empty.layout, policy, NOW)).toBeUndefined();

    const closed = new StageWriter(layoutFor(10), policy);
    append(closed, [1], FAR, NOW - 100);
    closed.close();
    expect(stageDueIn(closed.sab, closed.layout, policy, NOW)).toBeUndefined();

    const claimed = new StageWriter(layoutFor(10), policy);
    append(claimed, [1], FAR, NOW - 100);
    claimStage(claimed.sab, claimed.layout, 1, NOW);
    expect(stageDueIn(claimed.sab, claimed.layout, policy, NOW)).toBeUndefined();
  });

  it('counts the delay from the oldest request, whatever the order they were staged in', () => {
    const writer = new StageWriter(layoutFor(10), policy);
    append(writer, [1], FAR, 995);
    expect(stageDueIn(writer.sab, writer.layout, policy, NOW)).toBe(15);
    append(writer, [2], FAR, 990);
    expect(stageDueIn(writer.sab, writer.layout, policy, NOW)).toBe(10);
    append(writer, [3], FAR, 999);
    expect(stageDueIn(writer.sab, writer.layout, policy, NOW)).toBe(10);
    expect(stageDueIn(writer.sab, writer.layout, policy, 1004)).toBe(6);
    // Waited the whole delay, or longer: due now.
    expect(stageDueIn(writer.sab, writer.layout, policy, 1010)).toBe(0);
    expect(stageDueIn(writer.sab, writer.layout, policy, 2000)).toBe(0);
  });

  it('is due at once when the smallest preferred size is reached', () => {
    const writer = new StageWriter(layoutFor(10), policy);
    append(writer, [1, 2, 3], FAR, NOW);
    expect(stageDueIn(writer.sab, writer.layout, policy, NOW)).toBe(20);
    append(writer, [4], FAR, NOW);
    expect(stageDueIn(writer.sab, writer.layout, policy, NOW)).toBe(0);
    append(writer, [5, 6], FAR, NOW);
    expect(stageDueIn(writer.sab, writer.layout, policy, NOW)).toBe(0);
  });

  it('is due at once when full, with no preferred sizes', () => {
    const plain: StagePolicy = { delayMs: 20, preferred: [] };
    const writer = new StageWriter(layoutFor(3), plain);
    append(writer, [1, 2], FAR, NOW);
    expect(stageDueIn(writer.sab, writer.layout, plain, NOW)).toBe(20);
    append(writer, [3], FAR, NOW);
    expect(stageDueIn(writer.sab, writer.layout, plain, NOW)).toBe(0);
  });
});

/**
 * A stand-in for a worker's claim, in plain JS: the same compare-and-swap on the state word as
 * claimStage, after a random number of spins on a non-empty stage so it lands at varied counts.
 * It also checks the rows the count published were already written. `ready` word 0: the stage it
 * watches; word 1: the stage it closed.
 */
const RACER = `
const { parentPort, workerData } = require('node:worker_threads');
const CLOSED = 1 << 30;
const ready = new Int32Array(workerData.ready);
parentPort.on('message', ({ n, sab, offset, spins, tag }) => {
  const header = new Int32Array(sab, 0, 4);
  Atomics.store(ready, 0, n);
  Atomics.notify(ready, 0);
  for (let seen = 0; ; ) {
    const state = Atomics.load(header, 0);
    if ((state & CLOSED) !== 0) {
      parentPort.postMessage({ n, rows: -1, intact: false });
      return;
    }
    if (state === 0 || seen++ < spins) continue;
    if (Atomics.compareExchange(header, 0, state, state | CLOSED) !== state) continue;
    Atomics.store(header, 1, tag);
    Atomics.store(ready, 1, n);
    const x = new Float32Array(sab, offset, state);
    let intact = true;
    for (let i = 0; i < state; i++) if (x[i] !== i) intact = false;
    parentPort.postMessage({ n, rows: state, intact });
    return;
  }
});
`;

interface RaceResult {
  readonly n: number;
  readonly rows: number;
  readonly intact: boolean;
}

function oneRow(k: number): Map<string, Tensor> {
  return new Map([['x', { type: 'float32', dims: [1, 1], data: Float32Array.of(k) }]]);
}

describe('across threads', () => {
  it('the closing worker counts exactly the appends that succeeded', async () => {
    const ready = new Int32Array(new SharedArrayBuffer(8));
    const worker = new Worker(RACER, { eval: true, workerData: { ready: ready.buffer } });
    const capacity = 1 << 16;
    const layout = stageLayout(oneRow(0), capacity)!;
    const giveUp = Date.now() + 10_000;
    try {
      for (let n = 1; n <= 20; n++) {
        const writer = new StageWriter(layout, { delayMs: 1_000, preferred: [] });
        const reply = once(worker, 'message');
        worker.postMessage({
          n,
          sab: writer.sab,
          offset: layout.inputs[0]!.byteOffset,
          // From at once to thousands of appends in: the race at the first rows and in full flow.
          spins: Math.floor(Math.random() * 2 ** (n % 16)),
          tag: 100 + n,
        });
        // Start appending only once the worker watches this stage, so the race is real.
        for (let seen = Atomics.load(ready, 0); seen !== n; seen = Atomics.load(ready, 0)) {
          if (Date.now() > giveUp) throw new Error('the worker never took the stage');
          Atomics.wait(ready, 0, seen, 50);
        }
        let appended = 0;
        let outOfOrder = 0;
        for (;;) {
          const index = writer.tryAppend(oneRow(appended), 1, FAR, NOW);
          if (index >= 0) {
            if (index !== appended) outOfOrder++;
            appended++;
          } else if (writer.closed) break;
          // Full, or closed without the stage showing it (which the assertions below catch).
          else if (Atomics.load(ready, 1) === n) break;
          else if (Date.now() > giveUp) throw new Error('the worker never closed the stage');
        }
        const [result] = (await reply) as [RaceResult];
        expect(result.n).toBe(n);
        expect(appended).toBeGreaterThan(0);
        expect(outOfOrder).toBe(0);
        expect(result.rows).toBe(appended);
        expect(result.intact).toBe(true);
        expect(writer.rows).toBe(appended);
        expect(writer.claimer).toBe(100 + n);
        expect(writer.close()).toBe(false);
      }
    } finally {
      await worker.terminate();
    }
  });
});
