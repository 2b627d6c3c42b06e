import type { OrtType, Tensor } from './tensors.js';

/**
 * A stage: the next batch of one model version, filled in shared memory by the main thread and
 * taken by an inference worker the moment the batching policy says it is due (full, a preferred
 * size, or its oldest request has waited the max delay) and the worker is free. The worker's own
 * event loop is idle then, so it is on time; the main thread's may be busy parsing HTTP, and a
 * batch it had to dispatch would wait for that.
 *
 * The main thread appends requests' rows (`StageWriter.tryAppend`); exactly one side then closes
 * the stage: a worker (`claimStage`), or the main thread (`StageWriter.close`), which keeps the
 * same policy on its own timer as a fallback. One Int32 word decides, by compare-and-swap: the
 * staged row count in the low bits, a CLOSED bit above them. Rows are written before the count
 * that publishes them, and Atomics operations order those writes for the other thread.
 *
 * Each staged request has an entry: its rows, a dropped flag the main thread sets when its
 * client leaves or its deadline fires, and its deadline (`sharedNow()` ms). A worker taking the stage
 * leaves out the dropped and expired requests and says which it kept, so a request the main
 * thread gave up on is not run, as with one still in the queue.
 *
 * Layout: header (Int32) [0] state = rows | CLOSED, [1] the claiming worker's tag (0 until set),
 * (Float64) [1] the oldest staged request's arrival (`sharedNow()` ms); then `capacity` entries of 16 bytes (Int32 rows, Int32 dropped, Float64 deadline); then each
 * input's rows.
 */
/**
 * Milliseconds on the monotonic clock every thread of the process shares. Each thread's
 * performance.timeOrigin is sampled separately, so times moved between threads through it can
 * be off by a millisecond or more; this one is not.
 */
export function sharedNow(): number {
  const [s, ns] = process.hrtime();
  return s * 1e3 + ns / 1e6;
}

export const CLOSED = 1 << 30;
const STATE = 0;
const CLAIMER = 1;
const OLDEST = 1; // in the header's Float64 view
const HEADER_BYTES = 16;
const ENTRY_BYTES = 16;

/** When a stage is due: the batcher's settings when it was opened. */
export interface StagePolicy {
  readonly delayMs: number;
  readonly preferred: readonly number[];
}

type NumericType = Exclude<OrtType, 'string' | 'bool'>;
type NumericArray = Exclude<Tensor['data'], string[]>;
interface ArrayCtor {
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): NumericArray;
  readonly BYTES_PER_ELEMENT: number;
}
const ARRAYS: Record<NumericType, ArrayCtor> = {
  float32: Float32Array,
  float64: Float64Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  uint8: Uint8Array,
  uint16: Uint16Array,
  uint32: Uint32Array,
  uint64: BigUint64Array,
};

export interface StageInput {
  readonly name: string;
  readonly type: NumericType;
  /** The dimensions after the batch dimension. */
  readonly rowDims: readonly number[];
  readonly rowElements: number;
  readonly byteOffset: number;
}

export interface StageLayout {
  readonly inputs: readonly StageInput[];
  /** Most rows the stage holds. */
  readonly capacity: number;
  readonly bytes: number;
}

/**
 * Where each input's rows go in a stage shaped like `like` (one request's feeds), or undefined
 * when an input cannot live in shared memory (strings, booleans) or has no batch dimension.
 */
export function stageLayout(like: Map<string, Tensor>, capacity: number): StageLayout | undefined {
  const inputs: StageInput[] = [];
  let at = HEADER_BYTES + capacity * ENTRY_BYTES;
  for (const [name, t] of like) {
    if (t.type === 'string' || t.type === 'bool' || t.dims.length === 0) return undefined;
    const ctor = ARRAYS[t.type];
    const rowDims = t.dims.slice(1);
    const rowElements = rowDims.reduce((a, b) => a * b, 1);
    at = Math.ceil(at / 8) * 8;
    inputs.push({ name, type: t.type, rowDims, rowElements, byteOffset: at });
    at += capacity * rowElements * ctor.BYTES_PER_ELEMENT;
  }
  if (inputs.length === 0) return undefined;
  return { inputs, capacity, bytes: at };
}

/** A stage as the batcher sees it: the pool opens it and shows it to the workers. */
export interface StageHandle {
  readonly id: number;
  /** Closed: a worker claimed it, or the main thread closed it. */
  readonly closed: boolean;
  /**
   * Copies one request in; its entry index, or -1 when the stage is closed or has no room.
   * `deadlineAt` and `enqueuedAt` are on the main thread's performance.now() scale.
   */
  tryAppend(
    feeds: Map<string, Tensor>,
    rows: number,
    deadlineAt: number,
    enqueuedAt: number,
  ): number;
  /** The request at `index` must not run (its client left or its deadline passed). */
  drop(index: number): void;
  /** True when the main thread closed it (nobody claimed it): dispatch it the usual way. */
  close(): boolean;
  /** Claimed by a worker that died before saying so: its requests will never be answered. */
  abandoned(): boolean;
}

/** The main thread's side of a stage. */
export class StageWriter {
  readonly sab: SharedArrayBuffer;
  private readonly header: Int32Array;
  private readonly times: Float64Array;
  private readonly entryInts: Int32Array;
  private readonly entryDeadlines: Float64Array;
  private entries = 0;

  /** The smallest row count that makes the stage due at once (full, or a preferred size). */
  private readonly dueRows: number;

  constructor(
    readonly layout: StageLayout,
    policy: StagePolicy,
  ) {
    this.dueRows = Math.min(layout.capacity, ...policy.preferred);
    this.sab = new SharedArrayBuffer(layout.bytes);
    this.header = new Int32Array(this.sab, 0, HEADER_BYTES / 4);
    this.times = new Float64Array(this.sab, 0, HEADER_BYTES / 8);
    this.entryInts = new Int32Array(this.sab, HEADER_BYTES, (layout.capacity * ENTRY_BYTES) / 4);
    this.entryDeadlines = new Float64Array(
      this.sab,
      HEADER_BYTES,
      (layout.capacity * ENTRY_BYTES) / 8,
    );
  }

  /** Rows staged so far. */
  get rows(): number {
    return Atomics.load(this.header, STATE) & ~CLOSED;
  }

  get closed(): boolean {
    return (Atomics.load(this.header, STATE) & CLOSED) !== 0;
  }

  /** The tag of the worker that claimed the stage (0: not claimed, or the main thread closed it). */
  get claimer(): number {
    return Atomics.load(this.header, CLAIMER);
  }

  /**
   * Copies one request's rows in after the staged ones; its entry index, or -1 when the stage is
   * closed or has no room (the request then waits for a later batch). Times are `sharedNow()` ms,
   * the clock every thread reads alike.
   */
  tryAppend(
    feeds: Map<string, Tensor>,
    rows: number,
    deadlineSharedMs: number,
    enqueuedSharedMs: number,
  ): number {
    const state = Atomics.load(this.header, STATE);
    if (rows < 1 || (state & CLOSED) !== 0 || state + rows > this.layout.capacity) return -1;
    for (const input of this.layout.inputs) {
      const src = feeds.get(input.name);
      if (src === undefined || src.type !== input.type) return -1;
      if (src.data.length !== rows * input.rowElements) return -1;
    }
    for (const input of this.layout.inputs) {
      const view = new ARRAYS[input.type](
        this.sab,
        input.byteOffset,
        this.layout.capacity * input.rowElements,
      );
      (view as Float32Array).set(
        feeds.get(input.name)!.data as Float32Array,
        state * input.rowElements,
      );
    }
    const index = this.entries;
    this.entryInts[index * 4] = rows;
    this.entryInts[index * 4 + 1] = 0;
    this.entryDeadlines[index * 2 + 1] = deadlineSharedMs;
    const older = index > 0 && enqueuedSharedMs < this.times[OLDEST]!;
    if (index === 0 || older) this.times[OLDEST] = enqueuedSharedMs;
    // Only this thread changes the count, so a failed swap means a worker closed the stage first.
    if (Atomics.compareExchange(this.header, STATE, state, state + rows) !== state) return -1;
    this.entries++;
    // An idle worker waits on this word: wake it when the stage starts (to time the delay from),
    // when an older request moves the due time earlier, and when it becomes due by size; between
    // those its timeout covers the delay.
    if (state === 0 || older || (state < this.dueRows && state + rows >= this.dueRows))
      Atomics.notify(this.header, STATE);
    return index;
  }

  drop(index: number): void {
    Atomics.store(this.entryInts, index * 4 + 1, 1);
  }

  /** Closes the stage for the main thread to dispatch itself. False if a worker claimed it first. */
  close(): boolean {
    const state = Atomics.load(this.header, STATE);
    if ((state & CLOSED) !== 0) return false;
    if (Atomics.compareExchange(this.header, STATE, state, state | CLOSED) !== state) return false;
    Atomics.notify(this.header, STATE);
    return true;
  }
}

/**
 * For a worker: how long until the stage is due, in ms (0: due now), or undefined when it is
 * empty or closed.
 */
export function stageDueIn(
  sab: SharedArrayBuffer,
  layout: StageLayout,
  policy: StagePolicy,
  nowSharedMs: number,
): number | undefined {
  const state = Atomics.load(new Int32Array(sab, 0, HEADER_BYTES / 4), STATE);
  if (state === 0 || (state & CLOSED) !== 0) return undefined;
  if (state >= layout.capacity || policy.preferred.some((p) => p <= state)) return 0;
  const oldest = new Float64Array(sab, 0, HEADER_BYTES / 8)[OLDEST]!;
  const left = oldest + policy.delayMs - nowSharedMs;
  // Less than a timer could wait for: due.
  return left < 0.05 ? 0 : left;
}

/**
 * For a worker: resolves when the stage's count changes (an append that wakes it, or a close) or
 * after `timeoutMs`; undefined when the stage is closed already.
 */
export function watchStage(
  sab: SharedArrayBuffer,
  timeoutMs: number,
): Promise<unknown> | undefined {
  const header = new Int32Array(sab, 0, HEADER_BYTES / 4);
  const state = Atomics.load(header, STATE);
  if ((state & CLOSED) !== 0) return undefined;
  const w = Atomics.waitAsync(header, STATE, state, timeoutMs);
  return w.async ? w.value : Promise.resolve(w.value);
}

/** What a worker took from a stage: the kept requests' rows, concatenated. */
export interface TakenStage {
  /** Entry indexes of the requests kept, in row order. */
  readonly included: number[];
  readonly rows: number;
  readonly feeds: (Tensor & { readonly name: string })[];
}

/**
 * A worker's side: closes the stage if it holds rows and nobody closed it yet, and copies out the
 * rows of the requests that are neither dropped nor past their deadline (the stage's memory is
 * not used again). Undefined when there was nothing to take; `included` is empty when every
 * staged request was left out.
 */
export function claimStage(
  sab: SharedArrayBuffer,
  layout: StageLayout,
  claimerTag: number,
  nowSharedMs: number,
): TakenStage | undefined {
  const header = new Int32Array(sab, 0, HEADER_BYTES / 4);
  let staged: number;
  for (;;) {
    const state = Atomics.load(header, STATE);
    if (state === 0 || (state & CLOSED) !== 0) return undefined;
    if (Atomics.compareExchange(header, STATE, state, state | CLOSED) === state) {
      staged = state;
      break;
    }
    // The main thread appended in between: try again with the new count.
  }
  Atomics.store(header, CLAIMER, claimerTag);
  const ints = new Int32Array(sab, HEADER_BYTES, (layout.capacity * ENTRY_BYTES) / 4);
  const deadlines = new Float64Array(sab, HEADER_BYTES, (layout.capacity * ENTRY_BYTES) / 8);
  const included: number[] = [];
  const spans: [number, number][] = [];
  let rows = 0;
  for (let i = 0, at = 0; at < staged; i++) {
    const r = ints[i * 4]!;
    if (Atomics.load(ints, i * 4 + 1) === 0 && deadlines[i * 2 + 1]! > nowSharedMs) {
      included.push(i);
      spans.push([at, r]);
      rows += r;
    }
    at += r;
  }
  const feeds = layout.inputs.map((input) => {
    const all = new ARRAYS[input.type](sab, input.byteOffset, staged * input.rowElements);
    const data = new ARRAYS[input.type](
      new ArrayBuffer(rows * input.rowElements * ARRAYS[input.type].BYTES_PER_ELEMENT),
      0,
      rows * input.rowElements,
    );
    let to = 0;
    for (const [from, r] of spans) {
      (data as Float32Array).set(
        (all as Float32Array).subarray(from * input.rowElements, (from + r) * input.rowElements),
        to * input.rowElements,
      );
      to += r;
    }
    return { name: input.name, type: input.type, dims: [rows, ...input.rowDims], data };
  });
  return { included, rows, feeds };
}
